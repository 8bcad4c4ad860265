"""Host RAM of a DDP training job, per rank and per DataLoader worker, and the SLURM `--mem` it needs.

The model follows one sample through the transform chain dtype by dtype (bytes per voxel of the crop):

    read       NIfTI uint8 image + label                         1 + 1   (transient)
    LoadImaged float32 image + float32 label (MONAI's default)    4 + 4   held        (+0.53 GB for a
               393x402x418 crop, FIELD_NOTES 5; measured 8.00 B/voxel here)
    one-hot    C float32 channels from the label, via an int64    4 C     held, the float label dropped;
               index (scatter), so 8 + 8 + 4 C at the peak                (+4.2 GB RSS for C = 14 in the field)
    collate    in a worker, default_collate stacks the batch      2 x out (transient) - the batch's
               straight into shared memory                                 samples plus the stacked copy

Where the bytes are charged (as observed at 512G: ranks ~70-109 GB, workers 1.5-7.5 GB each):

- a worker holds its base (Python, torch, MONAI after fork) and the batch it is building, up to the
  collate copy (all its samples and the stacked batch at once);
- a rank holds its base (Python, torch, the CUDA libraries' host side), every batch its workers have
  finished and not yet consumed (up to workers x prefetch batches: shared memory - mapped once the
  rank takes them off the queue, unmapped /dev/shm files before - then pinned copies), the batch
  the step is using, and one validation volume held whole.

Each worker owns `prefetch` outstanding batches: all finished when it idles, or prefetch - 1 finished
and one being built. The job peaks when every worker builds at once (at start-up, or after a pause,
behind a step slower than loading):
    peak = ranks x (rank base + batch in use + validation + workers x (worker base
           + max(prefetch x batch_out, (prefetch - 1) x batch_out + building)))
Checked against a real DataLoader under `cellcheck profile` (tests/benchmarks/check_ram_model.py,
docs/MEMORY.md): within 15 % at workers 0/2/4 and two crop sizes, given the machine's bases.
SLURM needs that plus the headroom policy, in whole GiB.
Units: bytes; GiB = 2**30 (SLURM's `G`), GB = 10**9 (the field notes' figures).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellcheck.errors import CellcheckError
from cellcheck.memory.gpus import GiB

#: Host RSS of one training rank before data: Python, torch, MONAI, the CUDA runtime, cuDNN and cuBLAS
#: libraries mapped and touched, the CUDA context's host side. Commonly 2.5-5 GB for a CUDA PyTorch
#: process; 3 GiB assumed, not calibrated (the profiler measures it: `cellcheck profile`).
RANK_BASE_BYTES = 3 * GiB

#: Host RSS of one DataLoader worker before it loads a sample: a forked copy of the rank whose pages are
#: shared until touched; Python's refcounting touches the interpreter's objects. 0.5 GiB assumed.
WORKER_BASE_BYTES = GiB // 2

#: Margin on top of the modelled peak for what the model leaves out: glibc arenas that keep freed
#: memory in long-lived workers, page cache of the NIfTI reads charged to the job's cgroup, and the
#: moments when a batch exists both in shared memory and in its pinned copy. 10 %: the model for the
#: field configuration is ~5 % below the ~222 GB observed (docs/MEMORY.md).
HEADROOM_FRACTION = 0.10

_DTYPE_BYTES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "float16": 2, "uint32": 4, "int32": 4,
                "float32": 4, "int64": 8, "float64": 8}


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a dtype name or numpy/torch dtype ('uint8' -> 1, torch.float32 -> 4)."""
    name = str(dtype).replace("torch.", "").replace("<class 'numpy.", "").replace("'>", "")
    if name not in _DTYPE_BYTES:
        raise CellcheckError(f"unsupported voxel dtype {dtype!r}; expected one of {', '.join(_DTYPE_BYTES)}")
    return _DTYPE_BYTES[name]


@dataclass(frozen=True)
class Stage:
    """One step of the transform chain: bytes per voxel held after it, and at its own peak."""

    name: str
    held: float
    peak: float
    note: str


