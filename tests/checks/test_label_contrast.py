"""label-contrast: labels that do not follow their image, found without the source stores.

Measured on the fixtures converted right (the generator's own conversion: no crop may be flagged),
wrong (the field-style converter: crops it broke should be), and mixed (two wrong crops among right
ones). tests/benchmarks/label_contrast_rates.py measures the same on more seeds and larger datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cellcheck.audit import audit, run_audit
from cellcheck.audit.options import AuditOptions
from cellcheck.boundaries import BoundaryStats
from cellcheck.checks.contrast import agreements
from datasets import V3, read_datalist
from fixtures import make_dataset
from cellcheck.datalist import case_id
from fixtures.field_convert import crop_of, field_convert


def explicit_steps(image: np.ndarray, label: np.ndarray, axes=(0, 1, 2)) -> tuple[dict[int, int], dict[int, float], float]:
    """Neighbour steps across label boundaries along `axes`, one pair at a time."""
    count: dict[int, int] = {}
    total: dict[int, float] = {}
    squares = 0.0
    for axis in axes:
        for idx in np.ndindex(label.shape):
            nxt = list(idx)
            nxt[axis] += 1
            if nxt[axis] >= label.shape[axis]:
                continue
            a, b = int(label[idx]), int(label[tuple(nxt)])
            if a == b:
                continue
            step = float(image[idx]) - float(image[tuple(nxt)])
            if a > b:
                a, b, step = b, a, -step
            key = a * 256 + b
            count[key] = count.get(key, 0) + 1
            total[key] = total.get(key, 0.0) + step
            squares += step * step
    return count, total, squares


@pytest.mark.parametrize("order", ["C", "F"])
def test_boundary_steps_match_an_explicit_count(order):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (6, 7, 5)).astype(np.uint8)
    image = rng.integers(0, 256, (6, 7, 5)).astype(np.uint8)
    stats = BoundaryStats()
    stats.add(np.asarray(image, order=order), np.asarray(label, order=order), (0, 0, 0))
    count, total, squares = explicit_steps(image, label)
    steps = stats.compact()
    assert dict(zip(steps.keys.tolist(), steps.count.tolist())) == count
    assert dict(zip(steps.keys.tolist(), steps.total.tolist())) == pytest.approx(total)
    assert steps.squares == pytest.approx(squares)


def test_large_crops_are_sampled_on_whole_planes():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, (8, 8, 12)).astype(np.uint8)
    image = rng.integers(0, 256, (8, 8, 12)).astype(np.uint8)
    stats = BoundaryStats(stride=3)
    stats.add(image[:, :, :7], label[:, :, :7], (0, 0, 0))  # two slabs, as a reader hands them over
    stats.add(image[:, :, 7:], label[:, :, 7:], (0, 0, 7))
    count, _, _ = explicit_steps(image[:, :, ::3], label[:, :, ::3], axes=(0, 1))  # sampled planes: within them only
    steps = stats.compact()
    assert dict(zip(steps.keys.tolist(), steps.count.tolist())) == count


def test_slabs_of_any_thickness_give_the_same_steps():
    """Every plane read: steps across the last axis too, the previous slab's last plane kept for the next."""
    rng = np.random.default_rng(2)
    label = rng.integers(0, 3, (5, 6, 9)).astype(np.uint8)
    image = rng.integers(0, 256, (5, 6, 9)).astype(np.uint8)
    whole, slabs = BoundaryStats(), BoundaryStats()
    whole.add(image, label, (0, 0, 0))
    for k0 in range(0, 9, 2):  # slabs of 2 planes, as a reader with a small budget hands them over
        slabs.add(image[:, :, k0:k0 + 2], label[:, :, k0:k0 + 2], (0, 0, k0))
    a, b = whole.compact(), slabs.compact()
    assert a.keys.tolist() == b.keys.tolist() and a.count.tolist() == b.count.tolist()
    assert a.total.tolist() == pytest.approx(b.total.tolist()) and a.squares == pytest.approx(b.squares)
    assert dict(zip(a.keys.tolist(), a.count.tolist())) == explicit_steps(image, label)[0]


@pytest.fixture(scope="module")
def seed0(tmp_path_factory) -> Path:
    """The README's dataset: `python -m fixtures make DIR --defects none` (seed 0)."""
    root = tmp_path_factory.mktemp("seed0") / "data"
    make_dataset(root, seed=0, defects="none", v3=V3)
    field_convert(root / "zarr", root / "field")  # beside the correct conversion, for the mixed datalists
    return root


