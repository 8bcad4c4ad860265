"""Datasets large enough to measure the audit: many mid-size crops and one big one, NIfTI gz and zarr.

Content is EM-like (smooth noise, uint8 1..255) with blocky organelle labels 0..14, so the
files compress like real crops; written once per session and cached under the pytest tmp dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import zarr


def _volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    coarse = tuple(max(1, -(-s // 8)) for s in shape)
    smooth = np.kron(rng.normal(110, 40, coarse), np.ones((8, 8, 8)))[: shape[0], : shape[1], : shape[2]]
    image = np.clip(smooth + rng.normal(0, 12, shape), 1, 255).astype(np.uint8)
    label = np.kron(rng.integers(0, 15, coarse), np.ones((8, 8, 8), dtype=np.int64))
    label = label[: shape[0], : shape[1], : shape[2]].astype(np.uint8)
    return image, label


def write_nifti_zarr_dataset(root: Path, n: int, size: int, big: int, seed: int = 0) -> dict[str, Path]:
    """`n` crops of size^3 plus one of big^3, as NIfTI gz (datalist_nii.json) and zarr (datalist_zarr.json)."""
    rng = np.random.default_rng(seed)
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    nii, zr = [], []
    shapes = [(size, size, size)] * n + [(big, big, big)]
    for i, shape in enumerate(shapes):
        image, label = _volume(rng, shape)
        case = f"crop{i + 1}"
        entry = {"fold": int(i % 5 == 0), "annotated_classes": ",".join(map(str, range(14)))}
        affine = np.diag([8.0, 8.0, 8.0, 1.0])
        for kind, data in (("images", image), ("labels", label)):
            nib.save(nib.Nifti1Image(data, affine), root / f"{kind}Tr/{case}.nii.gz")
            arr = zarr.create_array(store=str(root / f"{kind}Tr/{case}.zarr"), shape=shape, chunks=(64, 64, 64),
                                    dtype="uint8", fill_value=0, zarr_format=3)
            arr[...] = data
        nii.append({"image": f"imagesTr/{case}.nii.gz", "label": f"labelsTr/{case}.nii.gz", **entry})
        zr.append({"image": f"imagesTr/{case}.zarr", "label": f"labelsTr/{case}.zarr", **entry})
    out = {}
    for name, entries in (("nii", nii), ("zarr", zr)):
        out[name] = root / f"datalist_{name}.json"
        out[name].write_text(json.dumps({"training": entries}))
    return out


def write_single_crop(root: Path, size: int, seed: int = 0) -> Path:
    """One size^3 crop as NIfTI gz and its datalist: for peak-memory measurements."""
    return write_nifti_zarr_dataset(root, 0, size, size, seed)["nii"]


def write_small_crops(root: Path, n: int, seed: int = 0) -> Path:
    """`n` crops of 26..34 voxels per side as NIfTI gz (datalist_small.json): where per-case overhead shows."""
    rng = np.random.default_rng(seed)
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        shape = tuple(int(s) for s in rng.integers(26, 35, 3))
        image, label = _volume(rng, shape)
        case = f"crop{i + 1}"
        for kind, data in (("images", image), ("labels", label)):
            nib.save(nib.Nifti1Image(data, np.diag([8.0, 8.0, 8.0, 1.0])), root / f"{kind}Tr/{case}.nii.gz")
        entries.append({"image": f"imagesTr/{case}.nii.gz", "label": f"labelsTr/{case}.nii.gz", "fold": int(i % 5 == 0),
                        "annotated_classes": ",".join(map(str, range(14)))})
    path = root / "datalist_small.json"
    path.write_text(json.dumps({"training": entries}))
    return path