def transform_stages(image_dtype: str = "uint8", label_dtype: str = "uint8", one_hot_channels: int = 0,
                     load_dtype: str = "float32") -> list[Stage]:
    """The chain LoadImaged -> [one-hot] -> collate, in bytes per voxel of the loaded crop."""
    raw_i, raw_l, f = dtype_bytes(image_dtype), dtype_bytes(label_dtype), dtype_bytes(load_dtype)
    stages = [Stage("LoadImaged", 2 * f, f + raw_l + f,
                    f"image and label converted to {load_dtype} (MONAI LoadImage's default dtype); the raw "
                    f"{image_dtype}/{label_dtype} arrays are transient")]
    held = 2 * f
    if one_hot_channels:
        c = one_hot_channels
        stages.append(Stage("one-hot", f + c * f, held + 8 + c * f,
                            f"{c} {load_dtype} channels scattered from an int64 copy of the label; the "
                            f"{load_dtype} label is dropped afterwards"))
        held = f + c * f
    stages.append(Stage("collate", held, 2 * held, "default_collate stacks into shared memory while the "
                                                   "sample is still referenced"))
    return stages


@dataclass
class RamEstimate:
    """Host memory of the job (bytes), where it sits, and the SLURM request it implies."""

    peak_bytes: int  # the modelled peak of the whole job (all ranks and workers at their worst moment)
    required_bytes: int  # peak plus the headroom policy
    per_rank_bytes: int  # one rank's own peak: base, all its workers' finished batches (pinned), validation
    per_worker_bytes: int  # one DataLoader worker's own peak: base and the batch it is building
    slurm_mem: str  # required, rounded up to whole GiB, as --mem wants it
    fits: bool | None  # required <= mem, when a --mem was given
    mem_bytes: int | None
    sample: dict[str, Any]
    breakdown: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "per_rank_bytes": self.per_rank_bytes,
                "per_worker_bytes": self.per_worker_bytes, "slurm_mem": self.slurm_mem,
                "required_bytes": self.required_bytes, "fits": self.fits, "mem_bytes": self.mem_bytes,
                "sample": self.sample, "breakdown": dict(self.breakdown), "config": dict(self.config)}


def slurm_mem(nbytes: int) -> str:
    """`--mem` value for SLURM: whole GiB with a G suffix, rounded up ('200G')."""
    return f"{max(1, math.ceil(nbytes / GiB))}G"


@dataclass(frozen=True)
class Chain:
    """A loading chain in bytes: what a sample holds until collate, its own peak, what it hands over."""

    name: str
    stages: list[Stage]
    held: float  # per crop voxel, from load to collate (the collate copy is made while it is held)
    load_peak: float  # per crop voxel, the highest point of the chain before collate
    out: float  # per output voxel of a finished sample: the crop's voxels, or its patches' for a patch chain


def template_chain(image_dtype: str = "uint8", label_dtype: str = "uint8", one_hot_channels: int = 0) -> Chain:
    """Auto3DSeg's templates: whole crops loaded as float32 (and one-hot), collated whole."""
    stages = transform_stages(image_dtype, label_dtype, one_hot_channels)
    held = stages[-1].held
    return Chain("template", stages, held, max(s.peak for s in stages if s.name != "collate"), held)


def trainer_chain(image_dtype: str = "uint8") -> Chain:
    """cellcheck's trainer (trainer/data.py): float32 image, uint8 label, patches out.

    RandCropByPosNegLabeld without precomputed indices builds a bool foreground mask, its negation
    and int64 indices of every voxel (foreground + background) on each call; the patches it cuts
    are views of the crop, so the crop lives until its batch is collated. Measured on a 192^3 crop
    in a fresh process: 6.5 B/voxel held after loading, 16.9 at the crop's peak (both include
    ~1.5 B/voxel that glibc kept from the loading transients; the model leaves that to the headroom).
    """
    raw = dtype_bytes(image_dtype)
    stages = [
        Stage("LoadCased", 4 + 1, raw + 4 + 1, "image to float32 / 255 (numpy reuses the astype temporary), "
                                               "label kept uint8"),
        Stage("RandCropByPosNegLabeld", 4 + 1, 4 + 1 + 1 + 1 + 8, "bool mask of label > 0 and its negation, "
                                                                 "int64 indices of every voxel; patches are views"),
    ]
    return Chain("trainer", stages, 4 + 1, max(s.peak for s in stages), 4 + 1)


