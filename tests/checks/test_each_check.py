"""Each check id on its own: a dataset with only that defect planted yields exactly its findings.

The generator plants the defect and records where it must show (expected.json); the audit must
report it there, and report no error or warning on any case the defect did not touch.
"""

import pytest

from cellcheck.audit import audit
from cellcheck.findings import AUDIT_CHECKS
from datasets import V3, expected
from fixtures import make_dataset

VIEWS = {"datalist": "datalist.json", "zarr": "zarr"}


#: label-contrast compares a crop with the datalist's other, correct crops: 4 of them are too few to judge by.
CLEAN_CROPS = {"label-contrast": 10}


@pytest.mark.parametrize("check", list(AUDIT_CHECKS))
def test_planted_alone(tmp_path, check):
    root = tmp_path / "data"
    make_dataset(root, seed=3, defects=[check], n_clean=CLEAN_CROPS.get(check, 4), v3=V3)
    exp = expected(root)
    rows = [r for r in exp["findings"] if r["defect"] == check]
    assert rows, f"the generator planted nothing for {check}"
    for view, target in VIEWS.items():
        want = {(r["check"], r["case"]) for r in rows if r["view"] == view}
        report = audit(root / target)
        # every error and warning, and the planted check at its own severity (validation-array is info)
        got = {(f.check, f.case) for f in report.findings if f.severity.value in ("error", "warning") or f.check == check}
        assert want <= got, f"{view}: missing {want - got}"
        touched = {r["case"] for r in rows if r["view"] == view}
        stray = {(c, case) for c, case in got if case not in touched and (c, case) not in want}
        assert stray == set(), f"{view}: findings on untouched cases"
        if not want:
            assert report.passed
