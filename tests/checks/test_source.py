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
import zarr
from click.testing import CliRunner

from cellcheck.audit import audit
from cellcheck.audit.options import AuditOptions
from cellcheck.cli import cli
from cellcheck.datalist import case_id
from datasets import read_datalist
from fixtures.field_convert import crop_of, field_convert
from fixtures.generate import LABEL_SHIFT

RAW, GT = "recon-1/em/fibsem-uint8", "recon-1/labels/groundtruth"

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
    """field case -> whether the field's conversion differs from the correct one (image, label or header)."""
    ref = {Path(e["image"]).name: e for e in read_datalist(clean)["training"]}
    out = {}
    for e in read_datalist(field)["training"]:
        name = f"{crop_of(e['image'])}.nii.gz"
        case = case_id(e["image"])
        if name not in ref:  # the cell line has no correct 8 nm conversion: every header is wrong
            out[case] = True
            continue
        (a, la, fa), (b, lb, fb) = arrays(clean, ref[name]), arrays(field, e)
        same = a.shape == b.shape and (a == b).all() and (la == lb).all() and np.allclose(fa, fb)
        out[case] = not same
    return out


def expected_reasons(clean: Path, field: Path) -> dict[str, set[str]]:
    """field case -> the error checks its breakage must raise, from the store's metadata (not from the audit)."""
    out = {}
    for e in read_datalist(field)["training"]:
        store_name = Path(e["label"]).name.removesuffix(".nii.gz").rsplit("_", 1)[0]
        g = zarr.open_group(str(clean / "zarr" / store_name / f"{store_name}.zarr"), mode="r")
        raw_scale, raw_t = _s0(g[RAW])
        crop = g[f"{GT}/{crop_of(e['image'])}"]
        crop_scale, _ = _s0(crop[next(iter(sorted(crop.group_keys())))])
        reasons = set()
        if not np.allclose(raw_scale, 8.0):
            reasons.add("header-voxel-size")  # raw s0 under the 8 nm header: the image's header lies
        if not np.allclose(crop_scale, 8.0):
            reasons.add("header-voxel-size")  # crop s0 under the 8 nm header: the label's header lies
        if np.allclose(raw_scale, 8.0) and np.rint(np.asarray(raw_t) / raw_scale).any():
            reasons.add("source-content")  # the raw read from round(translation / scale), its own origin ignored
        if np.allclose(raw_scale, 8.0) and not np.allclose(crop_scale, 8.0):
            reasons.add("source-geometry")  # twice the crop's extent
        out[case_id(e["image"])] = reasons
    return out


def _s0(group):
    attrs = dict(group.attrs)
    [ds] = [d for d in (attrs["ome"] if "ome" in attrs else attrs)["multiscales"][0]["datasets"] if d["path"] == "s0"]
    t = {x["type"]: x for x in ds["coordinateTransformations"]}
    return t["scale"]["scale"], t["translation"]["translation"]