def predict_ram(crop_shape: Sequence[float], gpus: int = 1, workers: int = 8, prefetch: int = 2, batch: int = 1,
                one_hot_channels: int = 0, image_dtype: str = "uint8", label_dtype: str = "uint8",
                val_shape: Sequence[float] | None = None, mem_bytes: int | None = None,
                host_state_bytes: int = 0, headroom: float = HEADROOM_FRACTION, hold_validation: bool = True,
                rank_base_bytes: int = RANK_BASE_BYTES, worker_base_bytes: int = WORKER_BASE_BYTES,
                chain: str = "template", patch_voxels: float | None = None) -> RamEstimate:
    """Peak host RAM of `gpus` DDP ranks, each with `workers` DataLoader workers of `prefetch` batches.

    `crop_shape` is the (mean) crop in voxels as loaded, `batch` the crops per DataLoader batch,
    `one_hot_channels` the channels of a one-hot label expansion done in the workers (0 = none),
    `val_shape` the validation volume each rank holds whole (default: the crop), `host_state_bytes`
    whatever a rank keeps on the host besides (e.g. model and optimizer state when offloaded);
    `hold_validation` False for a loop without validation. `rank_base_bytes` / `worker_base_bytes`
    replace the assumed process bases with ones measured on the node (an idle run under
    `cellcheck profile`): they are the only constants of the model that depend on the machine.
    `chain` "template" (Auto3DSeg's, whole crops) or "trainer" (cellcheck's, which hands over
    `patch_voxels` voxels of patches per crop: patches per image x ROI voxels).
    """
    if gpus < 1 or workers < 0 or prefetch < 1 or batch < 1:
        raise CellcheckError("need gpus >= 1, workers >= 0, prefetch >= 1 and batch >= 1")
    voxels = math.prod(float(s) for s in crop_shape)
    val_voxels = math.prod(float(s) for s in (val_shape or crop_shape))
    if chain == "template":
        model = template_chain(image_dtype, label_dtype, one_hot_channels)
        out_voxels = voxels
    elif chain == "trainer":
        if one_hot_channels or not patch_voxels:
            raise CellcheckError("the trainer chain hands over patches (give patch_voxels) and never one-hot labels")
        model, out_voxels = trainer_chain(image_dtype), float(patch_voxels)
    else:
        raise CellcheckError(f"unknown loading chain {chain!r}; expected template or trainer")
    sample_out = int(model.out * out_voxels)
    batch_out = batch * sample_out
    held = int(model.held * voxels)
    # a batch under construction: its last sample at the peak of its chain with the others held, or
    # the collate copy, when all `batch` samples and the stacked batch exist at once
    building = max((batch - 1) * held + int(model.load_peak * voxels), batch * held + batch_out)
    pinned = batch_out  # the batch the step holds while the loader fetches the next (page-locked on a GPU run)
    validation = int(model.held * val_voxels) if hold_validation else 0
    rank_fixed = rank_base_bytes + host_state_bytes + pinned + validation
    if workers:
        # Each worker owns `prefetch` outstanding batches. Idle, all are finished (pinned copies in the
        # rank); busy, one is being built in the worker and prefetch - 1 are finished. The job peaks
        # when every worker is busy at once.
        slot = max(prefetch * batch_out, (prefetch - 1) * batch_out + building)
        per_worker = worker_base_bytes + building
        per_rank = rank_fixed + workers * prefetch * batch_out
        peak = gpus * (rank_fixed + workers * (worker_base_bytes + slot))
        in_flight = workers * slot
    else:  # the rank loads its own data
        per_worker = 0
        in_flight = building
        per_rank = rank_fixed + building
        peak = gpus * per_rank
    required = int(peak * (1 + headroom))
    return RamEstimate(
        peak_bytes=peak, required_bytes=required, per_rank_bytes=per_rank, per_worker_bytes=per_worker,
        slurm_mem=slurm_mem(required), fits=None if mem_bytes is None else required <= mem_bytes, mem_bytes=mem_bytes,
        sample={"voxels": int(voxels), "bytes_per_voxel": model.held, "out_bytes": sample_out,
                "peak_bytes": max(int(model.load_peak * voxels), held + sample_out), "chain": model.name,
                "stages": [vars(s) for s in model.stages]},
        breakdown={"rank_base": gpus * rank_base_bytes, "host_state": gpus * host_state_bytes,
                   "batch_in_use": gpus * pinned, "validation_volume": gpus * validation,
                   "worker_base": gpus * workers * worker_base_bytes, "batches_in_flight": gpus * in_flight,
                   "headroom": required - peak},
        config={"gpus": gpus, "workers": workers, "prefetch": prefetch, "batch": batch, "chain": model.name,
                "one_hot_channels": one_hot_channels, "crop_shape": [float(s) for s in crop_shape],
                "patch_voxels": patch_voxels, "image_dtype": image_dtype, "label_dtype": label_dtype,
                "headroom_fraction": headroom},
    )


