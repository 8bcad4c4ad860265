"""Which resolution each crop trains at, on the published layout: half-resolution and anisotropic crops
are clean, the 32 nm crop whose finer raw was never fetched is the field's blank-crop incident."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cellcheck.audit import audit
from cellcheck.audit.options import AuditOptions
from cellcheck.cli import cli
from datasets import V3
from fixtures import make_dataset

COARSE = "crop100"


@pytest.fixture(scope="module")
def coarse(tmp_path_factory):
    root = tmp_path_factory.mktemp("coarse") / "data"
    make_dataset(root, seed=2, defects=["resolution-mismatch"], n_clean=3, v3=V3)
    return root / "zarr"


def findings_of(report, case):
    return [(f.check, f.severity.value) for f in report.findings if f.case == case]


def test_coarse_crop_is_a_warning_without_resolution(coarse):
    report = audit(coarse)
    assert findings_of(report, COARSE) == [("resolution-mismatch", "warning")]
    [summary] = [f for f in report.findings if f.case != COARSE]  # its store's one line; the other stores: none
    assert (summary.check, summary.severity.value, summary.case) == ("resolution-mismatch", "info", None)
    assert summary.path == "jrc_fix-1/jrc_fix-1.zarr" and "32 nm (1)" in summary.message
    counts = summary.details["resolutions"]
    assert counts["8 nm"] == 2 and counts["32 nm"] == 1  # clean crops 1 and 3 (odd: store 1) and the coarse crop
    assert report.passed and report.stats["resolutions"][COARSE] == [[32.0] * 3, [64.0] * 3]


def test_the_summary_and_its_text_line(coarse):
    result = CliRunner().invoke(cli, ["audit", str(coarse), "--format", "text"])
    lines = result.output.splitlines()
    assert result.exit_code == 0 and lines[-1].startswith("PASSED") and "1 warning, 1 info" in lines[-1]
    assert lines[-2].startswith("jrc_fix-1/jrc_fix-1.zarr: info [resolution-mismatch] -: jrc_fix-1: resolutions its")


def test_a_crop_sharing_a_resolution_with_the_others_is_no_finding():
    """Crops at three finest resolutions, as a store annotated at 4, 8 and 32 nm over 8 nm raw holds: one line."""
    from cellcheck.checks.resolutions import CropResolutions, store_summary

    eight, sixteen, thirtytwo = (8.0,) * 3, (16.0,) * 3, (32.0,) * 3
    crops = [CropResolutions(f"crop{i}", f"c{i}", (eight, sixteen), eight) for i in range(4)]
    crops += [CropResolutions("crop8", "c8", (sixteen, thirtytwo), eight, "raw s0 holds no chunks under it"),
              CropResolutions("crop9", "c9", (thirtytwo,), eight, "raw s0 holds no chunks under it")]
    found = store_summary("jrc_x", "jrc_x.zarr", crops)
    assert [(f.severity.value, f.case) for f in found] == [("info", None), ("warning", "crop9")]
    assert "8 nm (4 crops), 16 nm (5), 32 nm (2)" in found[0].message
    assert store_summary("jrc_x", "jrc_x.zarr", crops[:4]) == []  # every crop at its raw's s0: nothing to say


def test_coarse_crop_is_an_error_at_8_nm_naming_the_fix(coarse):
    report = audit(coarse, options=AuditOptions(resolution=(8.0,) * 3))
    [f] = [f for f in report.findings if f.case == COARSE]
    assert (f.check, f.severity.value) == ("resolution-mismatch", "error")
    assert "32 nm" in f.message and "--fetch-all-em-resolutions" in f.message
    assert not report.passed


def test_coarse_crop_is_clean_at_32_nm(coarse):
    report = audit(coarse, options=AuditOptions(resolution=(32.0,) * 3))
    assert findings_of(report, COARSE) == []


def test_every_other_crop_lists_8_nm_or_its_cell_lines_raw(coarse):
    resolutions = audit(coarse).stats["resolutions"]
    for case, scales in resolutions.items():
        if case == COARSE:
            continue
        assert scales[0] in ([8.0] * 3, [5.24, 4.0, 4.0]), case  # the finest = the raw's own s0


def test_cli_resolution_in_the_json_report(coarse):
    result = CliRunner().invoke(cli, ["audit", str(coarse), "--resolution", "8", "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    errors = {(f["check"], f["case"]) for f in report["findings"] if f["severity"] == "error"}
    # the coarse crop, and the anisotropic cell line, which has no 8 nm level at all; the three clean crops
    # are full crops without a nucleus, so at 8 nm nuc is annotated and present in no crop that trains
    assert errors == {("resolution-mismatch", c) for c in (COARSE, "crop300", "crop301", "crop302")} | {
        ("class-empty", None)}


@pytest.mark.parametrize("value", ["0", "8,8", "eight", "-4"])
def test_bad_resolution_is_exit_2(coarse, value):
    result = CliRunner().invoke(cli, ["audit", str(coarse), "--resolution", value])
    assert result.exit_code == 2 and "--resolution" in result.output
