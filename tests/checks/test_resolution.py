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
    assert report.passed and [f for f in report.findings if f.case != COARSE] == []
    assert report.stats["resolutions"][COARSE] == [[32.0] * 3, [64.0] * 3]


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
