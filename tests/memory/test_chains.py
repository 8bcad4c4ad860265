"""Loading chains in bytes per voxel: the model of each MONAI transform against a real run, and the field's figures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cellcheck.memory.chains import ChainContext, interpret, lambda_kind
from cellcheck.memory.templates import train_transforms
from memory.field_replay import write_dints_bundle

PROBE = Path(__file__).with_name("chain_probe.py")
GiB = 2**30


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 160^3 uint8 image and a label with every class value, as .nii.gz (what the field converted to).

    Large enough that glibc's free heap (about 1 MB, which a new buffer may take without growing the RSS)
    is a fraction of a byte per voxel: at 96^3 it was one byte per voxel, and a stage's held bytes came out
    one below the model in about one run of three.
    """
    root = tmp_path_factory.mktemp("crop")
    rng = np.random.default_rng(0)
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    nib.save(nib.Nifti1Image(rng.integers(1, 255, (160,) * 3, dtype=np.uint8), affine), root / "image.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 15, (160,) * 3, dtype=np.uint8), affine), root / "label.nii.gz")
    return root


@pytest.mark.parametrize("expansion, sigmoid", [("int64", False), ("uint8", True)])
def test_each_stage_matches_monai(crop, expansion, sigmoid):
    """Every stage's held and peak bytes per voxel, as MONAI 1.6.1 allocates them in a fresh process."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # free as a real-size crop does
    proc = subprocess.run([sys.executable, str(PROBE), str(crop / "image.nii.gz"), str(crop / "label.nii.gz"),
                           expansion, "1" if sigmoid else "0", "4"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    model = interpret(train_transforms("dints", 14, [32, 32, 32], 4, expansion, sigmoid), ChainContext())
    assert [m["name"] for m in measured][:len(model.stages)] == [s.name for s in model.stages]
    for stage, got in zip(model.stages, measured):
        assert got["held"] == pytest.approx(stage.held, abs=1.0), (stage, got)
        assert got["peak"] == pytest.approx(stage.peak, abs=max(1.5, 0.05 * stage.peak)), (stage, got)


def test_the_trainer_chain_is_the_trainers_transforms():
    """The RAM model follows trainer/data.py's chain transform for transform: it cannot drift from it."""
    from cellcheck.intensity import IntensityRule
    from cellcheck.memory.chains import trainer_chain
    from trainer.data import train_transforms

    real = train_transforms([32, 32, 32], 2, 0.7, IntensityRule.for_dtype("uint16"), 5).transforms
    assert [type(t).__name__ for t in real] == [s.name for s in trainer_chain("uint16").stages]
    # whatever the stored dtype, the network's input is float32 and the label uint8: 5 bytes per voxel held
    assert trainer_chain("uint16").held == trainer_chain("uint8").held == 5
    assert trainer_chain("uint16").stages[0].peak == trainer_chain("uint8").stages[0].peak + 1  # the read array


def test_the_field_notes_figures():
    """docs/INCIDENTS.md, incident 17: ~107 GB of int64 for one 800^3 crop; the fixed expansion's 33 B/voxel."""
    sums = interpret(train_transforms("dints", 14, [96] * 3, 26, "int64"), ChainContext())
    stage = next(s for s in sums.stages if s.name == "Lambdad")
    before = sums.stages[sums.stages.index(stage) - 1].held
    assert (stage.peak - before) * 800**3 / GiB == pytest.approx(107, abs=0.5)  # 14 int64 channels, twice
    fixed = interpret(train_transforms("dints", 14, [96] * 3, 26, "uint8"), ChainContext())
    assert next(s for s in fixed.stages if s.name == "Lambdad").peak == 33  # image 4 + label 1 + 14 + 14
    # the June 2023 template cast the label to float32: 64 B/voxel with 15 channels, as the team counted
    old = interpret(train_transforms("dints", 15, [96] * 3, 26, "int64", label_cast="float32"), ChainContext())
    assert old.held == 64 and old.out == 64


def test_sigmoid_crop_label_is_copied_into_every_sample():
    """RandCropByLabelClassesd deep-copies the crop label (C + 1 channels) into each of its samples."""
    few = interpret(train_transforms("dints", 14, [96] * 3, 2, "uint8", sigmoid=True), ChainContext())
    many = interpret(train_transforms("dints", 14, [96] * 3, 26, "uint8", sigmoid=True), ChainContext())
    crop_peak = [next(s.peak for s in c.stages if s.name == "RandCropByLabelClassesd") for c in (few, many)]
    assert crop_peak[1] - crop_peak[0] == (26 - 2) * 15 and many.load_peak == crop_peak[1]
    assert many.held == few.held == 4 + 14  # dropped again before collate
    assert many.patch_voxels == 26 * 96**3 and many.out == 18


def test_a_generated_bundle_reads_as_the_template(tmp_path):
    """The transforms_train.yaml algo.py writes (nested Compose, @ references, the lambda as text) = the template."""
    from cellcheck.memory.bundle import bundle_chain, read_bundle_data

    for expansion, cast in (("int64", "float32"), ("uint8", "uint8")):
        data = read_bundle_data(write_dints_bundle(tmp_path / f"dints_{expansion}", 8, expansion, cast))
        assert (data.workers, data.batch, data.crops_per_image, data.roi) == (8, 2, 26, [96, 96, 96])
        chain = bundle_chain(data, [96, 96, 96], 26)
        template = interpret(train_transforms("dints", 14, [96] * 3, 26, expansion, label_cast=cast), ChainContext())
        assert (chain.held, chain.load_peak, chain.out, chain.patch_voxels) == (
            template.held, template.load_peak, template.out, template.patch_voxels)


def test_lambda_forms_are_recognised():
    assert lambda_kind("$lambda x: torch.cat([sum([x == i for i in c]) for c in [[1], [2, 3]]], dim=0)") == (
        "expand-sum", 2)
    assert lambda_kind("$lambda x: torch.cat([(x == c[0]).to(x.dtype) for c in [[1], [2], [3]]], dim=0)") == (
        "expand-cast", 3)
    assert lambda_kind("$lambda x: 0")[0] == "drop"
    assert lambda_kind("$lambda x: x * 2")[0] == "unknown"
    chain = interpret([{"_target_": "LoadImaged", "keys": ["image", "label"]},
                       {"_target_": "Lambdad", "keys": "label", "func": "$lambda x: x * 2"},
                       {"_target_": "MyOwnTransformd", "keys": "image"}], ChainContext())
    assert any("MyOwnTransformd" in note for note in chain.notes)
    assert "unrecognised" in chain.stages[1].note
