"""Datalist loading: whole-file problems are one CellcheckError; entry problems are findings."""

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellcheck.datalist import case_id, load_datalist
from cellcheck.errors import CellcheckError


def write(tmp_path, obj, name="datalist.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_malformed_json_names_line_and_column(tmp_path):
    p = write(tmp_path, '{"training": [\n  {"image": "a.nii.gz",,}\n]}')
    with pytest.raises(CellcheckError, match=r"line 2, column 24"):
        load_datalist(p)


@pytest.mark.parametrize("obj", [[], {"validation": []}, {"training": "imagesTr"}, 3, {"training": []}])
def test_not_a_datalist(tmp_path, obj):
    with pytest.raises(CellcheckError, match="datalist"):
        load_datalist(write(tmp_path, obj))


def test_every_bad_entry_reported_at_once(tmp_path):
    p = write(tmp_path, {"training": [
        {"image": "imagesTr/crop1.nii.gz", "label": "labelsTr/crop1.nii.gz", "fold": 0},
        {"image": "imagesTr/crop2.nii.gz", "fold": 1},
        {"image": "", "label": "l.nii.gz", "fold": -1},
        "imagesTr/crop4.nii.gz",
        {"image": "imagesTr/crop5.nii.gz", "label": "x", "fold": True, "annotated_classes": {"a": 1}},
    ]})
    dl = load_datalist(p)
    assert [e.valid for e in dl.entries] == [True, False, False, False, False]
    by_entry = {f.details["entry"]: f for f in dl.findings}
    assert set(by_entry) == {"training[1]", "training[2]", "training[3]", "training[4]"}
    assert all(f.check == "datalist-invalid" for f in dl.findings)
    assert "'label' is missing" in by_entry["training[1]"].message
    assert by_entry["training[1]"].case == "crop2"
    assert "'fold'" in by_entry["training[2]"].message and "'image'" in by_entry["training[2]"].message
    assert "'annotated_classes'" in by_entry["training[4]"].message


def test_case_ids():
    assert case_id("imagesTr/crop247.nii.gz") == "crop247"
    assert case_id("/abs/labelsTr/crop3.nii") == "crop3"
    assert case_id("imagesTr/crop9.zarr/") == "crop9"


def test_dataroot_resolves_relative_paths(tmp_path):
    p = write(tmp_path, {"training": [{"image": "i/c.nii.gz", "label": "l/c.nii.gz", "fold": 0}]})
    dl = load_datalist(p, dataroot=tmp_path / "data")
    assert dl.resolve("i/c.nii.gz") == (tmp_path / "data" / "i/c.nii.gz").resolve()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(string.printable, max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["training", "validation", "image", "label", "fold", "annotated_classes", "x"]),
                      children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_raises_our_error(tmp_path_factory, value):
    p = tmp_path_factory.mktemp("dl") / "datalist.json"
    p.write_text(json.dumps(value))
    try:
        dl = load_datalist(p)
    except CellcheckError as exc:
        assert "\n" not in str(exc)
        return
    assert dl.entries


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_our_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("dl") / "datalist.json"
    p.write_text(text)
    try:
        load_datalist(p)
    except CellcheckError as exc:
        assert "\n" not in str(exc)