def test_every_crop_the_field_converter_breaks_is_an_error_for_its_reason(clean, field):
    broken = broken_cases(clean, field)
    assert sum(broken.values()) >= 8 and not all(broken.values())  # most, not all: 8 nm crops of store 1 survive
    report = audit(field / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    errors: dict[str, set[str]] = {}
    for f in report.findings:
        if f.severity.value == "error" and f.case:
            errors.setdefault(f.case, set()).add(f.check)
    assert {c for c, checks in errors.items() if checks & SOURCE_ERRORS} == {c for c, b in broken.items() if b}
    for case, reasons in expected_reasons(clean, field).items():
        assert reasons <= errors.get(case, set()), case
    # named as the field named them, no provenance: every case found by its name; the correct ones silent
    assert not [f for f in report.findings if f.check in ("source-missing", "source-placed")]
    silent = {(f.check, crop_of(f.path)) for f in report.findings if f.case and not broken[f.case]}
    assert silent <= {("source-annotation", "crop3")}  # the fixture's partly unknown class, listed by both conversions
    assert report.exit_code == 1


def test_renamed_to_arbitrary_names_it_is_checked_by_content(clean, field, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(field, renamed)
    dl = read_datalist(renamed)
    names = {}
    for i, e in enumerate(dl["training"]):
        for key in ("image", "label"):
            new = f"{key}s/case_{i:03d}.nii.gz"
            (renamed / new).parent.mkdir(exist_ok=True)
            (renamed / e[key]).rename(renamed / new)
            names[e[key]] = new
        names[case_id(e["image"])] = f"case_{i:03d}"
    dl["validation"] = []
    for e in dl["training"]:
        e["image"], e["label"] = names[e["image"]], names[e["label"]]
    (renamed / "datalist.json").write_text(json.dumps(dl))
    report = audit(renamed / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    flagged = {f.case for f in report.findings if f.check in SOURCE_ERRORS and f.severity.value == "error"}
    assert flagged == {names[c] for c, b in broken_cases(clean, field).items() if b}
    [placed] = [f for f in report.findings if f.check == "source-placed"]
    assert placed.severity.value == "info" and len(placed.details["cases"]) == len(dl["training"])
    for field_case, case in ((c, names[c]) for c in broken_cases(clean, field)):
        assert placed.details["cases"][case].startswith(f"{crop_of(field_case + '.nii.gz')} of "), case
    shift = placed.details["cases"][names["jrc_fix-2_crop2_0000"]]
    assert "raw s0 (8 nm), voxel 0 at [8.0, 16.0, 4.0] voxels from the crop's corner" in shift  # the level and offset
    assert not [f for f in report.findings if f.check == "source-missing"]


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
    errors = [f for f in report.findings if f.case == "jrc_fix-3_crop302_0000" and f.severity.value == "error"]
    [geometry] = [f for f in errors if f.check == "source-geometry"]
    assert "8 nm" in geometry.message and "5.24x4x4 nm" in geometry.message
    voxel = {f.path: f for f in errors if f.check == "header-voxel-size"}
    image, label = voxel["imagesTr/jrc_fix-3_crop302_0000.nii.gz"], voxel["labelsTr/jrc_fix-3_crop302.nii.gz"]
    assert "header says 8 nm but its voxels are raw s0 (5.24x4x4 nm)" in image.message
    assert image.details["data_spacing"] == [5.24, 4.0, 4.0] and label.details["level"] == "crop s0"


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
    # one line for the entries no crop holds: the datalist-only ones, and crop115, which its store's reader cannot see
    [missing] = [f for f in report.findings if f.check == "source-missing"]
    assert missing.case is None and missing.severity.value == "warning"
    assert set(missing.details["cases"]) >= {"crop202", "crop203", "crop204", "crop205", "crop115"}
    assert "no store holds the crop202 its name gives" in missing.details["cases"]["crop202"]
    # clean in the datalist view, but its crop is off the raw grid in the store
    assert ("source-geometry", "crop113") in got
    clean_cases = set(json.loads((defects_all / "expected.json").read_text())["clean_cases"]["datalist"])
    assert {c for k, c in got if k != "source-annotation"} & clean_cases == {"crop113"}


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
    # without the provenance its voxels place it, and the one line says where
    del dl["cellcheck"]
    (out / "datalist.json").write_text(json.dumps(dl))
    report = audit(out / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    [f] = report.findings
    assert f.check == "source-placed" and f.details["cases"] == {
        Path(e["image"]).name.removesuffix(".nii.gz"): f.details["cases"][Path(e["image"]).name.removesuffix(".nii.gz")]}
    assert f.details["cases"][Path(e["image"]).name.removesuffix(".nii.gz")].startswith(f"{case} of ")


def test_a_crop_id_in_two_stores_is_decided_by_content(clean, tmp_path):
    stores = tmp_path / "zarr"
    shutil.copytree(clean / "zarr", stores)
    copy = stores / "copy/jrc_fix-9.zarr"
    shutil.copytree(stores / "jrc_fix-1/jrc_fix-1.zarr", copy)
    raw = zarr.open_group(str(copy), mode="r+")[f"{RAW}/s0"]
    raw[:64, :, :] = 255 - np.asarray(raw[:64, :, :])  # another dataset's EM under the same crop ids
    report = audit(clean / "datalist.json", options=AuditOptions(source=stores))
    [placed] = [f for f in report.findings if f.check == "source-placed"]
    assert placed.details["cases"] and all(" of jrc_fix-1: " in v for v in placed.details["cases"].values())
    assert {(f.check, f.case) for f in report.findings if f.severity.value != "info"} <= {("source-annotation", "crop3")}


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