# --- a real measurement ---------------------------------------------------------------------------------

_MEASURE = r"""
import gc, json, sys
import numpy as np, psutil, torch
from monai.transforms import EnsureChannelFirstd, LoadImaged
from monai.networks.utils import one_hot
image, label, tiny, channels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = LoadImaged(keys=["image", "label"])
first = EnsureChannelFirstd(keys=["image", "label"])
warm = first(load({"image": tiny, "label": tiny}))          # import-time and first-call costs out of the way
if channels:
    one_hot(warm["label"][None], channels, dim=1)
del warm
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
sample = first(load({"image": image, "label": label}))
gc.collect()
loaded = proc.memory_info().rss
out = {"load_bytes": loaded - before, "image_dtype": str(sample["image"].dtype),
       "label_dtype": str(sample["label"].dtype), "shape": list(sample["image"].shape)}
if channels:
    expanded = one_hot(sample["label"][None], channels, dim=1)[0]  # float label kept, as in FIELD_NOTES 5
    gc.collect()
    out["one_hot_bytes"] = proc.memory_info().rss - loaded
    out["one_hot_dtype"] = str(expanded.dtype)
    out["one_hot_shape"] = list(expanded.shape)
print(json.dumps(out))
"""


def measure_ram_per_sample(shape: Sequence[int] = (128, 128, 128), one_hot_channels: int = 0,
                           workdir: Path | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Measure the RSS that MONAI LoadImaged (+ a one-hot expansion) adds for one sample, in a fresh process.

    Writes a uint8 image and label NIfTI of `shape` voxels (labels 0..C-1), loads them with LoadImaged in
    a subprocess and reports the RSS growth (bytes) after loading and after the one-hot, beside what
    `transform_stages` predicts for the same sample.
    """
    import nibabel as nib
    import numpy as np

    shape = tuple(int(s) for s in shape)
    voxels = math.prod(shape)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rng = np.random.default_rng(0)
        paths = {}
        for name, high in (("image", 256), ("label", max(one_hot_channels, 2))):
            paths[name] = os.path.join(tmp, f"{name}.nii.gz")
            data = rng.integers(0, high, size=shape, dtype=np.uint8)
            nib.save(nib.Nifti1Image(data, np.eye(4)), paths[name])
            del data
        paths["tiny"] = os.path.join(tmp, "tiny.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), paths["tiny"])
        proc = subprocess.run([sys.executable, "-c", _MEASURE, paths["image"], paths["label"], paths["tiny"],
                               str(one_hot_channels)], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement subprocess failed: {proc.stderr.strip().splitlines()[-1:]}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = transform_stages("uint8", "uint8", one_hot_channels)
    measured["voxels"] = voxels
    measured["model_load_bytes"] = int(stages[0].held * voxels)
    if one_hot_channels:
        # what the one-hot adds on top of the loaded sample while the float label is still referenced
        measured["model_one_hot_bytes"] = int(4 * one_hot_channels * voxels)
    return measured
