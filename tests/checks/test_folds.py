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


def test_same_image_in_two_sections(clean_copy):
    dl = read_datalist(clean_copy)
    dl["validation"] = [{"image": dl["training"][3]["image"], "label": dl["training"][3]["label"],
                         "annotated_classes": dl["training"][3]["annotated_classes"]}]
    report = audit(write_datalist(clean_copy, dl))
    dup = [f for f in report.findings if f.check == "duplicate-case"]
    assert len(dup) == 1 and dup[0].details["entries"] == ["training[3]", "validation[0]"]


def test_class_annotated_in_no_validation_case(clean_copy):
    dl = read_datalist(clean_copy)
    for e in dl["training"]:
        if e["fold"] == 0:  # drop nuc (channel 13) from the annotation lists of fold 0
            e["annotated_classes"] = ",".join(c for c in e["annotated_classes"].split(",") if c != "13")
    report = audit(write_datalist(clean_copy, dl), select=["class-coverage"])
    cov = [f for f in report.findings if f.check == "class-coverage"]
    assert [(f.details["fold"], f.details["channels"]) for f in cov] == [(0, [13])]
    assert "nuc" in cov[0].message
