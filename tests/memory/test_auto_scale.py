"""Auto3DSeg's auto-scaling rules as the templates compute them, and stale values in generated bundles."""

import pytest
import yaml

from cellcheck.findings import Severity
from cellcheck.memory import auto_scale as a
from cellcheck.memory.gpus import gpu_profile

L40S = gpu_profile("l40s")
#: The field's training set: 198 crops, mean 393x402x418 voxels, 8 nm, largest 1796x1500x2400.
FIELD = a.DatasetStats(198, (393.0, 402.0, 418.0), (8.0, 8.0, 8.0), (1796, 1500, 2400))


def test_dints_on_l40s_gives_the_field_batch():
    got = a.dints(FIELD, L40S, output_classes=15)
    assert got.batch_size == 13 and got.num_patches_per_image == 26  # docs/INCIDENTS.md: 13 and 26
    assert got.roi_size == [96, 96, 96]


def test_dints_epochs_follow_the_data_size_formula():
    # f = 1251/198 * (393/240)(402/240)(418/155) / 6 = 7.789; int(400 f / 13) = 239
    assert a.dints(FIELD, L40S).num_epochs == 239
    # without stats the data factor is skipped: f = max(1, 1/6) = 1 -> int(400 / 13)
    assert a.dints(None, L40S).num_epochs == 30
    # the field logged 41 epochs: its stats gave f in [1.3325, 1.365), e.g. 154 cases of mean 240x240x155
    assert a.dints(a.DatasetStats(154, (240.0, 240.0, 155.0)), L40S).num_epochs == 41


def test_swinunetr_on_l40s_gives_batch_6_not_the_recorded_1():
    got = a.swinunetr(FIELD, L40S, output_classes=15)
    assert got.batch_size == 6 and got.num_patches_per_image == 12
    assert got.num_epochs == min(1000, int(800000 / 198 / 12)) == 336
    assert a.swinunetr(FIELD, L40S, output_classes=14).batch_size == 6


def test_swinunetr_batch_1_needs_less_than_about_15_5_gib_free():
    assert a.swinunetr(FIELD, L40S, free_bytes=int(15.4 * 2**30)).batch_size == 1
    assert a.swinunetr(FIELD, L40S, free_bytes=int(17.0 * 2**30)).batch_size > 1
    v100 = a.swinunetr(FIELD, gpu_profile("v100"))
    assert v100.batch_size == 1 and v100.num_epochs == 1000  # the field record: batch 1, 1000 epochs


def test_segresnet_on_l40s_keeps_the_roi_and_runs_batch_3():
    got = a.segresnet(FIELD, L40S, output_classes=15)
    assert got.roi_size == [224, 224, 144]
    assert got.batch_size == 3  # int(1.1 * 46068 / 1024 / 16) = int(3.09)
    assert got.details["gpu_factor_init"] == pytest.approx(2.81, abs=0.01)
    assert got.num_epochs == 405  # clip(ceil(80000 / 198), 300, 1250), written at bundle generation


def test_segresnet_without_auto_scale_is_the_yaml_default():
    got = a.segresnet(FIELD, L40S, auto_scale_batch=False)
    assert got.batch_size == 1 and got.roi_size == [224, 224, 144]


def test_segresnet_roi_is_clipped_to_small_images_and_rounded_to_the_levels():
    small = a.DatasetStats(50, (100.0, 124.0, 180.0), (8.0, 8.0, 8.0))
    got = a.segresnet(small, L40S)
    assert got.roi_size == [96, 112, 144]  # min(224, 100) -> 6 * 16, min(224, 124) -> 7 * 16, 144 stays
    assert got.batch_size == 3


def test_segresnet_many_classes_shrink_the_roi_on_a_small_gpu():
    got = a.segresnet(FIELD, gpu_profile("v100"), output_classes=105)
    side = got.roi_size[0]
    assert got.roi_size == [side] * 3 and side % 16 == 0 and side < 144


def test_patch_shrinks_for_images_smaller_than_96():
    tiny = a.DatasetStats(10, (40.0, 40.0, 40.0), max_shape=(70, 40, 200))
    assert a.dints(tiny, L40S).roi_size == [64, 32, 96]
    assert a.swinunetr(tiny, L40S).roi_size == [64, 64, 96]