def _field_entries(field: Path) -> dict[str, dict]:
    """crop id -> the field-style conversion's entry (named <store>_<crop>_0000 as nnU-Net names files)."""
    return {crop_of(e["image"]): e for e in read_datalist(field)["training"]}


def _broken(root: Path, field: Path) -> set[str]:
    """Crops whose field-style conversion differs from the correct one in image or label (store 3: all but crop302)."""
    ref = {case_id(e["image"]): e for e in read_datalist(root)["training"]}
    out = set()
    for crop, e in _field_entries(field).items():
        if crop not in ref:
            if crop != "crop302":
                out.add(crop)
            continue
        pairs = [(np.asarray(nib.load(str(root / ref[crop][k])).dataobj),
                  np.asarray(nib.load(str(field / e[k])).dataobj)) for k in ("image", "label")]
        if any(a.shape != b.shape or (a != b).any() for a, b in pairs):
            out.add(crop)
    return out


def _flagged(path: Path) -> set[str]:
    """Crop ids of the cases label-contrast flags (field-style case ids carry theirs in their names)."""
    return {f.case if f.case.startswith("crop") else crop_of(f.path) for f in audit(path).findings
            if f.check == "label-contrast"}


def test_silent_on_correct_conversions(seed0, clean):
    for root in (seed0, clean):  # seeds 0 and 1
        report = audit(root / "datalist.json")
        # the one line saying voxel sizes were not checked against the stores (no --source), nothing else
        assert [(f.check, f.severity.value, f.case) for f in report.findings] == [("header-voxel-size", "info", None)]
        assert agreements(run_audit(root / "datalist.json").case_stats), "the statistic was not computed at all"


@pytest.fixture(scope="module")
def forty(tmp_path_factory) -> Path:
    """40 clean crops and their field-style conversion: enough correct crops beside the broken ones to compare with."""
    root = tmp_path_factory.mktemp("forty") / "data"
    make_dataset(root, seed=2, defects="none", n_clean=40, v3=V3)
    field_convert(root / "zarr", root / "field")
    return root


def test_hits_and_false_alarms_on_the_field_conversion(forty):
    field = forty / "field"
    broken = _broken(forty, field)
    flagged = _flagged(field / "datalist.json")
    cases = set(_field_entries(field))
    scores = {crop_of(f"{a.case}.nii.gz"): a for a in agreements(run_audit(field / "datalist.json").case_stats)}
    judgeable = {c for c in broken if c in scores and scores[c].judgeable}
    hits, false_alarms = flagged & broken, flagged - broken
    print(f"hits {len(hits)}/{len(broken)} ({len(hits & judgeable)}/{len(judgeable)} judgeable), "
          f"false alarms {len(false_alarms)}/{len(cases - broken)}")
    assert false_alarms == set()
    assert len(judgeable) >= len(broken) / 2 and len(hits & judgeable) >= 0.8 * len(judgeable)


def test_two_misaligned_crops_among_correct_ones(seed0, tmp_path):
    dl = read_datalist(seed0)
    field = _field_entries(seed0 / "field")
    broken = sorted(_broken(seed0, seed0 / "field") & {case_id(e["image"]) for e in dl["training"]})
    swap = set(broken[:2])
    entries = [{**e, "image": f"field/{field[c]['image']}", "label": f"field/{field[c]['label']}"}
               if (c := case_id(e["image"])) in swap else e for e in dl["training"]]
    path = seed0 / "mixed.json"
    path.write_text(json.dumps({"training": entries}))
    flagged = _flagged(path)
    assert flagged <= swap and flagged, (flagged, swap)


def test_too_few_crops_or_no_boundary_is_no_finding(seed0, tmp_path):
    dl = read_datalist(seed0)
    few = seed0 / "few.json"
    broken = sorted(_broken(seed0, seed0 / "field"))[:2]
    field = _field_entries(seed0 / "field")
    few.write_text(json.dumps({"training": [{**field[c], "image": f"field/{field[c]['image']}",
                                             "label": f"field/{field[c]['label']}"} for c in broken]}))
    assert len(run_audit(few).case_stats) == 2 and _flagged(few) == set()  # two crops: no reference to compare with
    scores = {a.case: a for a in agreements(run_audit(seed0 / "datalist.json", options=AuditOptions()).case_stats)}
    constant = [Path(e["image"]).name.split(".")[0] for e in dl["training"]
                if np.unique(np.asarray(nib.load(str(seed0 / e["label"])).dataobj)).size == 1]
    assert constant and all(c not in scores or not scores[c].flagged for c in constant)
