"""The host RAM model against the field's OOM (docs/INCIDENTS.md, incident 5), and against a real LoadImaged measurement."""

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
    assert stages[0].held * voxels / GB == pytest.approx(0.53, abs=0.01)  # docs/INCIDENTS.md: +0.53 GB RSS


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


# --- over the crops a job loads -------------------------------------------------------------------------


def skewed(n_small=40, small=64**3, large=(400**3, 300**3)):
    """Many small crops and a few large ones."""
    return [ram.Crop(f"small{i}", small) for i in range(n_small)] + [
        ram.Crop(f"large{i}", v) for i, v in enumerate(large)]


def test_the_worst_case_is_the_largest_crops_in_the_slots_in_flight():
    """One rank, 2 workers x prefetch 2, batch 1, whole float32 crops (8 B/voxel, 9 at load, 16 at collate)."""
    crops = skewed()
    loader = ram.Loader(gpus=1, workers=2, prefetch=2, batch=1, hold_validation=False, rank_base_bytes=0,
                        worker_base_bytes=0)
    est = ram.predict_ram_over(crops, ram.template_chain(), loader, epochs=0)
    big, second, s = 400**3, 300**3, 64**3
    # two batches being built (each its crop held and its collate copy: 16 B), two finished (8 B), one in use
    assert est.peak_bytes == 16 * big + 16 * second + 8 * s + 8 * s + 8 * s
    assert est.worst_case["slots"] == 5 and est.worst_case["distinct_crops"] == 5
    assert [d["case"] for d in est.worst_case["drivers"][:2]] == ["large0", "large1"]
    assert est.worst_case["drivers"][0]["slot"] == "being built, at the chain's peak"
    # the mean crop, as the model had it, sees far less
    mean = sum(c.voxels for c in crops) / len(crops)
    assert ram.predict_ram([mean ** (1 / 3)] * 3, 1, 2, 2, 1, hold_validation=False, rank_base_bytes=0,
                           worker_base_bytes=0).peak_bytes < est.peak_bytes / 3


def test_typical_epoch_is_between_the_median_step_and_the_worst_case():
    crops = skewed(n_small=60, large=(400**3, 380**3, 360**3))
    loader = ram.Loader(gpus=2, workers=4, prefetch=2, batch=1)
    chain = ram.template_chain(one_hot_channels=14)
    est = ram.predict_ram_over(crops, chain, loader, mem_bytes=25 * GiB, epochs=200)
    t = est.typical
    assert t["median_step_bytes"] <= t["peak_bytes"] <= t["epoch_peak_p90_bytes"] <= est.peak_bytes
    assert t["epochs_simulated"] == 200 and 0 < t["p_epoch_exceeds_mem"] < 1
    # more memory, fewer epochs cross it; the simulation is seeded
    more = ram.predict_ram_over(crops, chain, loader, mem_bytes=29 * GiB, epochs=200)
    assert more.typical["p_epoch_exceeds_mem"] < t["p_epoch_exceeds_mem"]
    assert ram.predict_ram_over(crops, chain, loader, mem_bytes=25 * GiB, epochs=200).typical == t
    assert ram.predict_ram_over(crops, chain, loader, mem_bytes=est.peak_bytes, epochs=200).typical[
        "p_epoch_exceeds_mem"] == 0


def test_every_crop_alike_gives_the_single_shape_model():
    """A dataset of equal crops: the worst case is the mean-crop formula, and the typical case equals it."""
    crop = (128, 128, 128)
    one = ram.predict_ram(crop, one_hot_channels=14, **FIELD)
    many = ram.predict_ram_over([ram.Crop(f"c{i}", 128**3) for i in range(50)],
                                ram.template_chain(one_hot_channels=14), ram.Loader(**FIELD), epochs=50)
    assert many.peak_bytes == one.peak_bytes and many.per_rank_bytes == one.per_rank_bytes
    assert many.typical["peak_bytes"] == one.peak_bytes  # every epoch starts with all workers at their peak


def test_a_prediction_without_crops_is_refused():
    with pytest.raises(ram.CellcheckError, match="no training crop"):
        ram.predict_ram_over([], ram.template_chain(), ram.Loader())
