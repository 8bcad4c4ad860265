"""The field's dataset by size alone, from the numbers the team recorded, as header-only NIfTI files.

    python tests/memory/field_replay.py DIR   # writes DIR/data (datalist, 468 sparse NIfTI files), 3 bundles; the table

What the field notes give, and how each number enters:

- 234 usable crops, 198 training (fold 1) and 36 validation (fold 0);
- crop shape min 100x124x180, median 400^3, mean 393x402x418 per axis;
- six training crops of ~512M voxels (~800^3);
- the team's own analysis: the 32 largest training crops need ~429 GB once expanded to 15 float32
  channels, with the float32 image 64 B/voxel (their ~32 GB per 512M-voxel crop and ~4 GB per 400^3
  one are the same 62.5-64 B/voxel): the 32 largest sum to 429e9 / 64 = 6.70e9 voxels.

The crop of the recorded maximum, 1796x1500x2400 (crop247, 6.5e9 voxels), is not among the 234:
it is the entry with an empty `annotated_classes` (incident 4) that the cleanup removed, and with it
the 32 largest training crops would hold at least 9.5e9 voxels, not 6.7e9 (the stats that report it
were computed on 238 cases, incident 14). `with_crop247=True` puts it back as a training crop.

Shapes: the six at ~800^3; ranks 7..32 fall geometrically from 255M voxels so that the 32 sum to
6.70e9 (rank 32 lands at 64.8M, the median's size, without being asked to); a block of exactly
400^3 crops holds the median; the smallest crops run from the recorded minimum up towards 400^3
on a curve whose per-axis means make the dataset's mean 393x402x418. Validation crops: one ~630^3,
two ~510^3, fifteen 400^3, the rest small. Files are written with a real NIfTI header and a sparse
data part (`truncate`), so `cellcheck predict` reads every size and no voxel exists on disk.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

GIANTS = [(800, 800, 800), (780, 810, 810), (790, 800, 810), (760, 820, 822), (800, 790, 810), (820, 780, 800)]
MIN_SHAPE = (100, 124, 180)
MEDIAN_SHAPE = (400, 400, 400)
MEAN_SHAPE = (393, 402, 418)
TEAM_BYTES_PER_VOXEL = 64  # 15 float32 label channels + the float32 image, as the team counted
TEAM_TOP32_BYTES = 429e9
CROP247 = (1796, 1500, 2400)
_ASPECT = (0.97, 1.0, 1.03)
_SMALL_TOP = (380, 390, 420)  # below 400^3 in voxels (62.2M)


def _near_cube(voxels: float) -> tuple[int, int, int]:
    k = (voxels / math.prod(_ASPECT)) ** (1 / 3)
    return tuple(int(round(k * a)) for a in _ASPECT)  # type: ignore[return-value]


def _large() -> list[tuple[int, int, int]]:
    """Training ranks 7..32: geometric from 255M voxels, summing with the six to the team's 6.70e9."""
    rest = TEAM_TOP32_BYTES / TEAM_BYTES_PER_VOXEL - sum(math.prod(s) for s in GIANTS)
    lo, hi = 0.5, 0.9999
    for _ in range(80):  # the ratio r with 255e6 (1 - r^26) / (1 - r) = rest
        r = (lo + hi) / 2
        lo, hi = (r, hi) if 255e6 * (1 - r**26) / (1 - r) < rest else (lo, r)
    return [_near_cube(255e6 * r**k) for k in range(26)]


