"""`cellcheck convert` on stores laid out as published: what it converts, what it refuses, what it writes.

The generator's own 8 nm conversion (fixtures/generate.py, from its truth) is the reference a correct
converter must reproduce voxel for voxel; the converter never sees it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from cellcheck.audit import audit
from cellcheck.audit.options import AuditOptions
from cellcheck.classes import CLASS_NAMES, DEFAULT_CLASS_MAP, LABEL_VALUE
from cellcheck.convert import Options, convert
from cellcheck.errors import CellcheckError
from datasets import V3, expected, read_datalist
from fixtures import make_dataset

EIGHT = (8.0, 8.0, 8.0)
ANISO = ("crop300", "crop301", "crop302")


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def entries(root: Path) -> dict[str, dict]:
    return {Path(e["image"]).name.split(".")[0]: e for e in read_datalist(root)["training"]}


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*Tr/*.nii.gz"))}


# --------------------------------------------------------------------------- the clean stores at 8 nm


def test_every_convertible_crop_converts_and_the_cell_line_is_refused(clean, converted):
    out, result = converted
    crops = set(expected(clean)["cases"]["zarr"])
    assert {o.case for o in result.converted} == crops - set(ANISO)
    refused = {o.case: o.refused for o in result.refused}
    assert set(refused) == set(ANISO)
    for f in refused.values():  # the audit's own reason: no 8 nm level in the cell line's raw
        assert f.check == "resolution-mismatch" and "5.24x4x4 nm" in f.message and f.severity.value == "error"
    assert result.exit_code() == 0 and result.exit_code(strict=True) == 1


def test_images_labels_and_affines_equal_the_reference_conversion(clean, converted):
    out, _ = converted
    ref, ours = entries(clean), entries(out)
    assert set(ours) == set(ref)
    prov = read_datalist(out)["cellcheck"]["cases"]
    for case, e in ours.items():
        (img, aff), (ref_img, ref_aff) = load(out / e["image"]), load(clean / ref[case]["image"])
        (lab, lab_aff), (ref_lab, _) = load(out / e["label"]), load(clean / ref[case]["label"])
        assert np.array_equal(img, ref_img) and np.allclose(aff, ref_aff) and np.allclose(lab_aff, aff), case
        # a class partly unknown in the crop is left out of annotated_classes, and out of the label
        dropped = [LABEL_VALUE[n] for n in prov[case]["dropped"]]
        assert np.array_equal(lab, np.where(np.isin(ref_lab, dropped), 0, ref_lab)), case
        want = {int(c) for c in ref[case]["annotated_classes"].split(",")} - {v - 1 for v in dropped}
        assert {int(c) for c in e["annotated_classes"].split(",")} == want, case
        assert img.dtype == lab.dtype == np.uint8


def test_a_partly_unknown_class_is_not_annotated(converted):
    out, result = converted
    # the generator marks crop3's first listed class unknown on its last z-slices
    first = next(n for n in read_datalist(out)["cellcheck"]["cases"]["crop3"]["dropped"])
    record = read_datalist(out)["cellcheck"]["cases"]["crop3"]
    assert "unknown" in record["dropped"][first] and first not in record["annotated"]
    lab, _ = load(out / "labelsTr/crop3.nii.gz")
    assert not (lab == LABEL_VALUE[first]).any()
    notes = {o.case: o.notes for o in result.outcomes}
    assert any(first in n for n in notes["crop3"])


def test_the_output_passes_the_audit_and_the_source_audit(clean, converted):
    out, _ = converted
    report = audit(out / "datalist.json")
    # without the stores only the line saying the headers' voxel sizes were not checked against them
    assert [(f.check, f.severity.value) for f in report.findings] == [("header-voxel-size", "info")], report.findings
    sourced = audit(out / "datalist.json", options=AuditOptions(source=clean / "zarr"))
    assert sourced.summary == {"error": 0, "warning": 0, "info": 0}, sourced.findings


def test_provenance_folds_and_monai(clean, converted):
    from monai.auto3dseg.utils import datafold_read

    out, result = converted
    dl = read_datalist(out)
    prov = dl["cellcheck"]
    assert prov["resolution"] == list(EIGHT) and prov["classes"] == list(CLASS_NAMES)
    assert set(prov["refused"]) == set(ANISO)
    for e in dl["training"]:
        case = Path(e["image"]).name.split(".")[0]
        rec = prov["cases"][case]
        assert rec["image"] == e["image"] and rec["crop"] == case and rec["store"].startswith("jrc_fix-")
        assert rec["raw_level"] == "s0" and rec["raw_scale"] == list(EIGHT) and rec["label_scale"] == list(EIGHT)
        assert (out / "provenance" / f"{case}.json").is_file()
    k = result.folds
    assert sorted({e["fold"] for e in dl["training"]}) == list(range(k)) and k >= 2
    for fold in range(k):  # MONAI reads it: every fold validates on something and trains on the rest
        train, val = datafold_read(str(out / "datalist.json"), str(out), fold=fold)
        assert train and val and len(train) + len(val) == len(dl["training"])
    # every class annotated in at least k crops is annotated in every fold
    per_fold = [set() for _ in range(k)]
    counts: dict[int, int] = {}
    for e in dl["training"]:
        chans = {int(c) for c in e["annotated_classes"].split(",")}
        per_fold[e["fold"]] |= chans
        for c in chans:
            counts[c] = counts.get(c, 0) + 1
    for c, n in counts.items():
        if n >= k:
            assert all(c in f for f in per_fold), CLASS_NAMES[c]


# --------------------------------------------------------------------------- defects


@pytest.fixture(scope="module")
def converted_defects(defects_all, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv_defects") / "out"
    return out, convert(defects_all / "zarr", out, Options(EIGHT, DEFAULT_CLASS_MAP), jobs=2)


def test_defect_crops_are_refused_with_the_audits_reasons(converted_defects):
    _, result = converted_defects
    refused = {o.case: o.refused.check for o in result.refused}
    assert refused == {
        "crop100": "resolution-mismatch",  # 32 nm crop, fetch-data never fetched raw s0
        "crop102": "blank-image", "crop103": "constant-image",
        "crop105": "empty-annotation", "crop109": "shape-mismatch", "crop110": "spacing-mismatch",
        "crop111": "unreadable", "crop112": "resolution-mismatch", "crop113": "off-grid",
        "crop115": "mixed-zarr-format",
        **{c: "resolution-mismatch" for c in ANISO},
    }


def test_out_of_bounds_crop_is_clipped_never_padded(defects_all, converted_defects):
    out, _ = converted_defects
    rec = read_datalist(out)["cellcheck"]["cases"]["crop101"]
    (start, stop), (cstart, cstop) = rec["raw_box"], rec["crop_box"]
    raw = zarr.open_group(str(defects_all / "zarr/jrc_fix-2/jrc_fix-2.zarr"), mode="r")["recon-1/em/fibsem-uint8/s0"]
    assert cstop[2] > raw.shape[2] and stop[2] == raw.shape[2] and rec["clipped"]["after"][2] == cstop[2] - raw.shape[2]
    img, aff = load(out / "imagesTr/crop101.nii.gz")
    lab, _ = load(out / "labelsTr/crop101.nii.gz")
    assert img.shape == lab.shape == tuple(b - a for a, b in zip(start, stop))
    assert np.array_equal(img, raw[tuple(slice(a, b) for a, b in zip(start, stop))])
    assert (img.reshape(-1, img.shape[-1]) != 0).any(axis=0).all()  # no zero plane


def test_too_large_for_the_case_budget_is_refused_from_metadata(clean, tmp_path):
    result = convert(clean / "zarr", tmp_path / "out", Options(EIGHT, DEFAULT_CLASS_MAP, case_budget=2**14))
    checks = {o.refused.check for o in result.refused if o.case not in ANISO}
    assert checks == {"oversized-case"} and result.datalist is None and result.exit_code() == 1
    assert all("--case-budget" in o.refused.message for o in result.refused if o.case not in ANISO)
    assert not list((tmp_path / "out").glob("*Tr/*"))


# --------------------------------------------------------------------------- resampling


def _compose(crop_group, names: list[str], level: str) -> np.ndarray:
    """Training label values from the class arrays of one level, written out here from the encodings."""
    out = None
    for name in names:
        data = np.asarray(crop_group[name][level])
        if out is None:
            out = np.zeros(data.shape, dtype=np.uint8)
        present = (data != 0) & (data != 255)
        out[present] = LABEL_VALUE[name]
    return out


def _block_mode(a: np.ndarray, f: int) -> np.ndarray:
    z, y, x = (n // f for n in a.shape)
    out = np.zeros((z, y, x), dtype=a.dtype)
    for i, j, k in np.ndindex(z, y, x):
        vals, counts = np.unique(a[i * f:(i + 1) * f, j * f:(j + 1) * f, k * f:(k + 1) * f], return_counts=True)
        out[i, j, k] = vals[np.argmax(counts)]  # ties: the smallest value (np.unique sorts)
    return out


def test_a_finer_level_is_mode_downsampled(clean_copy, tmp_path):
    zarr_root = clean_copy / "zarr"
    crop_dir = zarr_root / "jrc_fix-1/jrc_fix-1.zarr/recon-1/labels/groundtruth/crop1"  # 4 nm over 8 nm raw
    _drop_level(crop_dir, "s1")  # no 8 nm level left: 4 nm (s0) is the closest finer one
    out = tmp_path / "out"
    convert(zarr_root, out, Options(EIGHT, DEFAULT_CLASS_MAP))
    rec = read_datalist(out)["cellcheck"]["cases"]["crop1"]
    assert rec["resample"] == "mode" and rec["label_level"] == "s0" and rec["factor"] == [2, 2, 2]
    fine = _compose(zarr.open_group(str(crop_dir), mode="r"), rec["annotated"], "s0")
    lab, aff = load(out / rec["label"])
    assert np.array_equal(lab, _block_mode(fine, 2))
    ref_img, ref_aff = load(clean_copy / "imagesTr/crop1.nii.gz")
    img, _ = load(out / rec["image"])
    assert np.array_equal(img, ref_img) and np.allclose(aff, ref_aff)  # the same raw box and grid as from s1


def _drop_level(crop_dir: Path, level: str) -> None:
    """Remove a level from every multiscale group of a zarr v2 crop (metadata only)."""
    for attrs in crop_dir.glob("*/.zattrs"):
        data = json.loads(attrs.read_text())
        if "multiscales" in data:
            ms = data["multiscales"][0]
            ms["datasets"] = [d for d in ms["datasets"] if d["path"] != level]
            attrs.write_text(json.dumps(data))


def test_a_coarser_crop_upsamples_only_on_request(clean_copy, tmp_path):
    zarr_root = clean_copy / "zarr"
    crop_dir = zarr_root / "jrc_fix-1/jrc_fix-1.zarr/recon-1/labels/groundtruth/crop9"  # an 8 nm crop over 8 nm raw
    _drop_level(crop_dir, "s0")  # now annotated at 16 nm at the finest
    refused = convert(zarr_root, tmp_path / "a", Options(EIGHT, DEFAULT_CLASS_MAP))
    [why] = [o.refused for o in refused.refused if o.case == "crop9"]
    assert why.check == "resolution-mismatch" and "--upsample-labels" in why.message
    result = convert(zarr_root, tmp_path / "b", Options(EIGHT, DEFAULT_CLASS_MAP, upsample=True))
    assert "crop9" in {o.case for o in result.converted}
    rec = read_datalist(tmp_path / "b")["cellcheck"]["cases"]["crop9"]
    assert rec["resample"] == "nearest" and rec["label_level"] == "s1"
    coarse = _compose(zarr.open_group(str(crop_dir), mode="r"), rec["annotated"], "s1")
    lab, _ = load(tmp_path / "b" / rec["label"])
    assert np.array_equal(lab, coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2))
    ref, _ = load(clean_copy / "imagesTr/crop9.nii.gz")
    img, _ = load(tmp_path / "b" / rec["image"])
    assert np.array_equal(img, ref)


# --------------------------------------------------------------------------- streaming, parallel, resuming


def test_one_plane_slabs_and_two_workers_write_the_same_bytes(clean, converted, tmp_path):
    out, _ = converted
    tiny = convert(clean / "zarr", tmp_path / "tiny", Options(EIGHT, DEFAULT_CLASS_MAP), max_bytes=4096, jobs=2)
    assert len(tiny.converted) == len(converted[1].converted)
    assert files(tmp_path / "tiny") == files(out)
    assert read_datalist(tmp_path / "tiny")["training"] == read_datalist(out)["training"]


def test_rerun_skips_current_crops_and_redoes_changed_ones(clean_copy, tmp_path):
    out, opts = tmp_path / "out", Options(EIGHT, DEFAULT_CLASS_MAP)
    first = convert(clean_copy / "zarr", out, opts)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*Tr/*")}
    again = convert(clean_copy / "zarr", out, opts)
    assert not again.converted and {o.case for o in again.unchanged} == {o.case for o in first.converted}
    assert {p: p.stat().st_mtime_ns for p in out.glob("*Tr/*")} == mtimes
    # crop1's first annotated class gains voxels: only crop1 is converted again, with them
    rec = read_datalist(out)["cellcheck"]["cases"]["crop1"]
    name = rec["annotated"][0]
    arr = zarr.open_array(str(Path(rec["store_path"]) / "recon-1/labels/groundtruth/crop1" / name / rec["label_level"]),
                          mode="r+")
    arr[:2] = np.where(np.asarray(arr[:2]) == 0, 1, np.asarray(arr[:2]))
    third = convert(clean_copy / "zarr", out, opts)
    assert [o.case for o in third.converted] == ["crop1"]
    lab, _ = load(out / "labelsTr/crop1.nii.gz")
    assert (lab[:2] == LABEL_VALUE[name]).any()
    # new raw voxels: every crop reading those chunks is redone (crops share raw chunks)
    raw = zarr.open_array(str(Path(rec["store_path"]) / "recon-1/em/fibsem-uint8/s0"), mode="r+")
    box = tuple(slice(a, b) for a, b in zip(*rec["raw_box"]))
    raw[box] = 255 - np.asarray(raw[box])
    fourth = convert(clean_copy / "zarr", out, opts)
    assert "crop1" in {o.case for o in fourth.converted} and fourth.unchanged
    img, _ = load(out / "imagesTr/crop1.nii.gz")
    assert np.array_equal(img, np.asarray(raw[box]))


def test_a_file_it_did_not_write_is_never_overwritten(clean, tmp_path):
    out, opts = tmp_path / "out", Options(EIGHT, DEFAULT_CLASS_MAP)
    (out / "imagesTr").mkdir(parents=True)
    mine = out / "imagesTr/crop2.nii.gz"
    mine.write_bytes(b"a user's own file")
    with pytest.raises(CellcheckError, match="crop2.nii.gz.*not written by cellcheck convert.*--overwrite"):
        convert(clean / "zarr", out, opts)
    assert mine.read_bytes() == b"a user's own file" and not (out / "datalist.json").exists()
    convert(clean / "zarr", out, opts, overwrite=True)
    assert load(mine)[0].shape == load(clean / "imagesTr/crop2.nii.gz")[0].shape


def test_a_run_killed_before_moving_its_files_is_redone(clean_copy, tmp_path):
    """Records are written before the files move in: the files left from the run before must stay replaceable."""
    out, opts = tmp_path / "out", Options(EIGHT, DEFAULT_CLASS_MAP)
    convert(clean_copy / "zarr", out, opts)
    old = (out / "imagesTr/crop1.nii.gz").read_bytes()
    rec = read_datalist(out)["cellcheck"]["cases"]["crop1"]
    raw = zarr.open_array(str(Path(rec["store_path"]) / "recon-1/em/fibsem-uint8/s0"), mode="r+")
    box = tuple(slice(a, b) for a, b in zip(*rec["raw_box"]))
    raw[box] = 255 - np.asarray(raw[box])
    convert(clean_copy / "zarr", out, opts)
    new = (out / "imagesTr/crop1.nii.gz").read_bytes()
    (out / "imagesTr/crop1.nii.gz").write_bytes(old)  # as if killed between the record and the move
    redo = convert(clean_copy / "zarr", out, opts)
    assert [o.case for o in redo.converted] == ["crop1"]
    assert (out / "imagesTr/crop1.nii.gz").read_bytes() == new


def test_crop_ids_repeated_across_stores_get_the_store_in_their_name(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, seed=4, defects="none", n_clean=3, v3=V3)
    src = root / "zarr/jrc_fix-1/jrc_fix-1.zarr"
    shutil.copytree(src, root / "zarr/jrc_fix-9/jrc_fix-9.zarr")
    result = convert(root / "zarr", tmp_path / "out", Options(EIGHT, DEFAULT_CLASS_MAP))
    names = {o.case for o in result.converted}
    assert {"jrc_fix-1_crop1", "jrc_fix-9_crop1"} <= names and "crop1" not in names
    # three clean crops are all full crops, none with a nucleus: nuc's class-empty is the data's, not the conversion's
    report = audit(tmp_path / "out/datalist.json", options=AuditOptions(source=root / "zarr"), ignore=["class-empty"])
    assert report.summary["error"] == 0 and report.summary["warning"] == 0, report.findings


def test_overlapping_classes_are_a_usage_error(clean, tmp_path):
    from cellcheck.classes import ClassMap

    with pytest.raises(CellcheckError, match="share voxels"):
        convert(clean / "zarr", tmp_path / "out", Options(EIGHT, ClassMap(("mito", "mito_mem"))))
