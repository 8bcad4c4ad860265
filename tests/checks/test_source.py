"""`cellcheck audit DATALIST --source STORES`: a conversion checked voxel by voxel against the crops it came from.

The field-style converter (fixtures/field_convert.py) replays incident 19: label s0 and raw s0 whatever
their voxel sizes, the raw read from round(label translation / raw scale), an 8 nm header everywhere.
Which of its cases are broken is decided here independently of the check: by comparing them with the
generator's own (correct) conversion.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from cellcheck.audit import audit
from cellcheck.audit.options import AuditOptions
from cellcheck.cli import cli
from datasets import read_datalist
from fixtures.field_convert import field_convert
from fixtures.generate import LABEL_SHIFT

SOURCE_ERRORS = {"source-geometry", "source-content"}


def arrays(root: Path, entry: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img, lab = nib.load(str(root / entry["image"])), nib.load(str(root / entry["label"]))
    return np.asarray(img.dataobj), np.asarray(lab.dataobj), img.affine


@pytest.fixture(scope="module")
def field(clean, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("field") / "conv"
    field_convert(clean / "zarr", out)
    return out


def broken_cases(clean: Path, field: Path) -> dict[str, bool]:
    """case -> whether the field's conversion differs from the correct one (image, label or header)."""
    ref = {Path(e["image"]).name: e for e in read_datalist(clean)["training"]}
    out = {}
    for e in read_datalist(field)["training"]:
        name = Path(e["image"]).name
        case = name.split(".")[0]
        if name not in ref:  # the cell line has no correct 8 nm conversion: every header is wrong
            out[case] = True
            continue
        (a, la, fa), (b, lb, fb) = arrays(clean, ref[name]), arrays(field, e)
        same = a.shape == b.shape and (a == b).all() and (la == lb).all() and np.allclose(fa, fb)
        out[case] = not same
    return out


def test_every_crop_the_field_converter_breaks_is_an_error(clean, field):
    broken = broken_cases(clean, field)
    assert sum(broken.values()) >= 8 and not all(broken.values())  # most, not all: 8 nm crops of store 1 survive
    report = audit(field / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    flagged = {f.case for f in report.findings if f.check in SOURCE_ERRORS and f.severity.value == "error"}
    assert flagged == {c for c, b in broken.items() if b}
    assert report.exit_code == 1


def test_messages_say_how_far_off(clean, field):
    report = audit(field / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    by_case: dict[str, list[str]] = {}
    for f in report.findings:
        by_case.setdefault(f.case, []).append(f.message)
    seen_scale = seen_shift = False
    for e in read_datalist(field)["training"]:
        case = Path(e["image"]).name.split(".")[0]
        text = " ".join(by_case.get(case, []))
        m = re.search(r"label holds crop s0 \(4 nm\) under the header's 8 nm.*?apart at the first voxel and ([\d.]+) at the "
                      r"far edge", text)
        if m and "raw s0 (8 nm), its first voxel [0.0, 0.0, 0.0]" in text:
            # a 4 nm label voxel i sits at corner + 2 + 4 i, the 8 nm image voxel i at corner + 4 + 8 i
            n = max(arrays(field, e)[1].shape)
            assert float(m.group(1)) == pytest.approx(0.25 + (n - 1) * 0.5, abs=0.01), case
            seen_scale = True
        if "raw s0 (8 nm), its first voxel [8.0, 16.0, 4.0] voxels from the crop's" in text:
            seen_shift = True  # store 2's raw starts at (64, 128, 32) nm: the field's read lands 8, 16, 4 voxels off
    assert seen_scale and seen_shift


def test_the_header_of_the_cell_line_is_caught_even_where_its_voxels_are_right(clean, field):
    report = audit(field / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    [f] = [f for f in report.findings if f.case == "crop302" and f.severity.value == "error"]
    assert f.check == "source-geometry" and "8 nm" in f.message and "5.24x4x4 nm" in f.message


def test_the_fixtures_own_conversion_against_its_stores(defects_all):
    report = audit(defects_all / "datalist.json", options=AuditOptions(source=defects_all / "zarr"))
    got = {(f.check, f.case) for f in report.findings if f.check.startswith("source-")}
    assert ("source-geometry", "crop101") in got  # clip + pad: the crop's whole box, past the raw
    [pad] = [f for f in report.findings if f.check == "source-geometry" and f.case == "crop101"]
    assert "padded, not clipped" in pad.message
    [shift] = [f for f in report.findings if f.check == "source-content" and f.case == "crop116"]
    assert f"{[float(v) for v in LABEL_SHIFT]} voxels from the crop's" in shift.message
    assert ("source-geometry", "crop100") in got  # a 32 nm crop with an 8 nm header: no raw there at all
    assert ("source-annotation", "crop3") in got  # its partly unknown class listed as annotated
    assert {c for k, c in got if k == "source-missing"} >= {"crop202", "crop203", "crop204", "crop205"}
    # clean in the datalist view, but their crops are broken in the stores: off the raw grid, in another zarr format
    assert ("source-geometry", "crop113") in got and ("source-missing", "crop115") in got
    clean_cases = set(json.loads((defects_all / "expected.json").read_text())["clean_cases"]["datalist"])
    assert {c for k, c in got if k != "source-annotation"} & clean_cases == {"crop113", "crop115"}


def test_renamed_files_are_found_through_the_provenance(clean, tmp_path):
    from cellcheck.classes import DEFAULT_CLASS_MAP
    from cellcheck.convert import Options, convert

    out = tmp_path / "out"
    convert(clean / "zarr", out, Options((8.0,) * 3, DEFAULT_CLASS_MAP))
    dl = read_datalist(out)
    e = dl["training"][0]
    case = Path(e["image"]).name.split(".")[0]
    for key in ("image", "label"):
        new = e[key].replace("crop", "case_")
        (out / e[key]).rename(out / new)
        dl["cellcheck"]["cases"][case][key] = new
        e[key] = new
    (out / "datalist.json").write_text(json.dumps(dl))
    report = audit(out / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    assert report.summary == {"error": 0, "warning": 0, "info": 0}, report.findings
    # without the provenance the renamed case cannot be placed, and says so
    del dl["cellcheck"]
    (out / "datalist.json").write_text(json.dumps(dl))
    report = audit(out / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    [f] = report.findings
    assert f.check == "source-missing" and "no crop id" in f.message


def test_a_crop_id_in_two_stores_is_not_guessed(clean, tmp_path):
    stores = tmp_path / "zarr"
    shutil.copytree(clean / "zarr", stores)
    shutil.copytree(stores / "jrc_fix-1/jrc_fix-1.zarr", stores / "copy/jrc_fix-9.zarr")
    report = audit(clean / "datalist.json", options=AuditOptions(source=stores))
    missing = {f.case: f.message for f in report.findings if f.check == "source-missing"}
    assert missing and all("2 stores" in m for m in missing.values())


def test_cli(clean, field):
    result = CliRunner().invoke(cli, ["audit", str(field / "datalist.json"), "--source", str(clean / "zarr"),
                                      "--format", "json"])
    assert result.exit_code == 1
    checks = {f["check"] for f in json.loads(result.output)["findings"]}
    assert SOURCE_ERRORS <= checks
    bad = CliRunner().invoke(cli, ["audit", str(clean / "zarr"), "--source", str(clean / "zarr")])
    assert bad.exit_code == 2 and "--source" in bad.output
    none = CliRunner().invoke(cli, ["audit", str(field / "datalist.json"), "--source", str(field)])
    assert none.exit_code == 2 and "no CellMap zarr stores" in none.output
