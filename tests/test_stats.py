"""Per-label statistics by label value, checked against a brute-force numpy computation."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cellcheck.audit import audit
from cellcheck.cli import cli
from cellcheck.classes import CLASS_NAMES
from datasets import read_datalist


def brute_force(root):
    """Everything from whole arrays loaded by nibabel, the obvious way."""
    per_value = {v: {"annotated": 0, "present": 0, "voxels": 0, "fractions": []} for v in range(1, 15)}
    intensities = []
    for e in read_datalist(root)["training"]:
        lab = np.asanyarray(nib.load(root / e["label"]).dataobj)
        img = np.asanyarray(nib.load(root / e["image"]).dataobj)
        intensities.append(img.ravel())
        channels = {int(c) for c in e["annotated_classes"].split(",") if c}
        for v in range(1, 15):
            if v - 1 not in channels:
                continue
            n = int((lab == v).sum())
            row = per_value[v]
            row["annotated"] += 1
            row["voxels"] += n
            row["fractions"].append(n / lab.size)
            row["present"] += n > 0
    return per_value, np.concatenate(intensities)


def test_per_label_equals_brute_force(clean):
    report = audit(clean / "datalist.json")
    want, intensities = brute_force(clean)
    got = {r["label"]: r for r in report.stats["per_label"]}
    for v, w in want.items():
        present = [f for f in w["fractions"] if f > 0]
        assert got[v]["class"] == CLASS_NAMES[v - 1]
        assert got[v]["crops_annotated"] == w["annotated"]
        assert got[v]["crops_present"] == w["present"]
        assert got[v]["voxels"] == w["voxels"]
        assert got[v]["mean_fg_pct_present"] == pytest.approx(100 * np.mean(present) if present else 0, abs=1e-4)
        assert got[v]["mean_fg_pct_annotated"] == pytest.approx(100 * np.mean(w["fractions"]), abs=1e-4)
    img = report.stats["images"]["intensity"]
    assert img["mean"] == pytest.approx(intensities.mean(), abs=1e-3)
    assert img["stdev"] == pytest.approx(intensities.std(), abs=1e-3)
    assert img["median"] == int(np.percentile(intensities, 50, method="inverted_cdf"))
    assert img["percentile_99_5"] == int(np.percentile(intensities, 99.5, method="inverted_cdf"))


def test_rare_label_keeps_its_true_percentage(clean):
    """nuc occurs only in the few 'nucleus crops' that hold few labels: DataAnalyzer said 0 %."""
    report = audit(clean / "datalist.json")
    nuc = next(r for r in report.stats["per_label"] if r["class"] == "nuc")
    assert 1 <= nuc["crops_present"] < nuc["crops_annotated"]
    assert nuc["mean_fg_pct_present"] > 30


def test_both_views_agree_at_the_training_resolution(clean):
    """The datalist is the stores converted at 8 nm: the stores audited at 8 nm give the same table."""
    from cellcheck.audit.options import AuditOptions

    a = audit(clean / "datalist.json").stats["per_label"]
    b = audit(clean / "zarr", options=AuditOptions(resolution=(8.0, 8.0, 8.0))).stats["per_label"]
    assert a == b


def test_foreground_intensity_by_label(clean):
    fg = audit(clean / "datalist.json").stats["images"]["foreground_intensity"]
    means = {}
    for e in read_datalist(clean)["training"]:
        lab = np.asanyarray(nib.load(clean / e["label"]).dataobj)
        img = np.asanyarray(nib.load(clean / e["image"]).dataobj)
        for v in np.unique(lab[lab > 0]):
            means.setdefault(int(v), []).append(img[lab == v])
    for v, parts in means.items():
        assert fg["per_label"][str(v)]["mean"] == pytest.approx(np.concatenate(parts).mean(), abs=1e-3)


def test_stats_cli_and_datastats_roundtrip(clean_copy):
    out = clean_copy / "datastats.yaml"
    r = CliRunner().invoke(cli, ["stats", str(clean_copy / "datalist.json"), "--format", "json",
                                 "--datastats-out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0
    assert [row["label"] for row in json.loads(r.stdout)["per_label"]] == list(range(1, 15))
    doc = yaml.safe_load(out.read_text())
    labels = doc["stats_summary"]["label_stats"]["label"]
    assert [e["label_value"] for e in labels] == list(range(15))  # position == label value
    nuc = labels[14]
    assert nuc["class"] == "nuc" and nuc["foreground_percentage"] > 30
    # our own datastats, beside the datalist, is not stale
    report = audit(clean_copy / "datalist.json")
    assert not [f for f in report.findings if f.check == "stale-stats"]


def test_a_truncated_image_is_left_out_by_name_and_fails_the_run(clean_copy):
    """Issue 23, item 2: statistics over 9 of 10 cases say which one is missing, and exit 1 unless allowed."""
    entry = read_datalist(clean_copy)["training"][0]
    image = clean_copy / entry["image"]
    image.write_bytes(image.read_bytes()[:2000])
    case = image.name.removesuffix(".nii.gz")
    r = CliRunner().invoke(cli, ["stats", str(clean_copy / "datalist.json"), "--format", "json"])
    images = json.loads(r.stdout)["images"]
    assert r.exit_code == 1 and f"1 of {images['cases']} cases left out" in r.stderr
    assert images["left_out"] == {case: "unreadable"} and images["in_statistics"] == images["cases"] - 1
    allowed = CliRunner().invoke(cli, ["stats", str(clean_copy / "datalist.json"), "--format", "text",
                                       "--allow-partial"])
    assert allowed.exit_code == 0 and f"left out (unreadable): {case}" in allowed.stdout


def test_crops_that_cannot_train_at_the_resolution_are_named(clean):
    """Issue 23, item 2: `stats STORES --resolution 8` names the three crops its table leaves out."""
    r = CliRunner().invoke(cli, ["stats", str(clean / "zarr"), "--resolution", "8", "--format", "text"])
    assert r.exit_code == 1
    assert "cases: 13 (3 left out of these statistics); shape" in r.stdout
    assert "left out (cannot train at 8 nm): crop300, crop301, crop302" in r.stdout


def test_a_store_with_no_crop_at_the_resolution_gives_no_table_and_fails(clean):
    """Issue 23, item 2: no all-zero table with exit 0 when no crop trains at the resolution asked for."""
    store = clean / "zarr" / "jrc_fix-3"
    r = CliRunner().invoke(cli, ["stats", str(store), "--resolution", "8", "--format", "text", "--allow-partial"])
    assert r.exit_code == 1
    assert "cases: 3 (3 left out of these statistics); no case in these statistics" in r.stdout
    assert "none of the 3 cases could be used" in r.stderr
def test_stats_from_an_audit_report_without_reading_voxels_again(clean_copy, tmp_path):
    report = tmp_path / "audit.json"
    r = CliRunner().invoke(cli, ["audit", str(clean_copy / "datalist.json"), "--format", "json", "-o", str(report)])
    assert r.exit_code == 0
    direct = CliRunner().invoke(cli, ["stats", str(clean_copy / "datalist.json")])
    shutil.rmtree(clean_copy)  # the report alone: nothing left to read
    saved = CliRunner().invoke(cli, ["stats", str(report)])
    assert saved.exit_code == 0 and saved.stdout == direct.stdout
    refused = CliRunner().invoke(cli, ["stats", str(report), "--datastats-out", str(tmp_path / "ds.yaml")])
    assert refused.exit_code == 2 and "per-case statistics" in refused.output and "Traceback" not in refused.output
