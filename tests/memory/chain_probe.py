"""Run an Auto3DSeg-style training chain with real MONAI transforms on one crop and report each stage's memory.

    MALLOC_MMAP_THRESHOLD_=65536 python tests/memory/chain_probe.py IMAGE LABEL {int64,uint8} SIGMOID(0|1) SAMPLES

The transforms are instantiated from `cellcheck.memory.templates.train_transforms` (the same list the
model follows), with the label-expansion and crop-label functions written as the templates write them.
The chain runs once on a small crop first, so that imports and first-call costs are paid before
measuring. Before each stage the kernel's peak-RSS mark is reset (`/proc/self/clear_refs`, 5) and read
back after it (VmHWM): the exact peak, not a sample that a short transient can slip between (a sampling
thread also waits for the GIL that numpy holds while it converts). For each stage the script prints one
JSON line: bytes per voxel held after it and at its peak, relative to the RSS before the chain. Large crops
allocate with mmap and give freed memory back; the threshold variable makes a small test crop do the
same, so that what glibc keeps from freed transients does not blur the stages.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch


def reset_peak() -> None:
    """Set the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    """The highest RSS since the last `reset_peak` (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _functions(channels: int):
    """The templates' Lambdad functions: the sum of bool masks (int64 on the way), the field's cast, the crop label."""
    values = [[v] for v in range(1, channels + 1)]
    return {
        "expand-sum": lambda x: torch.cat([sum([x == i for i in c]) for c in values], dim=0).to(dtype=x.dtype),
        "expand-cast": lambda x: torch.cat([(x == c[0]).to(x.dtype) for c in values], dim=0),
        "background-channel": lambda x: torch.cat([(torch.sum(x, dim=0, keepdim=True) < 1).to(dtype=x.dtype), x], 0),
        "drop": lambda x: 0,
    }


def build(spec: dict, channels: int):
    """A MONAI transform from one step of `train_transforms` (dtype names to torch/numpy dtypes)."""
    import numpy as np
    from monai import transforms as mt

    args = {k: v for k, v in spec.items() if k not in ("_target_", "kind", "channels")}
    target = spec["_target_"]
    if target == "LoadImaged" and "dtype" in args:
        args["dtype"] = getattr(np, args["dtype"])
    if target == "CastToTyped":
        args["dtype"] = [getattr(torch, d) for d in args["dtype"]]
    if target == "Lambdad":
        args["func"] = _functions(channels)[spec["kind"]]
    if target == "ScaleIntensityRanged":
        args.update(a_min=11.3, a_max=194.1, b_min=0.0, b_max=1.0, clip=True)
    if target == "Spacingd":
        args.update(pixdim=[8.0, 8.0, 8.0], mode=["bilinear", "nearest"], align_corners=[True, True])
    if target == "SpatialPadd":
        args["spatial_size"] = [32, 32, 32]
    if target == "Orientationd":
        args["axcodes"] = "RAS"
    if target == "RandCropByLabelClassesd":
        args.update(num_classes=None, warn=False)
    if target == "RandFlipd":
        args.update(spatial_axis=0, prob=1.0)
    return getattr(mt, target)(**args)


def run(chain: list, data: dict, each=None) -> None:
    """Apply the chain (a list after the random crop), calling `each(i)` after every transform."""
    for i, transform in enumerate(chain):
        data = transform(data) if not isinstance(data, list) else [transform(d) for d in data]
        if each:
            each(i)


def _tiny(folder: str) -> dict:
    """A 40^3 image and a label holding every class value, to warm the chain up on."""
    import nibabel as nib
    import numpy as np

    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    nib.save(nib.Nifti1Image(np.full((40, 40, 40), 100, np.uint8), affine), f"{folder}/tiny_image.nii.gz")
    label = (np.arange(40**3) % 15).astype(np.uint8).reshape(40, 40, 40)
    nib.save(nib.Nifti1Image(label, affine), f"{folder}/tiny_label.nii.gz")
    return {"image": f"{folder}/tiny_image.nii.gz", "label": f"{folder}/tiny_label.nii.gz"}


def main(image: str, label: str, expansion: str, sigmoid: bool, samples: int) -> None:
    from cellcheck.memory.templates import train_transforms

    torch.set_num_threads(1)
    channels = 14
    steps = train_transforms("dints", channels, [32, 32, 32], samples, expansion, sigmoid)
    chain = [build(s, channels) for s in steps]
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        run(chain, _tiny(tmp))  # imports and first-call costs out of the way
    gc.collect()
    base = proc.memory_info().rss
    import nibabel as nib
    import numpy as np

    voxels = int(np.prod(nib.load(image).header.get_data_shape()))
    data: dict | list = {"image": image, "label": label}
    for spec, transform in zip(steps, chain):
        gc.collect()
        reset_peak()
        data = transform(data) if not isinstance(data, list) else [transform(d) for d in data]
        peak = peak_rss()
        time.sleep(0.01)
        gc.collect()
        held = proc.memory_info().rss
        print(json.dumps({"name": spec["_target_"], "held": (held - base) / voxels,
                          "peak": (max(peak, held) - base) / voxels}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5]))
