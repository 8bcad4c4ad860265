"""Training-config validation: every problem at once, defaults visible, field incidents caught."""

from pathlib import Path

import pytest

from cellcheck.config import KEYS, loss_masking, parse_overrides, read_config, validate_config
from cellcheck.errors import CellcheckError

GOOD = {"model": "dints", "datalist": "d.json", "output_dir": "runs/a", "roi_size": [96, 96, 96],
        "batch_size": 2, "num_patches_per_image": 4, "num_epochs": 300}


def checks(findings):
    return sorted((f.check, f.details.get("key")) for f in findings)


def test_good_config_gets_defaults():
    loaded = validate_config(GOOD)
    assert loaded.findings == []
    cfg = loaded.config
    assert cfg.loss == "partial" and cfg.gpu == "l40s" and cfg.num_classes == 14 and cfg.network_width == 1.0
    assert set(cfg.to_json()) == set(KEYS)


def test_paths_resolve_against_the_config_folder_once(tmp_path):
    cfg = validate_config({**GOOD, "dataroot": "data"}, base=tmp_path).config
    assert cfg.datalist == tmp_path / "d.json" and cfg.output_dir == tmp_path / "runs/a"
    assert cfg.dataroot == tmp_path / "data"
    assert validate_config({**GOOD, "datalist": "/abs/d.json"}, base=tmp_path).config.datalist == Path("/abs/d.json")


def test_classes_inline_or_from_a_file_and_the_dump_validates_again(tmp_path):
    cfg = validate_config({**GOOD, "classes": ["ecs", "nuc"]}).config
    assert cfg.classes.names == ("ecs", "nuc") and cfg.num_classes == 2
    again = validate_config(cfg.to_json()).config
    assert again == cfg


def test_field_incident_missing_keys_all_reported():
    raw = {k: v for k, v in GOOD.items() if k not in ("num_patches_per_image", "roi_size")}
    findings = validate_config(raw).findings
    assert checks(findings) == [("config-invalid", "num_patches_per_image"), ("config-invalid", "roi_size")]


def test_smoke_test_epochs_are_stale_unless_declared():
    findings = validate_config({**GOOD, "num_epochs": 2}).findings
    assert checks(findings) == [("stale-config", "num_epochs")]
    assert validate_config({**GOOD, "num_epochs": 2, "smoke_test": True}).findings == []


@pytest.mark.parametrize("key, value", [("amp", "yes"), ("batch_size", 0), ("roi_size", [96, 96]),
                                         ("model", "unet"), ("fold", True), ("learning_rate", "1e-4")])
def test_wrong_types_and_values(key, value):
    findings = validate_config({**GOOD, key: value}).findings
    assert checks(findings) == [("config-invalid", key)]


def test_typo_suggests_the_key():
    findings = validate_config({**GOOD, "num_epoch": 3}).findings
    assert "did you mean 'num_epochs'" in findings[0].message


def test_unmasked_loss_on_partial_annotations():
    cfg = validate_config({**GOOD, "loss": "dice_bce"}).config
    assert [f.check for f in loss_masking(cfg.loss, partial=True)] == ["loss-unmasked"]
    assert loss_masking(cfg.loss, partial=False) == []


@pytest.mark.parametrize("key, value, fragment", [
    ("loss", "dicece", "must be 'partial' or 'dice_bce'"),  # was accepted and ignored
    ("deep_supervision", True, "segresnet only"),  # GOOD is dints: the key would do nothing
    ("class_weights", [1.0, 2.0], "one weight per class (14), not 2"),
    ("class_weights", "inverse", "must be 'inverse_frequency' or a valid list"),
    ("roi_size", [96, 0, 96], "'roi_size[1]' must be greater than 0"),
    ("ddp_timeout_s", 0, "greater than 0"),
])
def test_keys_that_would_do_nothing_or_cannot_work_are_rejected(key, value, fragment):
    loaded = validate_config({**GOOD, key: value})
    findings = loaded.findings
    assert checks(findings) == [("config-invalid", key)]
    assert fragment in findings[0].message and "\n" not in findings[0].message
    assert loaded.config is None and (key not in loaded.usable or loaded.usable[key] != value)


def test_loss_options_are_config_keys():
    loaded = validate_config({**GOOD, "model": "segresnet", "class_weights": "inverse_frequency",
                              "batch_dice": True, "squared_pred": True, "compile": True})
    assert loaded.findings == []
    cfg = loaded.config
    assert cfg.class_weights == "inverse_frequency" and cfg.batch_dice and cfg.squared_pred and cfg.compile
    assert cfg.deep_supervision is True  # segresnet's default
    assert validate_config(GOOD).config.deep_supervision is False  # dints has none


def test_read_config_errors_are_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: dints\nroi_size: [96, 96\n")
    with pytest.raises(CellcheckError, match=r"malformed YAML at line \d+, column \d+"):
        read_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(CellcheckError, match="mapping"):
        read_config(p)
    with pytest.raises(CellcheckError, match="no such config"):
        read_config(tmp_path / "nope.yaml")


def test_overrides_parse_yaml_values():
    assert parse_overrides(["roi_size=[64,64,64]", "amp=false", "model=segresnet"]) == {
        "roi_size": [64, 64, 64], "amp": False, "model": "segresnet"}
    with pytest.raises(CellcheckError):
        parse_overrides(["roi_size"])


def test_class_map_sets_num_classes_and_is_checked(tmp_path):
    """`classes:` (relative to the config) sets num_classes; a disagreeing num_classes or a bad map is one finding."""
    (tmp_path / "five.csv").write_text("name\necs\npm\nmito_mem\nmito_lum\nnuc\n")
    source = str(tmp_path / "train.yaml")
    loaded = validate_config({**GOOD, "classes": "five.csv"}, source, base=tmp_path)
    assert loaded.findings == [] and loaded.config.num_classes == 5
    findings = validate_config({**GOOD, "classes": "five.csv", "num_classes": 14}, source, base=tmp_path).findings
    assert checks(findings) == [("config-invalid", "num_classes")] and "lists 5 classes" in findings[0].message
    (tmp_path / "bad.yaml").write_text("[ecs, mitochondria]\n")
    findings = validate_config({**GOOD, "classes": "bad.yaml"}, source, base=tmp_path).findings
    assert checks(findings) == [("config-invalid", "classes")] and "'mitochondria'" in findings[0].message
    findings = validate_config({**GOOD, "classes": "missing.yaml"}, source, base=tmp_path).findings
    assert checks(findings) == [("config-invalid", "classes")]
