"""missing-fold, empty-fold, duplicate-case, class-coverage on rewritten copies of a clean datalist."""

from cellcheck.audit import audit
from datasets import read_datalist, write_datalist


def checks(report):
    return {(f.check, f.case) for f in report.findings}


def test_no_fold_keys_with_validation_array_is_the_field_incident(clean_copy):
    dl = read_datalist(clean_copy)
    train = [e for e in dl["training"] if e["fold"] == 1]
    val = [e for e in dl["training"] if e["fold"] == 0]
    for e in train + val:
        del e["fold"]
    dl["training"], dl["validation"] = train, val
    report = audit(write_datalist(clean_copy, dl))
    f = [f for f in report.findings if f.check == "empty-fold"]
    assert len(f) == 1 and f[0].case is None
    assert "ZeroDivisionError" in f[0].message and "validation" in f[0].message
    assert not [f for f in report.findings if f.check == "missing-fold"]


def test_missing_fold_names_each_entry(clean_copy):
    dl = read_datalist(clean_copy)
    del dl["training"][0]["fold"], dl["training"][2]["fold"]
    report = audit(write_datalist(clean_copy, dl))
    missing = sorted(f.details["entry"] for f in report.findings if f.check == "missing-fold")
    assert missing == ["training[0]", "training[2]"]


def test_gap_in_fold_numbers(clean_copy):
    dl = read_datalist(clean_copy)
    for e in dl["training"]:
        e["fold"] = {0: 0, 1: 2}[e["fold"]]
    report = audit(write_datalist(clean_copy, dl))
    assert [f.details["fold"] for f in report.findings if f.check == "empty-fold"] == [1]


def test_same_image_in_two_sections_without_folds(clean_copy):
    """Without fold keys a loader reads both arrays: a case in both leaks validation into training."""
    dl = read_datalist(clean_copy)
    for e in dl["training"]:
        del e["fold"]
    dl["validation"] = [{"image": dl["training"][3]["image"], "label": dl["training"][3]["label"],
                         "annotated_classes": dl["training"][3]["annotated_classes"]}]
    report = audit(write_datalist(clean_copy, dl))
    dup = [f for f in report.findings if f.check == "duplicate-case"]
    assert len(dup) == 1 and dup[0].details["entries"] == ["training[3]", "validation[0]"]


def test_validation_array_beside_folds_is_information(clean_copy):
    """The field's datalist kept its fold-0 entries in `validation`; datafold_read ignores that array."""
    dl = read_datalist(clean_copy)
    dl["validation"] = [dict(e) for e in dl["training"] if e["fold"] == 0]
    report = audit(write_datalist(clean_copy, dl))
    assert report.passed and not [f for f in report.findings if f.severity.value != "info"]
    [info] = [f for f in report.findings if f.check == "validation-array"]
    assert info.details == {"entries": len(dl["validation"]), "repeats": len(dl["validation"]),
                            "fold0": len(dl["validation"]), "unused": 0}


def test_same_image_twice_in_training_stays_an_error(clean_copy):
    dl = read_datalist(clean_copy)
    dl["validation"] = [dict(e) for e in dl["training"] if e["fold"] == 0]
    dl["training"].append({**dl["training"][0], "fold": 1 - dl["training"][0]["fold"]})
    report = audit(write_datalist(clean_copy, dl))
    dup = [f for f in report.findings if f.check == "duplicate-case"]
    assert len(dup) == 1 and dup[0].details["entries"] == ["training[0]", f"training[{len(dl['training']) - 1}]"]


def test_class_annotated_in_no_validation_case(clean_copy):
    dl = read_datalist(clean_copy)
    for e in dl["training"]:
        if e["fold"] == 0:  # drop nuc (channel 13) from the annotation lists of fold 0
            e["annotated_classes"] = ",".join(c for c in e["annotated_classes"].split(",") if c != "13")
    report = audit(write_datalist(clean_copy, dl), select=["class-coverage"])
    cov = [f for f in report.findings if f.check == "class-coverage"]
    assert [(f.details["fold"], f.details["channels"]) for f in cov] == [(0, [13])]
    assert "nuc" in cov[0].message


def test_a_misspelt_image_key_is_not_also_a_missing_fold(clean_copy):
    """Issue 23, item 9: `img` for `image` is datalist-invalid, and no fold finding: every entry has its fold."""
    import json

    from click.testing import CliRunner

    from cellcheck.cli import cli

    dl = read_datalist(clean_copy)
    for entry in dl["training"]:
        entry["img"] = entry.pop("image")
    path = write_datalist(clean_copy, dl)
    r = CliRunner().invoke(cli, ["audit", str(path), "--format", "json"])
    found = json.loads(r.stdout)["findings"]
    assert r.exit_code == 1
    assert [f["message"] for f in found if f["check"] == "datalist-invalid"] == [
        f"training[{i}]: 'image' is missing" for i in range(len(dl["training"]))]
    assert not [f for f in found if f["check"] in ("empty-fold", "missing-fold")], found
