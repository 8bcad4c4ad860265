"""`cellcheck train` straight from a folder of CellMap stores: it trains, validates, resumes and refuses as on a
datalist, and writes no NIfTI; its loader draws the same patches with any number of workers, under zarr 2 and 3.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cellcheck.cellmap.trainset import plan_training_set
from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.config import validate_config
from trainer.stores import prepare, store_loader
from commands import cellcheck, write_config

CONFIG = {"model": "segresnet", "datalist": "zarr", "resolution": 8, "output_dir": "runs/store", "roi_size": [32] * 3,
          "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True, "max_steps_per_epoch": 2,
          "num_workers": 0, "mem": "64G", "network_width": 0.25, "seed": 5,
          "exclude_crops": ["crop300", "crop301", "crop302"]}  # the cell line's crops have no 8 nm raw


@pytest.fixture(scope="module")
def stores(clean, tmp_path_factory) -> Path:
    """The clean fixture's stores alone (no datalist, no NIfTI beside them)."""
    root = tmp_path_factory.mktemp("stores")
    shutil.copytree(clean / "zarr", root / "zarr")
    return root


def write(root: Path, name: str, **changes) -> Path:
    return write_config(root, name, CONFIG, **changes)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_trains_validates_resumes_and_writes_no_nifti(stores):
    config = write(stores, "run")
    first = cellcheck("train", "--config", str(config), cwd=stores)
    assert first.returncode == 0, first.stderr[-2000:]
    out = stores / "runs" / "run"
    assert "crops from the stores at 8 nm" in first.stdout
    split = json.loads((out / "split.json").read_text())
    assert split["resolution"] == [8.0, 8.0, 8.0] and split["excluded"] == ["crop300", "crop301", "crop302"]
    assert {c["usage"] for c in split["cases"]} == {"train", "validate"}
    epochs = [r for r in records(out / "metrics.jsonl") if "train_loss" in r]
    assert len(epochs) == 2 and all(r["steps"] == 2 and r["val_dice"] for r in epochs)
    # a second run in the same folder is refused, as on a datalist; --resume continues from last.pt
    again = cellcheck("train", "--config", str(config), cwd=stores)
    assert again.returncode == 1 and "already holds a run" in again.stderr
    resumed = cellcheck("train", "--config", str(config), "--set", "num_epochs=3", "--resume", cwd=stores)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len([r for r in records(out / "metrics.jsonl") if "train_loss" in r]) == 3
    assert json.loads((out / "split.json").read_text()) == split  # the recorded split, not a new one
    assert not list(stores.rglob("*.nii*"))


