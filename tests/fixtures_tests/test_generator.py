"""The fixture generator: determinism, store layout, OME-NGFF / cellmap metadata, conversion, defect plan."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
import zarr

from cellcheck.classes import CLASS_NAMES, LABEL_VALUE
from fixtures import DEFECT_IDS, make_dataset
from fixtures.defects import DEFECTS, UnknownDefectError

STORES = {"jrc_fix-1": 2, "jrc_fix-2": 3}
RAW = "recon-1/em/fibsem-uint8"
GT = "recon-1/labels/groundtruth"

# the check-id table of DESIGN.md, written out independently of fixtures.defects
CHECK_IDS = {
    "datalist-invalid", "missing-file", "unreadable", "missing-fold", "empty-fold", "duplicate-case",
    "empty-annotation", "annotated-classes-invalid", "annotated-classes-mangled", "blank-image",
    "constant-image", "partial-blank", "shape-mismatch", "spacing-mismatch", "resolution-mismatch",
    "out-of-bounds", "label-values", "unannotated-label-present", "oversized-case", "class-coverage",
    "stale-stats", "annotation-metadata",
}


def store_path(root: Path, name: str) -> Path:
    return root / "zarr" / name / f"{name}.zarr"


def open_store(root: Path, name: str):
    return zarr.open_group(str(store_path(root, name)), mode="r")


def multiscales(attrs) -> dict:
    attrs = dict(attrs)
    return (attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"])[0]


def transforms(ds: dict):
    t = {x["type"]: x for x in ds["coordinateTransformations"]}
    return t["scale"]["scale"], t["translation"]["translation"]


def crop_store(root: Path, case: str) -> str:
    for name in STORES:
        if case in open_store(root, name)[GT]:
            return name
    raise KeyError(case)


def load(root: Path, rel: str):
    img = nib.load(root / rel)
    return np.asarray(img.dataobj), img.affine


def datalist(root: Path) -> dict:
    return json.loads((root / "datalist.json").read_text())


def entry_case(e: dict) -> str:
    return e["image"].rsplit("/", 1)[-1].split(".")[0]


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(ds_all, ds_all_again):
    a, b = ds_all[0], ds_all_again[0]
    for name in ("datalist.json", "expected.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name == "datastats.yaml":  # absolute paths differ by construction
            continue
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    # array contents, read back
    for case in ("crop1", "crop4", "crop107"):
        for kind in ("imagesTr", "labelsTr"):
            np.testing.assert_array_equal(load(a, f"{kind}/{case}.nii.gz")[0], load(b, f"{kind}/{case}.nii.gz")[0])
    sa = (a / "datastats.yaml").read_text().replace(str(a.resolve()), "ROOT")
    sb = (b / "datastats.yaml").read_text().replace(str(b.resolve()), "ROOT")
    assert sa == sb


def test_other_seed_differs(tmp_path, ds_none):
    exp = make_dataset(tmp_path / "s1", seed=1, defects="none", n_clean=3)
    assert exp["seed"] == 1
    a, _ = load(ds_none[0], "labelsTr/crop1.nii.gz")
    b, _ = load(tmp_path / "s1", "labelsTr/crop1.nii.gz")
    assert a.shape != b.shape or not np.array_equal(a, b)


# --------------------------------------------------------------------------- layout and metadata


def test_store_formats(ds_all):
    root = ds_all[0]
    v2, v3 = store_path(root, "jrc_fix-1"), store_path(root, "jrc_fix-2")
    assert (v2 / ".zgroup").is_file() and not (v2 / "zarr.json").exists()
    assert (v2 / RAW / ".zattrs").is_file() and (v2 / RAW / "s0" / ".zarray").is_file()
    assert (v3 / "zarr.json").is_file() and not (v3 / ".zgroup").exists()
    assert not list(v3.rglob(".zarray"))
    meta = json.loads((v3 / RAW / "s0" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["node_type"] == "array" and meta["dimension_names"] == ["z", "y", "x"]
    assert open_store(root, "jrc_fix-1").metadata.zarr_format == 2
    assert open_store(root, "jrc_fix-2").metadata.zarr_format == 3


@pytest.mark.parametrize("name", list(STORES))
def test_raw_multiscales(ds_none, name):
    g = open_store(ds_none[0], name)
    raw = g[RAW]
    attrs = dict(raw.attrs)
    if STORES[name] == 2:
        assert attrs["multiscales"][0]["version"] == "0.4"
    else:
        assert attrs["ome"]["version"] == "0.5" and "multiscales" not in attrs
    ms = multiscales(attrs)
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "nanometer" for a in ms["axes"])
    assert [d["path"] for d in ms["datasets"]] == ["s0", "s1", "s2"]
    s0_scale, t0 = transforms(ms["datasets"][0])
    assert t0 == ([0.0] * 3 if name == "jrc_fix-1" else [64.0, 128.0, 32.0])
    shape0 = raw["s0"].shape
    for n, ds in enumerate(ms["datasets"]):
        scale, t = transforms(ds)
        assert scale == [8.0 * 2**n] * 3
        assert t == [a + (s - b) / 2 for a, s, b in zip(t0, scale, s0_scale)]  # pixel-centre convention
        arr = raw[ds["path"]]
        assert arr.dtype == np.uint8 and arr.shape == tuple(s >> n for s in shape0) and arr.chunks == (32, 32, 32)
    s0 = raw["s0"][...]
    assert s0.min() >= 1 and s0.std() > 20  # clean raw: data everywhere, never constant
    assert 90 < s0.mean() < 130
    np.testing.assert_array_equal(
        raw["s1"][...], np.rint(s0.reshape(s0.shape[0] // 2, 2, s0.shape[1] // 2, 2, -1, 2).mean(axis=(1, 3, 5)))
    )


def test_clean_crops_metadata_and_counts(ds_all):
    root, exp = ds_all
    checked = 0
    for name, fmt in STORES.items():
        g = open_store(root, name)
        raw_t0 = transforms(multiscales(g[RAW].attrs)["datasets"][0])[1]
        raw_shape = g[RAW]["s0"].shape
        for case in exp["clean_cases"]["zarr"]:
            if case not in g[GT]:
                continue
            cg = g[GT][case]
            ann = cg.attrs["cellmap"]["annotation"]
            for key in ("version", "name", "description", "created_by", "created_with", "start_date", "end_date",
                        "duration_days", "protocol_uri", "class_names"):
                assert key in ann
            names = ann["class_names"]
            assert names and set(names) <= set(CLASS_NAMES)
            all_ms = multiscales(cg["all"].attrs)
            scale, t = transforms(all_ms["datasets"][0])
            assert scale == [8.0] * 3
            pos = [(a - b) / 8 for a, b in zip(t, raw_t0)]
            dense = cg["all"]["s0"][...]
            assert all(p == int(p) and p >= 0 for p in pos)
            assert all(p + s <= n for p, s, n in zip(pos, dense.shape, raw_shape))
            allowed = {0} | {LABEL_VALUE[c] for c in names}
            assert set(np.unique(dense).tolist()) <= allowed
            for cls in names:
                grp = cg[cls]
                gann = grp.attrs["cellmap"]["annotation"]
                assert gann["class_name"] == cls
                assert gann["annotation_type"] == {
                    "type": "semantic_segmentation", "encoding": {"absent": 0, "present": 1, "unknown": 255}}
                ms = multiscales(grp.attrs)
                assert [d["path"] for d in ms["datasets"]] == ["s0", "s1"]
                assert transforms(ms["datasets"][0]) == (scale, t)
                for lvl in ("s0", "s1"):
                    arr = grp[lvl]
                    a = arr[...]
                    cc = arr.attrs["cellmap"]["annotation"]["complement_counts"]
                    assert cc == {"absent": int((a == 0).sum()), "unknown": int((a == 255).sum())}
                    assert set(np.unique(a).tolist()) <= {0, 1, 255}
                s0 = grp["s0"][...]
                assert s0.shape == dense.shape and grp["s1"].shape == tuple(s // 2 for s in dense.shape)
                np.testing.assert_array_equal(s0 == 1, dense == LABEL_VALUE[cls])
                checked += 1
    assert checked > 40


def test_unknown_voxels_and_nucleus(ds_none):
    root = ds_none[0]
    g = open_store(root, "jrc_fix-1")
    cg = g[GT]["crop3"]
    first = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    cc = cg[first]["s0"].attrs["cellmap"]["annotation"]["complement_counts"]
    assert 0 < cc["unknown"] < cg[first]["s0"].size  # partially unknown, still annotated
    # nuc: big where present, present only in crops annotating few classes
    fg = {}
    for e in datalist(root)["training"]:
        lab, _ = load(root, e["label"])
        if (lab == LABEL_VALUE["nuc"]).any():
            fg[entry_case(e)] = ((lab == LABEL_VALUE["nuc"]).mean(), len(e["annotated_classes"].split(",")))
    assert 1 <= len(fg) <= 3
    for frac, n_annotated in fg.values():
        assert 0.3 < frac < 0.6 and n_annotated <= 6


def test_nifti_matches_zarr(ds_all):
    root, exp = ds_all
    entries = {entry_case(e): e for e in datalist(root)["training"]}
    for case in ("crop1", "crop2", "crop106"):
        name = crop_store(root, case)
        g = open_store(root, name)
        cg = g[GT][case]
        scale, t = transforms(multiscales(cg["all"].attrs)["datasets"][0])
        dense = cg["all"]["s0"][...]
        img, aff = load(root, entries[case]["image"])
        lab, laff = load(root, entries[case]["label"])
        expected_aff = np.diag(scale + [1.0])
        expected_aff[:3, 3] = t
        np.testing.assert_allclose(aff, expected_aff)
        np.testing.assert_allclose(laff, expected_aff)
        assert img.shape == lab.shape == dense.shape and img.dtype == lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, dense)
        raw_t0 = transforms(multiscales(g[RAW].attrs)["datasets"][0])[1]
        p = [int((a - b) / 8) for a, b in zip(t, raw_t0)]
        region = g[RAW]["s0"][p[0]: p[0] + img.shape[0], p[1]: p[1] + img.shape[1], p[2]: p[2] + img.shape[2]]
        np.testing.assert_array_equal(img, region)
        names = cg.attrs["cellmap"]["annotation"]["class_names"]
        assert entries[case]["annotated_classes"] == ",".join(str(LABEL_VALUE[c] - 1) for c in names)


def test_raw_has_membrane_contrast(ds_none):
    root = ds_none[0]
    img, _ = load(root, "imagesTr/crop4.nii.gz")
    lab, _ = load(root, "labelsTr/crop4.nii.gz")
    mem = np.isin(lab, [LABEL_VALUE[c] for c in CLASS_NAMES if c.endswith("_mem") or c == "pm"])
    assert mem.any() and img[mem].mean() < img[lab == 0].mean() - 25


# --------------------------------------------------------------------------- clean dataset


def test_none_is_clean(ds_none):
    root, exp = ds_none
    assert exp["defects"] == [] and exp["findings"] == []
    assert exp["clean_cases"] == exp["cases"]
    assert exp["cases"]["datalist"] == exp["cases"]["zarr"] == [f"crop{i}" for i in range(1, 11)]
    dl = datalist(root)
    assert dl["labels"] == {"0": "background", **{str(i + 1): n for i, n in enumerate(CLASS_NAMES)}}
    folds = [e["fold"] for e in dl["training"]]
    assert set(folds) == {0, 1} and 2 <= folds.count(0) <= 4
    for ch in range(len(CLASS_NAMES)):
        n0 = sum(str(ch) in e["annotated_classes"].split(",") for e in dl["training"] if e["fold"] == 0)
        n1 = sum(str(ch) in e["annotated_classes"].split(",") for e in dl["training"] if e["fold"] == 1)
        assert n0 >= 1 and n1 >= 2, CLASS_NAMES[ch]
    sizes = {len(e["annotated_classes"].split(",")) for e in dl["training"]}
    assert 14 in sizes and min(sizes) <= 6
    for e in dl["training"]:
        assert set(e) == {"image", "label", "fold", "annotated_classes"}
        img, _ = load(root, e["image"])
        lab, _ = load(root, e["label"])
        assert img.min() >= 1 and img.std() > 20
        assert 10 <= min(img.shape) and max(img.shape) <= 64
        chans = {int(c) for c in e["annotated_classes"].split(",")}
        assert set(np.unique(lab).tolist()) <= {0} | {c + 1 for c in chans}
    stats = yaml.safe_load((root / "datastats.yaml").read_text())
    assert stats["stats_summary"]["n_cases"] == len(dl["training"])
    assert [(s["image_filepath"], s["label_filepath"]) for s in stats["stats_by_cases"]] == [
        (str((root / e["image"]).resolve()), str((root / e["label"]).resolve())) for e in dl["training"]
    ]
    assert (store_path(root, "jrc_fix-2") / RAW / "s0" / "zarr.json").is_file()


# --------------------------------------------------------------------------- defects


def test_all_findings_cover_every_check(ds_all):
    root, exp = ds_all
    assert exp["version"] == 1 and exp["seed"] == 0
    assert exp["defects"] == sorted(DEFECT_IDS)
    assert {r["check"] for r in exp["findings"]} == CHECK_IDS
    assert {r["defect"] for r in exp["findings"]} == set(DEFECT_IDS)
    for r in exp["findings"]:
        assert set(r) == {"defect", "view", "check", "case"} and r["view"] in ("zarr", "datalist")
        if r["case"] is not None:
            assert r["case"] in exp["cases"][r["view"]]
            assert r["case"] not in exp["clean_cases"][r["view"]]
    for view in ("zarr", "datalist"):
        assert set(exp["clean_cases"][view]) < set(exp["cases"][view])
    assert exp == json.loads((root / "expected.json").read_text())


def test_planted_defects_are_there(ds_all):
    root, exp = ds_all
    dl = datalist(root)
    by_case: dict[str, list[dict]] = {}
    for e in dl["training"]:
        by_case.setdefault(entry_case(e), []).append(e)
    rows = {(r["defect"], r["view"]): r for r in exp["findings"]}

    # datalist-only defects
    assert "label" not in by_case[rows["datalist-invalid", "datalist"]["case"]][0]
    e = by_case[rows["missing-file", "datalist"]["case"]][0]
    assert (root / e["image"]).exists() and not (root / e["label"]).exists()
    assert "fold" not in by_case[rows["missing-fold", "datalist"]["case"]][0]
    assert {e.get("fold") for e in dl["training"]} == {0, 1, 3, None}
    fold3 = [e for e in dl["training"] if e.get("fold") == 3]
    assert len(fold3) == 1 and len(fold3[0]["annotated_classes"].split(",")) == 14  # no coverage gap in fold 3
    dup = by_case[rows["duplicate-case", "datalist"]["case"]]
    assert len(dup) == 2 and {d["fold"] for d in dup} == {0, 1} and dup[0]["image"] == dup[1]["image"]
    assert by_case[rows["annotated-classes-invalid", "datalist"]["case"]][0]["annotated_classes"] == "0,1,15"
    assert by_case[rows["annotated-classes-mangled", "datalist"]["case"]][0]["annotated_classes"] == (
        "/home/user/cellmap/data/0,1,2,3")
    for e in dl["training"]:
        if e.get("fold") == 0:
            assert "4" not in e["annotated_classes"].split(",")  # class-coverage: mito_ribo
            assert not (load(root, e["label"])[0] == LABEL_VALUE["mito_ribo"]).any()
    stats = yaml.safe_load((root / "datastats.yaml").read_text())
    stat_images = [s["image_filepath"] for s in stats["stats_by_cases"]]
    assert len(stat_images) == len(dl["training"]) + 1 and stats["stats_summary"]["n_cases"] == len(stat_images)

    # converted zarr defect crops
    def image(defect):
        return load(root, by_case[f"crop{DEFECTS[defect].crop}"][0]["image"])

    assert image("resolution-mismatch")[0].max() == 0
    assert np.allclose(np.diag(image("resolution-mismatch")[1])[:3], 4.0)
    assert image("blank-image")[0].max() == 0
    assert np.unique(image("constant-image")[0]).tolist() == [128]
    for d in ("partial-blank", "out-of-bounds"):
        img = image(d)[0]
        assert img.max() > 0 and (img == 0).mean() > 0.3
    assert by_case["crop105"][0]["annotated_classes"] == ""
    assert 17 in np.unique(load(root, by_case["crop107"][0]["label"])[0])
    e = by_case["crop108"][0]
    chans = {int(c) for c in e["annotated_classes"].split(",")}
    assert set(np.unique(load(root, e["label"])[0]).tolist()) - {0} - {c + 1 for c in chans}
    e = by_case["crop109"][0]
    assert load(root, e["image"])[0].shape != load(root, e["label"])[0].shape
    e = by_case["crop110"][0]
    assert np.allclose(np.diag(load(root, e["label"])[1])[:3], 4.0)
    assert np.allclose(np.diag(load(root, e["image"])[1])[:3], 8.0)
    with pytest.raises(Exception):
        load(root, by_case["crop111"][0]["image"])
    e = by_case["crop112"][0]
    assert e["image"].endswith(".zarr") and e["label"].endswith(".zarr")
    big = zarr.open_group(str(root / e["image"]), mode="r")
    assert multiscales(big.attrs)["datasets"][0]["path"] == "s0"
    assert big["s0"].shape == (1152, 1024, 1024) and big["s0"].chunks == (64, 64, 64)
    assert big["s0"][:64, :64, :64].min() >= 1 and big["s0"][64:128, :64, :64].max() == 0
    assert len(list((root / e["image"] / "s0").rglob("*"))) <= 5  # c/0/0/0 and its folders


def test_zarr_defects_are_there(ds_all):
    root, exp = ds_all
    g1, g2 = open_store(root, "jrc_fix-1"), open_store(root, "jrc_fix-2")
    # resolution-mismatch: 4 nm labels, raw only at 8/16/32
    cg = g1[GT]["crop100"]
    assert transforms(multiscales(cg["all"].attrs)["datasets"][0])[0] == [4.0] * 3
    # out-of-bounds: past raw s0 along x by about half the crop
    cg = g2[GT]["crop101"]
    _, t = transforms(multiscales(cg["all"].attrs)["datasets"][0])
    t0 = transforms(multiscales(g2[RAW].attrs)["datasets"][0])[1]
    x0 = (t[2] - t0[2]) / 8
    width = cg["all"]["s0"].shape[2]
    over = x0 + width - g2[RAW]["s0"].shape[2]
    assert width / 3 <= over <= 2 * width / 3
    # blank / constant / partial-blank raw under the crop
    for g, case, check in ((g1, "crop102", "blank"), (g1, "crop103", "constant"), (g2, "crop104", "partial")):
        cg = g[GT][case]
        _, t = transforms(multiscales(cg["all"].attrs)["datasets"][0])
        t0 = transforms(multiscales(g[RAW].attrs)["datasets"][0])[1]
        p = [int((a - b) / 8) for a, b in zip(t, t0)]
        s = cg["all"]["s0"].shape
        region = g[RAW]["s0"][p[0]: p[0] + s[0], p[1]: p[1] + s[1], p[2]: p[2] + s[2]]
        if check == "blank":
            assert region.max() == 0
            assert g[RAW]["s1"][p[0] // 2: (p[0] + s[0]) // 2, p[1] // 2: (p[1] + s[1]) // 2, p[2] // 2: (p[2] + s[2]) // 2].max() == 0
        elif check == "constant":
            assert np.unique(region).tolist() == [128]
        else:
            assert region[s[0] // 2:].max() == 0 and region[: s[0] // 2].min() >= 1
    # empty-annotation: two classes, entirely unknown
    cg = g1[GT]["crop105"]
    names = cg.attrs["cellmap"]["annotation"]["class_names"]
    assert len(names) == 2
    for c in names:
        a = cg[c]["s0"]
        assert (a[...] == 255).all()
        assert a.attrs["cellmap"]["annotation"]["complement_counts"] == {"absent": 0, "unknown": a.size}
    # annotation-metadata: absent off by 100
    cg = g2[GT]["crop106"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    a = cg[c]["s0"]
    assert abs(a.attrs["cellmap"]["annotation"]["complement_counts"]["absent"] - int((a[...] == 0).sum())) == 100
    # label-values: a 7 in a class array
    cg = g1[GT]["crop107"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    assert 7 in np.unique(cg[c]["s0"][...])
    # unannotated-label-present
    cg = g2[GT]["crop108"]
    allowed = {0} | {LABEL_VALUE[c] for c in cg.attrs["cellmap"]["annotation"]["class_names"]}
    assert set(np.unique(cg["all"]["s0"][...]).tolist()) - allowed
    # shape-mismatch
    cg = g1[GT]["crop109"]
    shapes = {cg[c]["s0"].shape for c in cg.attrs["cellmap"]["annotation"]["class_names"]}
    assert len(shapes) == 2
    # spacing-mismatch
    cg = g2[GT]["crop110"]
    ts = {tuple(transforms(multiscales(cg[c].attrs)["datasets"][0])[1])
          for c in cg.attrs["cellmap"]["annotation"]["class_names"]}
    assert len(ts) == 2
    # unreadable: truncated .zarray
    c = g1[GT]["crop111"].attrs["cellmap"]["annotation"]["class_names"][0]
    meta = store_path(root, "jrc_fix-1") / GT / "crop111" / c / "s0" / ".zarray"
    with pytest.raises(json.JSONDecodeError):
        json.loads(meta.read_text())
    # oversized: > 2^30 voxels, no chunks written, counts say all absent
    cg = g2[GT]["crop112"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    a = cg[c]["s0"]
    assert a.shape == (1152, 1024, 1024) and a.size > 2**30
    assert a.attrs["cellmap"]["annotation"]["complement_counts"] == {"absent": a.size, "unknown": 0}
    assert not (store_path(root, "jrc_fix-2") / GT / "crop112" / c / "s0" / "c").exists()
    assert g2[RAW]["s0"].shape == (1152, 1024, 1024) and g2[RAW]["s0"].chunks == (64, 64, 64)


def test_single_defect(tmp_path):
    exp = make_dataset(tmp_path / "d", defects=["label-values"], n_clean=3)
    assert exp["defects"] == ["label-values"]
    assert exp["findings"] == [
        {"defect": "label-values", "view": "datalist", "check": "label-values", "case": "crop107"},
        {"defect": "label-values", "view": "zarr", "check": "label-values", "case": "crop107"},
    ]
    assert exp["cases"]["zarr"] == ["crop1", "crop2", "crop3", "crop107"]
    assert exp["clean_cases"]["zarr"] == ["crop1", "crop2", "crop3"]


def test_api_errors(tmp_path):
    with pytest.raises(UnknownDefectError):
        make_dataset(tmp_path / "a", defects="nope")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(FileExistsError):
        make_dataset(tmp_path / "b", defects="none")