def field_crops(with_crop247: bool = False) -> list[tuple[str, tuple[int, int, int], int]]:
    """(case, shape (x, y, z) in voxels, fold) for the 234 crops: fold 1 trains, fold 0 validates."""
    train = GIANTS + _large() + [MEDIAN_SHAPE] * 80
    val = [(630, 640, 650), (500, 510, 520), (500, 510, 520)] + [MEDIAN_SHAPE] * 15
    n_small = 234 - len(train) - len(val)
    fixed = np.sum(train + val, axis=0)
    need = np.array(MEAN_SHAPE) * 234 - fixed  # what the small crops' axes must add up to
    t = np.linspace(0.0, 1.0, n_small)
    lo, top = np.array(MIN_SHAPE, float), np.array(_SMALL_TOP, float)
    # lo + (top - lo) t^p per axis, p solved so that the axis sums to `need` (the mean is monotone in p)
    small = np.empty((n_small, 3))
    for axis in range(3):
        a, b = 0.01, 20.0
        for _ in range(80):
            p = (a + b) / 2
            total = (lo[axis] + (top[axis] - lo[axis]) * t**p).sum()
            a, b = (p, b) if total > need[axis] else (a, p)
        small[:, axis] = lo[axis] + (top[axis] - lo[axis]) * t**p
    small_shapes = [tuple(int(round(v)) for v in row) for row in small]
    to_val = set(range(2, n_small, n_small // 18)[:18])  # 18 small crops validate, spread over the sizes
    val += [s for i, s in enumerate(small_shapes) if i in to_val]
    train += [s for i, s in enumerate(small_shapes) if i not in to_val]
    crops = [(s, 1) for s in train] + [(s, 0) for s in val]
    if with_crop247:
        crops.append((CROP247, 1))
    order = np.random.default_rng(16).permutation(len(crops))  # case numbers carry no size order
    return [(f"crop{i + 1:03d}", crops[j][0], crops[j][1]) for i, j in enumerate(order)]


def write_header_only_nifti(path: Path, shape: tuple[int, ...], spacing: float = 8.0) -> None:
    """A single-file NIfTI-1 with a real header and a sparse uint8 data part: its size costs no disk."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr.set_zooms((spacing,) * len(shape))
    hdr.set_sform(np.diag([spacing, spacing, spacing, 1.0]), code=1)
    hdr.set_qform(np.diag([spacing, spacing, spacing, 1.0]), code=1)
    offset = 352
    hdr["vox_offset"] = offset
    with open(path, "wb") as fh:
        hdr.write_to(fh)
        fh.write(b"\0" * (offset - fh.tell()))
        fh.truncate(offset + math.prod(shape))


def write_field_datalist(root: Path, with_crop247: bool = False) -> Path:
    """The 234 crops as header-only image and label NIfTI pairs under `root`, and their MONAI datalist."""
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries = []
    for case, shape, fold in field_crops(with_crop247):
        for kind in ("imagesTr", "labelsTr"):
            write_header_only_nifti(root / kind / f"{case}.nii", shape)
        entries.append({"image": f"imagesTr/{case}.nii", "label": f"labelsTr/{case}.nii", "fold": fold,
                        "annotated_classes": ",".join(str(c) for c in range(14))})
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"training": entries}, indent=1))
    return datalist


def write_dints_bundle(root: Path, workers: int, expansion: str, label_cast: str, channels: int = 14) -> Path:
    """A DiNTS bundle as the template's algo.py generates it for a CellMap task (CT, class_names by label value).

    `expansion` "int64" writes the template's label-expansion Lambdad (sum of masks), "uint8" the field's
    fix; `label_cast` the label dtype of the training CastToTyped ("float32" in the June 2023 template).
    """
    import yaml

    classes = [[v] for v in range(1, channels + 1)]
    if expansion == "int64":
        func = f"$lambda x: torch.cat([sum([x == i for i in c]) for c in {classes}], dim=0).to(dtype=x.dtype)"
    else:
        func = f"$lambda x: torch.cat([(x == c[0]).to(x.dtype) for c in {classes}], dim=0)"
    both = ["@image_key", "@label_key"]
    transforms = {"image_key": "image", "label_key": "label", "transforms_train": {"_target_": "Compose", "transforms": [
        {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key", "dtype": "$np.float32", "image_only": False},
            {"_target_": "LoadImaged", "keys": "@label_key", "dtype": "$np.uint8", "image_only": False}]},
        {"_target_": "EnsureChannelFirstd", "keys": both},
        {"_target_": "Compose", "transforms": [
            {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": 11.3, "a_max": 194.1, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "CropForegroundd", "keys": both, "source_key": "@image_key", "allow_smaller": True}]},
        {"_target_": "Orientationd", "keys": both, "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": both, "pixdim": "@training#transforms#resample_resolution",
         "mode": ["bilinear", "nearest"]},
        {"_target_": "Compose", "transforms": [
            {"_target_": "CastToTyped", "keys": both, "dtype": ["$torch.float32", f"$torch.{label_cast}"]},
            {"_target_": "Lambdad", "keys": "@label_key", "func": func}]},
        {"_target_": "EnsureTyped", "keys": both, "track_meta": True},
        {"_target_": "SpatialPadd", "keys": both, "spatial_size": "@training#roi_size", "mode": ["constant", "constant"]},
        {"_target_": "IdentityD", "keys": ["@label_key"]},
        {"_target_": "RandCropByLabelClassesd", "keys": both, "label_key": "@label_key",
         "num_classes": "@training#output_classes", "spatial_size": "@training#roi_size",
         "num_samples": "@training#num_crops_per_image", "warn": False},
        {"_target_": "RandRotated", "keys": both, "range_x": 0.3, "prob": 0.2},
        {"_target_": "RandFlipd", "keys": both, "spatial_axis": 0, "prob": 0.5}]}}
    hyper = {"bundle_root": str(root), "training": {
        "num_workers": workers, "num_images_per_batch": 2, "num_crops_per_image": 26, "num_patches_per_iter": 13,
        "roi_size": [96, 96, 96], "output_classes": channels + 1, "auto_scale_allowed": True,
        "num_workers_validation": 2, "transforms": {"resample_resolution": [8.0, 8.0, 8.0]}}}
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "hyper_parameters.yaml").write_text(yaml.safe_dump(hyper))
    (root / "configs" / "transforms_train.yaml").write_text(yaml.safe_dump(transforms, sort_keys=False))
    return root


#: Incidents 16 and 17: (configuration, bundle settings, the team's --mem, the team's figure in GB, how they got it).
CONFIGS = [
    ("8 workers, int64 expansion, float32 labels (the job that died)",
     {"workers": 8, "expansion": "int64", "label_cast": "float32"}, "512G", 509,
     "32 largest x 64 B/voxel (429 GB) + ~80 GB overhead"),
    ("2 workers, int64 expansion, float32 labels (first fix)",
     {"workers": 2, "expansion": "int64", "label_cast": "float32"}, "350G", 310,
     "8 largest x 64 B/voxel + ~80 GB, the same method"),
    ("8 workers, uint8 expansion (second fix)",
     {"workers": 8, "expansion": "uint8", "label_cast": "uint8"}, "300G", 246,
     "16 workers x 33 B/voxel + overhead"),
]


def replay(datalist: Path, work: Path, epochs: int = 400) -> list[dict]:
    """`predict` for each configuration from its bundle: DiNTS, 2 ranks, the team's --mem; rows for `table`."""
    from cellcheck.memory.predict import predict

    rows = []
    for i, (label, settings, mem, team_gb, how) in enumerate(CONFIGS):
        bundle = write_dints_bundle(work / f"dints_{i}", **settings)
        out = predict(datalist, "dints", "l40s", gpus=2, mem=mem, search_max_batch=False, bundle=bundle,
                      epochs=epochs)
        rows.append({"config": label, "mem": mem, "team_gb": team_gb, "team_method": how, "ram": out["ram"],
                     "dataset": out["dataset"], "findings": out["findings"]})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: the team's figure and --mem beside cellcheck's worst case, typical epoch and odds."""
    gb, gib = 1e9, 2**30
    lines = ["| configuration | team's figure | cellcheck worst case | `--mem` it recommends | typical epoch peak | "
             "median step | per rank | team's `--mem` | epochs crossing it |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ram, t = r["ram"], r["ram"]["typical"]
        lines.append(f"| {r['config']} | ~{r['team_gb']} GB | {ram['peak_bytes'] / gb:.0f} GB "
                     f"({ram['peak_bytes'] / gib:.0f} GiB) | {ram['slurm_mem']} | {t['peak_bytes'] / gb:.0f} GB | "
                     f"{t['median_step_bytes'] / gb:.0f} GB | {ram['per_rank_bytes'] / gb:.0f} GB | {r['mem']} | "
                     f"{100 * t['p_epoch_exceeds_mem']:.0f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    rows = replay(write_field_datalist(root / "data"), root)
    print(table(rows))
    for r in rows:
        drivers = ", ".join(f"{d['case']} {d['voxels'] / 1e6:.0f}M" for d in r["ram"]["worst_case"]["drivers"][:6])
        print(f"{r['config']}: driven by {drivers}")
