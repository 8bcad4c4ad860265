"""The coverage plan: a class annotated and present nowhere refuses the launch; the plan's counts are the data's."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from cellcheck.classes import DEFAULT_CLASS_MAP
from commands import cellcheck
from fixtures import make_dataset

RIBO = "mito_ribo"
STORE_CONFIG = {"model": "segresnet", "datalist": "zarr", "resolution": 8, "output_dir": "runs/s",
                "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 2,
                "smoke_test": True, "exclude_crops": ["crop300", "crop301", "crop302"], "num_workers": 0}


@pytest.fixture(scope="module")
def ribo_empty(tmp_path_factory) -> Path:
    """The challenge's ribo: every crop lists mito_ribo as annotated, none holds a voxel of it."""
    root = tmp_path_factory.mktemp("ribo") / "data"
    make_dataset(root, seed=0, defects=["class-empty"])
    return root


def test_a_class_annotated_everywhere_and_present_nowhere_refuses_the_launch(ribo_empty):
    config = ribo_empty / "train-stores.yaml"
    config.write_text(yaml.safe_dump(STORE_CONFIG))
    proc = cellcheck("train", "--config", str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[class-empty]" in proc.stderr and f"{RIBO} is annotated in" in proc.stderr
    run = ribo_empty / "runs/s"
    assert not (run / "last.pt").exists() and not (run / "metrics.jsonl").exists()  # refused before a step


def test_the_audit_names_it_over_every_crop_in_both_views(ribo_empty):
    for target in ("datalist.json", "zarr"):
        proc = cellcheck("audit", str(ribo_empty / target), "--format", "json")
        empty = [f for f in json.loads(proc.stdout)["findings"] if f["check"] == "class-empty"]
        assert [f["details"]["class"] for f in empty] == [RIBO] and empty[0]["severity"] == "error", target


def _label_counts(root: Path) -> dict[str, tuple[frozenset[int], dict[int, int], int | None]]:
    """Per training entry, read here with nibabel: annotated channels, voxels per label value, fold."""
    datalist = json.loads((root / "datalist.json").read_text())
    out = {}
    for e in datalist["training"]:
        label = np.asarray(nib.load(root / e["label"]).dataobj)
        values, counts = np.unique(label, return_counts=True)
        channels = frozenset(int(c) for c in str(e["annotated_classes"]).split(","))
        out[e["label"]] = (channels, dict(zip(values.tolist(), counts.tolist())), e.get("fold"))
    return out


def test_the_gate_plan_counts_what_the_labels_hold_at_the_runs_split(clean, tmp_path):
    """annotated / present / voxels per class over the training fold, and presence in validation, from the files."""
    config = tmp_path / "coverage.yaml"
    config.write_text(yaml.safe_dump({**STORE_CONFIG, "datalist": str(clean / "datalist.json"), "output_dir": "r"}))
    proc = cellcheck("gate", "--config", str(config), "--format", "json")
    plan = json.loads(proc.stdout)["gate"]["coverage"]
    assert plan["split"] == "fold 0 validates" and plan["roi"] == [32, 32, 32]
    files = _label_counts(clean)
    for channel, row in enumerate(plan["classes"]):
        value = channel + 1
        train = [(ch, n) for ch, n, fold in files.values() if fold != 0 and channel in ch]
        val = [(ch, n) for ch, n, fold in files.values() if fold == 0 and channel in ch]
        assert row["name"] == DEFAULT_CLASS_MAP.names[channel]
        assert row["annotated"] == len(train) and row["validation_annotated"] == len(val)
        assert row["present"] == sum(1 for _, n in train if n.get(value))
        assert row["voxels"] == sum(n.get(value, 0) for _, n in train)
        assert row["validation_present"] == sum(1 for _, n in val if n.get(value))


def test_a_class_present_in_training_only_is_a_coverage_warning(clean, tmp_path):
    """Move every validation crop where nuc is present into training: nuc's validation Dice is then undefined."""
    datalist = json.loads((clean / "datalist.json").read_text())
    nuc = DEFAULT_CLASS_MAP.label_value["nuc"]
    files = _label_counts(clean)
    moved = 0
    for e in datalist["training"]:
        if e.get("fold") == 0 and files[e["label"]][1].get(nuc):
            e["fold"], moved = 1, moved + 1
    assert moved, "the clean dataset validates on a crop holding a nucleus"
    (tmp_path / "nuc-train-only.json").write_text(json.dumps(datalist))
    config = tmp_path / "nuc.yaml"
    config.write_text(yaml.safe_dump({**STORE_CONFIG, "datalist": "nuc-train-only.json", "dataroot": str(clean),
                                      "output_dir": "r"}))
    proc = cellcheck("gate", "--config", str(config), "--format", "json")
    report = json.loads(proc.stdout)
    coverage = [f for f in report["findings"] if f["check"] == "class-coverage"]
    assert proc.returncode == 1 and [f["details"]["class"] for f in coverage] == ["nuc"]
    assert "validation Dice is undefined" in coverage[0]["message"]


def test_audit_roi_shows_the_plan_and_a_crop_within_the_roi_gives_every_patch(clean):
    """With an ROI larger than every crop each patch holds the whole crop: a class gets patches x crops present."""
    proc = cellcheck("audit", str(clean / "datalist.json"), "--roi", "512,512,512", "--patches", "3",
                     "--format", "json")
    plan = json.loads(proc.stdout)["coverage"]
    assert plan["patches_per_crop"] == 3 and plan["split"] == "fold 0 validates"
    for row in plan["classes"]:
        assert row["patches_per_epoch"] == 3 * row["present"]
    text = cellcheck("audit", str(clean / "datalist.json"), "--roi", "32,32,32", "--format", "text").stdout
    assert "coverage (fold 0 validates; 1 patch of 32x32x32 per crop and epoch, 70% on foreground):" in text
    assert all(name in text for name in DEFAULT_CLASS_MAP.names)