def test_larger_cards_get_larger_batches():
    batches = [a.dints(FIELD, gpu_profile(g)).batch_size for g in ("v100", "a100", "l40s", "h100", "h200")]
    assert batches == sorted(batches) and batches[0] < batches[-1]


def _bundle(tmp_path, name, hp, network=None):
    root = tmp_path / name
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "hyper_parameters.yaml").write_text(yaml.safe_dump(hp))
    if network:
        (root / "configs" / "network.yaml").write_text(yaml.safe_dump(network))
    return root


def test_swinunetr_bundle_from_a_small_gpu_is_stale_on_l40s(tmp_path):
    root = _bundle(tmp_path, "swinunetr_0", {"num_patches_per_iter": 1, "num_patches_per_image": 2,
                                              "num_epochs": 1000, "patch_size": [96, 96, 96], "n_cases": 198,
                                              "output_classes": 15, "auto_scale_allowed": True})
    config = a.read_bundle(root)
    assert config.model == "swinunetr"
    findings = a.stale_config(config, a.swinunetr(FIELD, L40S), L40S)
    by_key = {f.details["key"]: f for f in findings}
    assert set(by_key) == {"num_patches_per_iter", "num_patches_per_image", "num_epochs"}
    assert all(f.check == "stale-config" and f.severity is Severity.WARNING for f in findings)
    assert by_key["num_patches_per_iter"].details == {**by_key["num_patches_per_iter"].details,
                                                      "config_value": 1, "expected": 6}
    assert "6" in by_key["num_patches_per_iter"].message and "L40S" in by_key["num_patches_per_iter"].message


def test_segresnet_smoke_test_epochs_are_stale(tmp_path):
    # incident 6 in docs/INCIDENTS.md: num_epochs 2 left from a smoke test; batch_size refers to num_images_per_batch
    root = _bundle(tmp_path, "segresnet_0", {"roi_size": [224, 224, 144], "num_images_per_batch": 1,
                                              "batch_size": "@num_images_per_batch", "num_epochs": 2,
                                              "auto_scale_allowed": True, "auto_scale_batch": True})
    config = a.read_bundle(root)
    assert config.values["batch_size"] == 1
    findings = {f.details["key"]: f for f in a.stale_config(config, a.segresnet(FIELD, L40S), L40S)}
    assert findings["num_epochs"].details["config_value"] == 2
    assert findings["num_epochs"].details["recomputed_at_run_time"] is False
    assert findings["num_images_per_batch"].details["recomputed_at_run_time"] is True
    assert "roi_size" not in findings


def test_dints_bundle_keys_live_under_training_and_matching_values_are_quiet(tmp_path):
    expected = a.dints(FIELD, L40S)
    root = _bundle(tmp_path, "dints_0", {"training": {
        "num_patches_per_iter": expected.batch_size, "num_patches_per_image": expected.num_patches_per_image,
        "num_epochs": expected.num_epochs, "patch_size": [96, 96, 96], "auto_scale_allowed": True}})
    config = a.read_bundle(root / "configs" / "hyper_parameters.yaml")
    assert config.model == "dints"
    assert a.stale_config(config, expected, L40S) == []


def test_unreadable_bundle_is_a_user_error(tmp_path):
    from cellcheck.errors import CellcheckError

    with pytest.raises(CellcheckError, match="hyper_parameters.yaml"):
        a.read_bundle(tmp_path)
    root = tmp_path / "b"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "hyper_parameters.yaml").write_text("a: [unclosed\n")
    with pytest.raises(CellcheckError, match="YAML"):
        a.read_bundle(root, "dints")


def test_stats_from_a_dict_are_validated():
    from cellcheck.errors import CellcheckError

    s = a.DatasetStats.from_dict({"n_cases": 198, "mean_shape": [393, 402, 418], "spacing": [8, 8, 8]})
    assert s.n_cases == 198 and s.mean_shape == (393.0, 402.0, 418.0)
    with pytest.raises(CellcheckError, match="mean_shape"):
        a.DatasetStats.from_dict({"n_cases": 3})
    with pytest.raises(CellcheckError):
        a.DatasetStats.from_dict({"n_cases": 3, "mean_shape": [1, 2]})
