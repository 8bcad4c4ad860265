"""The host RAM model against the field's OOM (FIELD_NOTES 5), and against a real LoadImaged measurement."""

import pytest

from cellcheck.memory import ram
from cellcheck.units import parse_bytes

GB, GiB = 10**9, 2**30
MEAN_CROP = (393, 402, 418)  # uint8 voxels
FIELD = dict(gpus=2, workers=8, prefetch=2, batch=1)


def test_loadimaged_float32_copies_are_eight_bytes_per_voxel():
    stages = ram.transform_stages("uint8", "uint8", one_hot_channels=0)
    assert stages[0].name == "LoadImaged" and stages[0].held == 8
    voxels = 393 * 402 * 418
    assert stages[0].held * voxels / GB == pytest.approx(0.53, abs=0.01)  # FIELD_NOTES: +0.53 GB RSS


def test_one_hot_expansion_is_four_times_the_team_estimate():
    voxels = 393 * 402 * 418
    stages = {s.name: s for s in ram.transform_stages(one_hot_channels=14)}
    expansion = 14 * 4 * voxels
    assert expansion / GB == pytest.approx(3.70, abs=0.01)  # the measured 14-channel float32 label
    assert expansion / (14 * 1 * voxels) == 4  # the team assumed uint8: ~910 MB
    # at the expansion: float32 image + label, the int64 index and 14 float32 channels
    assert (stages["one-hot"].peak - stages["LoadImaged"].held) * voxels / GB == pytest.approx(4.2, abs=0.1)


def test_field_config_does_not_fit_200G():
    est = ram.predict_ram(MEAN_CROP, one_hot_channels=14, mem_bytes=parse_bytes("200G"), **FIELD)
    assert est.fits is False
    assert est.peak_bytes > parse_bytes("200G")
    assert est.peak_bytes / GB == pytest.approx(222, rel=0.10)  # observed at 512G: ~222 GB in total
    assert est.per_worker_bytes / GB < 9  # observed workers: 1.5-7.5 GB each
    assert 60 < est.per_rank_bytes / GB < 110  # observed ranks: ~70 and ~109 GB
    assert est.slurm_mem.endswith("G") and int(est.slurm_mem[:-1]) * GiB >= est.required_bytes
    assert ram.predict_ram(MEAN_CROP, one_hot_channels=14, mem_bytes=parse_bytes("512G"), **FIELD).fits


def test_without_one_hot_far_less_is_needed():
    with_oh = ram.predict_ram(MEAN_CROP, one_hot_channels=14, **FIELD)
    without = ram.predict_ram(MEAN_CROP, one_hot_channels=0, mem_bytes=parse_bytes("200G"), **FIELD)
    assert without.fits
    assert without.required_bytes < with_oh.required_bytes / 4
    assert int(without.slurm_mem[:-1]) < 64


def test_memory_scales_with_workers_prefetch_and_ranks():
    base = ram.predict_ram(MEAN_CROP, one_hot_channels=14, **FIELD).peak_bytes
    assert ram.predict_ram(MEAN_CROP, one_hot_channels=14, **{**FIELD, "workers": 4}).peak_bytes < base
    assert ram.predict_ram(MEAN_CROP, one_hot_channels=14, **{**FIELD, "prefetch": 4}).peak_bytes > base
    one_rank = ram.predict_ram(MEAN_CROP, one_hot_channels=14, **{**FIELD, "gpus": 1}).peak_bytes
    assert one_rank * 2 == base


def test_slurm_mem_rounds_up_to_whole_gib():
    assert ram.slurm_mem(200 * GiB) == "200G"
    assert ram.slurm_mem(200 * GiB + 1) == "201G"
    assert ram.slurm_mem(1) == "1G"


def test_model_matches_a_real_loadimaged_measurement():
    measured = ram.measure_ram_per_sample((128, 128, 128), one_hot_channels=14)
    assert measured["image_dtype"] == measured["label_dtype"] == "torch.float32"
    assert measured["load_bytes"] == pytest.approx(measured["model_load_bytes"], rel=0.2)
    assert measured["one_hot_bytes"] == pytest.approx(measured["model_one_hot_bytes"], rel=0.2)


def test_the_trainer_chain_hands_over_patches_not_crops():
    """cellcheck's trainer (uint8 labels, 2 patches of 96^3 per crop): in-flight batches stop growing with the crop."""
    patches = 2 * 96**3
    small = ram.predict_ram((192, 192, 192), chain="trainer", patch_voxels=patches, **FIELD)
    large = ram.predict_ram(MEAN_CROP, chain="trainer", patch_voxels=patches, **FIELD)
    template = ram.predict_ram(MEAN_CROP, **FIELD)
    # finished batches (prefetch x workers of them) are patch-sized whatever the crop
    assert small.sample["out_bytes"] == large.sample["out_bytes"] == patches * 5
    assert large.per_rank_bytes - large.breakdown["validation_volume"] // 2 == (
        small.per_rank_bytes - small.breakdown["validation_volume"] // 2)
    # the crop still peaks inside the worker: 15 B/voxel at the foreground/background index step
    assert large.per_worker_bytes - ram.WORKER_BASE_BYTES >= 15 * 393 * 402 * 418
    assert large.peak_bytes < template.peak_bytes
    with pytest.raises(ram.CellcheckError, match="patch"):
        ram.predict_ram(MEAN_CROP, chain="trainer", **FIELD)
