"""The issue's acceptance test: every planted defect is found, in both views, and nothing else is."""

import pytest

from cellcheck.audit import audit
from cellcheck.findings import AUDIT_CHECKS

from datasets import V3, expected
from fixtures import make_dataset

VIEWS = {"datalist": "datalist.json", "zarr": "zarr"}


def flagged(report, severities=("error", "warning")):
    return {(f.check, f.case) for f in report.findings if f.severity.value in severities}


@pytest.mark.parametrize("view", VIEWS)
def test_every_planted_defect_is_reported(defects_all, view):
    exp = expected(defects_all)
    report = audit(defects_all / VIEWS[view])
    found = {(f.check, f.case) for f in report.findings}
    want = {(r["check"], r["case"]) for r in exp["findings"] if r["view"] == view}
    assert want, "the generator planted nothing in this view"
    assert want - found == set()
    assert not report.passed and report.exit_code == 1


@pytest.mark.parametrize("view", VIEWS)
def test_clean_cases_have_no_error_or_warning(defects_all, view):
    exp = expected(defects_all)
    report = audit(defects_all / VIEWS[view])
    clean = set(exp["clean_cases"][view])
    assert clean, "the defect dataset should keep clean cases beside the planted ones"
    noisy = sorted((c, case) for c, case in flagged(report) if case in clean)
    assert noisy == []
    # dataset-level findings (case None) must each come from a planted defect
    planted_dataset_level = {r["check"] for r in exp["findings"] if r["view"] == view and r["case"] is None}
    assert {c for c, case in flagged(report) if case is None} <= planted_dataset_level


def test_every_check_id_is_planted(defects_all):
    exp = expected(defects_all)
    assert {r["check"] for r in exp["findings"]} == set(AUDIT_CHECKS)


@pytest.mark.parametrize("view", VIEWS)
def test_clean_dataset_passes(clean, view):
    report = audit(clean / VIEWS[view])
    assert flagged(report) == set()
    assert report.passed and report.exit_code == 0
    assert report.cases == len(expected(clean)["cases"][view])


@pytest.mark.skipif(not V3, reason="zarr 2 reads no format 3 store (see the test below)")
def test_both_zarr_formats_are_audited(defects_all):
    exp = expected(defects_all)
    report = audit(defects_all / "zarr")
    assert report.cases == len(exp["cases"]["zarr"])
    formats = {"zarr.json" if (p / "zarr.json").exists() else ".zgroup" for p in (defects_all / "zarr").rglob("*.zarr")}
    assert formats == {"zarr.json", ".zgroup"}
    assert {f.path.split("/")[0] for f in report.findings} >= {"jrc_fix-1", "jrc_fix-2"}


@pytest.mark.skipif(V3, reason="zarr 3 reads format 3 stores")
def test_zarr2_reports_a_format_3_store_with_the_fix(tmp_path):
    make_dataset(tmp_path / "d", defects="none", n_clean=3, v3=True)
    report = audit(tmp_path / "d" / "zarr")
    [bad] = [f for f in report.findings if f.severity.value == "error"]
    assert bad.check == "unreadable" and bad.path.startswith("jrc_fix-2") and "zarr>=3" in bad.message


@pytest.mark.parametrize("view", VIEWS)
def test_parallel_audit_equals_serial(defects_all, view):
    from cellcheck.audit.options import AuditOptions

    serial = audit(defects_all / VIEWS[view], options=AuditOptions(jobs=1)).to_json()
    parallel = audit(defects_all / VIEWS[view], options=AuditOptions(jobs=2)).to_json()
    assert parallel == serial


def test_small_memory_budget_gives_the_same_report(defects_all):
    from cellcheck.audit.options import AuditOptions

    default = audit(defects_all / "datalist.json").to_json()
    tiny = audit(defects_all / "datalist.json", options=AuditOptions(block_bytes=4096)).to_json()
    assert tiny == default