def test_infer_a_crop_of_a_store_overlays_the_raw(stores):
    """`cellcheck infer CHECKPOINT STORE --crop`: an OME-NGFF group at the crop's true place, written window by window."""
    import zarr

    from cellcheck.cellmap.stores import open_store

    best = stores / "runs" / "run" / "best.pt"
    if not best.exists():
        assert cellcheck("train", "--config", str(write(stores, "run")), cwd=stores).returncode == 0
    store = next(p for p in (stores / "zarr").rglob("*.zarr") if (p / "recon-1/labels/groundtruth/crop1").is_dir())
    proc = cellcheck("infer", "--checkpoint", str(best), str(store), "--crop", "crop1", "--output-dir", "maps", cwd=stores)
    assert proc.returncode == 0, proc.stderr
    group = zarr.open_group(str(stores / proc.stdout.strip()), mode="r")
    transforms = dict(group.attrs)["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    arrays = open_store(store).open_crop("crop1").classes
    level = next(lv for lv in next(iter(arrays.values())).levels if lv.scale == (8.0, 8.0, 8.0))
    assert transforms[0]["scale"] == [1.0, 8.0, 8.0, 8.0] and transforms[1]["translation"][1:] == list(level.translation)
    probs = group["s0"][:]
    assert probs.shape == (14, *next(iter(arrays.values())).shapes[level.path]) and 0 <= probs.min() <= probs.max() <= 1
    assert dict(group.attrs)["class_names"] == list(DEFAULT_CLASS_MAP.names)
    # any box, in nm: the same voxels where the boxes overlap
    lo = transforms[1]["translation"][1:]
    box = ",".join(str(v - 4) for v in lo) + "," + ",".join(str(v - 4 + 8 * 10) for v in lo)
    part = cellcheck("infer", "--checkpoint", str(best), str(store), "--box", box, "--output-dir", "part", cwd=stores)
    assert part.returncode == 0, part.stderr
    assert zarr.open_group(str(stores / part.stdout.strip()), mode="r")["s0"].shape == (14, 10, 10, 10)
    missing = cellcheck("infer", "--checkpoint", str(best), str(store), "--crop", "crop999", "--output-dir", "x", cwd=stores)
    assert missing.returncode == 2 and "no crop 'crop999'" in missing.stderr and missing.stderr.count("\n") == 1


def test_a_crop_that_cannot_train_refuses_the_launch_with_the_line_that_leaves_it_out(stores):
    proc = cellcheck("train", "--config", str(write(stores, "refused", exclude_crops=[])), cwd=stores)
    assert proc.returncode == 1
    assert "[resolution-mismatch] crop300" in proc.stderr and "exclude_crops: [crop300, crop301, crop302]" in proc.stderr
    assert not (stores / "runs" / "refused" / "last.pt").exists()


@pytest.mark.parametrize("changes, message", [
    ({"datasplit": "split.csv"}, "is not under"),
    ({"datalist": "empty"}, "no CellMap zarr stores"),
    ({"exclude_crops": ["crop999"]}, "exclude_crops names crop999"),
])
def test_bad_input_is_one_line_before_the_first_step(stores, changes, message):
    (stores / "empty").mkdir(exist_ok=True)
    (stores / "split.csv").write_text('"train","/nowhere/jrc_x.zarr","recon-1/em/fibsem-uint8","/nowhere/jrc_x.zarr",'
                                      '"recon-1/labels/groundtruth/crop1/[ecs,pm]"\n')
    proc = cellcheck("train", "--config", str(write(stores, "bad", **changes)), cwd=stores)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_class_no_crop_annotates_is_a_finding(stores):
    proc = cellcheck("gate", "--config", str(write(stores, "classes", classes=["ecs", "ribo"])), "--format", "text",
                     cwd=stores)
    assert proc.returncode == 1 and "[class-coverage]" in proc.stdout and "ribo annotated in no training crop" in proc.stdout


def test_a_datasplit_decides_usage_and_what_each_crop_trains(stores):
    rows = []
    for usage, crop, classes in (("train", "crop1", "ecs,pm"), ("train", "crop2", "ecs,ribo"), ("validate", "crop4", "ecs")):
        store = next(p for p in (stores / "zarr").rglob("*.zarr") if (p / "recon-1/labels/groundtruth" / crop).is_dir())
        rows.append(f'"{usage}","{store}","recon-1/em/fibsem-uint8","{store}","recon-1/labels/groundtruth/{crop}/[{classes}]"')
    (stores / "datasplit.csv").write_text("\n".join(rows) + "\n")
    training = plan_training_set(stores / "zarr", (8.0,) * 3, DEFAULT_CLASS_MAP, datasplit=stores / "datasplit.csv")
    assert [(c.case, c.usage, c.classes) for c in training.cases] == [
        ("crop1", "train", ("ecs", "pm")), ("crop2", "train", ("ecs",)), ("crop4", "validate", ("ecs",))]
    assert "crop3" in training.excluded  # absent from the datasplit: left out, and counted


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_draws_the_same_patches_with_any_workers(stores, workers):
    """Per-item seeds: workers 0 and 2 give identical batches; stores are opened in each worker (zarr 2 and 3)."""
    cfg = validate_config({**CONFIG, "datalist": str(stores / "zarr"), "num_workers": workers}).config
    training = plan_training_set(cfg.datalist, cfg.resolution, cfg.classes, exclude=cfg.exclude_crops)
    crops = prepare(training, cfg.classes, training.train, cfg.resample)
    batches = [{k: v.clone() for k, v in b.items()} for b in store_loader(crops, cfg.classes, cfg, epoch=1)]
    serial = validate_config({**CONFIG, "datalist": str(stores / "zarr")}).config
    expected = list(store_loader(crops, serial.classes, serial, epoch=1))
    assert len(batches) == len(expected) == len(training.train)  # batch 2 of 2 patches: one crop per batch
    for got, want in zip(batches, expected):
        for key in ("image", "present", "known"):
            assert got[key].dtype == torch.uint8 and torch.equal(got[key], want[key]), key
    first = batches[0]
    assert first["image"].shape == (2, 1, 32, 32, 32) and first["present"].shape == (2, 2, 32, 32, 32)
    assert np.any(first["known"].numpy())  # every crop annotates something
