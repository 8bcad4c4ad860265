"""The fixture generator against the published CellMap layout: formats, pyramids, crops on the raw grid,
fetch-data's chunks, encodings, canonical `all`, the 8 nm conversion, and the defect plan.

Everything is read back with zarr and nibabel and compared with facts of the real data, written out
here independently of the generator's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
import zarr

from cellcheck.classes import CLASS_NAMES, LABEL_VALUE, canonical_classes
from fixtures import DEFECT_IDS, make_dataset
from fixtures.defects import DEFECTS, UnknownDefectError

STORES = {"jrc_fix-1": 2, "jrc_fix-2": 3, "jrc_fix-3": 2}
RAW_S0 = {"jrc_fix-1": [8.0] * 3, "jrc_fix-2": [8.0] * 3, "jrc_fix-3": [5.24, 4.0, 4.0]}
RAW = "recon-1/em/fibsem-uint8"
GT = "recon-1/labels/groundtruth"
INSTANCE = {"nuc", "mito", "ves", "endo", "lyso", "ld", "perox", "np", "mt", "cell"}  # instance classes, as published (fixtures/README.md)
SEMANTIC_ENCODING = {"absent": 0, "present": 1, "unknown": 255}
INSTANCE_ENCODING = {"absent": 0, "unknown": 255}

# the check-id table, written out independently of fixtures.defects
CHECK_IDS = {
    "datalist-invalid", "missing-file", "unreadable", "missing-fold", "empty-fold", "duplicate-case",
    "empty-annotation", "annotated-classes-invalid", "annotated-classes-mangled", "blank-image",
    "constant-image", "partial-blank", "shape-mismatch", "spacing-mismatch", "resolution-mismatch",
    "out-of-bounds", "label-values", "unannotated-label-present", "oversized-case", "class-coverage",
    "stale-stats", "annotation-metadata", "off-grid", "multiscale-metadata", "mixed-zarr-format", "validation-array",
    "label-contrast", "non-finite", "orientation-mismatch", "class-empty",
}


def store_path(root: Path, name: str) -> Path:
    return root / "zarr" / name / f"{name}.zarr"


def open_store(root: Path, name: str):
    return zarr.open_group(str(store_path(root, name)), mode="r")


def multiscales(attrs) -> dict:
    attrs = dict(attrs)
    return (attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"])[0]


def levels(attrs) -> dict[str, tuple[list[float], list[float]]]:
    """path -> (scale, translation) of every dataset."""
    out = {}
    for ds in multiscales(attrs)["datasets"]:
        t = {x["type"]: x for x in ds["coordinateTransformations"]}
        out[ds["path"]] = (t["scale"]["scale"], t["translation"]["translation"])
    return out


def crops_of(root: Path) -> dict[str, str]:
    """case -> store name, for every crop its store's reader lists."""
    out = {}
    for name in STORES:
        for case in open_store(root, name)[GT].group_keys():
            out[case] = name
    return out


def load(root: Path, rel: str):
    img = nib.load(root / rel)
    return np.asarray(img.dataobj), img.affine


def datalist(root: Path) -> dict:
    return json.loads((root / "datalist.json").read_text())


def entry_case(e: dict) -> str:
    return e["image"].rsplit("/", 1)[-1].split(".")[0]


def ratio(crop_scale, raw_scale) -> float:
    return float(np.mean(np.asarray(crop_scale) / np.asarray(raw_scale)))


def on_grid(t_crop, t_raw, scale) -> bool:
    off = (np.asarray(t_crop) - np.asarray(t_raw)) / np.asarray(scale)
    return bool(np.allclose(off, np.rint(off), atol=1e-6))


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(ds_all, ds_all_again):
    a, b = ds_all[0], ds_all_again[0]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name == "datastats.yaml":  # absolute paths differ by construction
            continue
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    sa = (a / "datastats.yaml").read_text().replace(str(a.resolve()), "ROOT")
    sb = (b / "datastats.yaml").read_text().replace(str(b.resolve()), "ROOT")
    assert sa == sb


def test_other_seed_differs(tmp_path, ds_none):
    exp = make_dataset(tmp_path / "s1", seed=1, defects="none", n_clean=3)
    assert exp["seed"] == 1
    a, _ = load(ds_none[0], "labelsTr/crop1.nii.gz")
    b, _ = load(tmp_path / "s1", "labelsTr/crop1.nii.gz")
    assert a.shape != b.shape or not np.array_equal(a, b)


# --------------------------------------------------------------------------- stores and raw pyramids


def test_store_formats(ds_none):
    root = ds_none[0]
    for name, fmt in STORES.items():
        store = store_path(root, name)
        if fmt == 2:  # the challenge format: zarr v2, nested keys, raw chunks 64x128x128, zstd 6
            assert (store / ".zgroup").is_file() and not (store / "zarr.json").exists()
            meta = json.loads((store / RAW / "s0" / ".zarray").read_text())
            assert meta["dimension_separator"] == "/" and meta["chunks"] == [64, 128, 128]
            assert meta["compressor"]["id"] == "zstd" and meta["compressor"]["level"] == 6
            assert (store / RAW / "s0" / "0" / "0" / "0").is_file()
            assert dict(open_store(root, name)[RAW].attrs)["multiscales"][0]["version"] == "0.4"
        else:
            assert (store / "zarr.json").is_file() and not list(store.rglob(".zarray"))
            meta = json.loads((store / RAW / "s0" / "zarr.json").read_text())
            assert meta["zarr_format"] == 3 and meta["dimension_names"] == ["z", "y", "x"]
            assert dict(open_store(root, name)[RAW].attrs)["ome"]["version"] == "0.5"


@pytest.mark.parametrize("name", list(STORES))
def test_raw_pyramid_halves_with_voxel_centre_translations(ds_none, name):
    raw = open_store(ds_none[0], name)[RAW]
    ms = multiscales(raw.attrs)
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "nanometer" for a in ms["axes"])
    lv = levels(raw.attrs)
    s0, t0 = lv["s0"]
    assert s0 == RAW_S0[name]
    shape0 = raw["s0"].shape
    for n, (path, (scale, t)) in enumerate(lv.items()):
        assert path == f"s{n}"
        np.testing.assert_allclose(scale, [v * 2**n for v in s0])  # every axis halves, anisotropic z too
        np.testing.assert_allclose(t, [a + (s - b) / 2 for a, s, b in zip(t0, scale, s0)])
        assert raw[path].dtype == np.uint8 and raw[path].shape == tuple(-(-v // 2**n) for v in shape0)


def test_crops_sit_on_the_raw_grid_mostly_at_half_its_voxel_size(ds_none):
    root = ds_none[0]
    ratios = []
    for case, name in crops_of(root).items():
        g = open_store(root, name)
        raw = levels(g[RAW].attrs)
        crop = levels(g[GT][case]["all"].attrs)
        scale0, t_c0 = crop["s0"]
        r = ratio(scale0, raw["s0"][0])
        ratios.append(r)
        corner = np.asarray(t_c0) - np.asarray(scale0) / 2  # crop corner on a raw s0 voxel edge
        raw_corner = np.asarray(raw["s0"][1]) - np.asarray(raw["s0"][0]) / 2
        assert on_grid(corner, raw_corner, raw["s0"][0]), case
        # the crop level with the raw s0 voxel size coincides with the raw s0 grid: pairing by scale
        match = [p for p, (s, _) in crop.items() if np.allclose(s, raw["s0"][0])]
        assert match and on_grid(crop[match[0]][1], raw["s0"][1], raw["s0"][0]), case
    assert ratios.count(0.5) > len(ratios) / 2 and 1.0 in ratios


def test_fetch_data_writes_raw_chunks_only_under_crops(ds_all):
    """A 32 nm crop over 8 nm raw: raw s0 under it is metadata only (fetch-data skipped it), s2 has its chunks."""
    root = ds_all[0]
    g = open_store(root, "jrc_fix-1")
    raw = levels(g[RAW].attrs)
    crop = g[GT][f"crop{DEFECTS['resolution-mismatch'].crop}"]
    (scale, t), shape = levels(crop["all"].attrs)["s0"], crop["all"]["s0"].shape
    assert np.allclose(scale, raw["s2"][0]) and on_grid(t, raw["s2"][1], scale)
    for level, present in (("s0", False), ("s2", True)):
        files = [store_path(root, "jrc_fix-1") / RAW / level / "/".join(map(str, c))
                 for c in _raw_chunks_under(t, scale, shape, *raw[level])]
        assert any(f.exists() for f in files) == present, level
    # s0 holds chunk files exactly under the crops fetch-data copies it for (raw/crop voxel size > 0.8)
    s0_scale, s0_t = raw["s0"]
    expected = set()
    for folder in (p for p in (store_path(root, "jrc_fix-1") / GT).iterdir() if p.is_dir()):  # one crop is v3
        crop = zarr.open_group(folder, mode="r")
        (c_scale, c_t), c_shape = levels(crop["all"].attrs)["s0"], crop["all"]["s0"].shape
        if np.all(np.asarray(s0_scale) / np.asarray(c_scale) > 0.8):
            expected |= _raw_chunks_under(c_t, c_scale, c_shape, s0_scale, s0_t)
    s0_dir = store_path(root, "jrc_fix-1") / RAW / "s0"
    found = {tuple(int(x) for x in p.relative_to(s0_dir).parts)
             for p in s0_dir.rglob("*") if p.is_file() and p.name[0] != "."}
    total = np.prod(np.ceil(np.asarray(g[RAW]["s0"].shape) / (64, 128, 128)))
    assert expected and found == expected and len(found) < total


def _raw_chunks_under(t, scale, shape, raw_scale, raw_t) -> set[tuple[int, ...]]:
    """Indices of the raw chunks (64x128x128) a crop's box touches at one raw level."""
    corner = np.asarray(t) - np.asarray(scale) / 2
    start = np.floor((corner - (np.asarray(raw_t) - np.asarray(raw_scale) / 2)) / raw_scale + 1e-6).astype(int)
    stop = start + np.ceil(np.asarray(shape) * np.asarray(scale) / raw_scale - 1e-6).astype(int)
    return {tuple(i) for i in np.ndindex(*(np.ceil(stop / (64, 128, 128)).astype(int)))
            if all(a * c < b and (a + 1) * c > lo for a, c, lo, b in zip(i, (64, 128, 128), start, stop))}


# --------------------------------------------------------------------------- labels


def test_class_arrays_follow_their_declared_encoding(ds_none):
    root = ds_none[0]
    full_names, instance_ids, checked = [], [], 0
    for case, name in crops_of(root).items():
        cg = open_store(root, name)[GT][case]
        ann = cg.attrs["cellmap"]["annotation"]
        for key in ("version", "name", "description", "created_by", "created_with", "start_date", "end_date",
                    "duration_days", "protocol_uri", "class_names"):
            assert key in ann
        names = ann["class_names"]
        assert set(names) <= set(canonical_classes()) and set(names) | {"all"} == set(cg.group_keys())
        full_names.append(len(names))
        absent_groups = 0
        for cls in names:
            gann = cg[cls].attrs["cellmap"]["annotation"]
            kind = gann["annotation_type"]
            if cls in INSTANCE:
                assert kind == {"type": "instance_segmentation", "encoding": INSTANCE_ENCODING}
            else:
                assert kind == {"type": "semantic_segmentation", "encoding": SEMANTIC_ENCODING}
            lv = levels(cg[cls].attrs)
            assert list(lv) == ["s0", "s1", "s2"]
            for n, path in enumerate(lv):
                a = cg[cls][path][...]
                assert a.shape == tuple(v // 2**n for v in cg[cls]["s0"].shape)
                cc = cg[cls][path].attrs["cellmap"]["annotation"]["complement_counts"]
                assert cc["absent"] == int((a == 0).sum()) and cc.get("unknown", 0) == int((a == 255).sum())
                values = set(np.unique(a).tolist())
                if cls in INSTANCE:
                    if n == 0 and values - {0, 255}:
                        instance_ids.append(len(values - {0, 255}))
                else:
                    assert values <= {0, 1, 255}
            if (cg[cls]["s0"][...] == 0).all():
                absent_groups += 1
            checked += 1
        if len(names) >= 58:  # a full crop: many classes annotated but absent
            assert absent_groups >= 20
    assert max(full_names) >= 58 and min(full_names) <= 6
    assert checked > 100 and max(instance_ids) >= 2  # several mitochondria/vesicles with their own ids


def test_all_holds_the_most_granular_listed_canonical_id(ds_none):
    root = ds_none[0]
    table = canonical_classes()
    for case, name in crops_of(root).items():
        cg = open_store(root, name)[GT][case]
        names = cg.attrs["cellmap"]["annotation"]["class_names"]
        dense = cg["all"]["s0"][...]
        ids = {table[n].id for n in names}
        assert set(np.unique(dense).tolist()) <= ids | {0}
        for cls in names:
            present = cg[cls]["s0"][...]
            present = (present != 0) & (present != 255)
            finer = [n for n in names if n != cls and table[n].id in table[cls].members]
            if present.any() and not finer:  # where no finer class was painted, `all` holds this one
                assert (dense[present] == table[cls].id).all(), (case, cls)


def test_a_constant_crop_all_extracellular_space(ds_none):
    root = ds_none[0]
    constant = []
    for case, name in crops_of(root).items():
        cg = open_store(root, name)[GT][case]
        if "ecs" in cg.group_keys() and (cg["ecs"]["s0"][...] == 1).all():
            constant.append(case)
            assert (cg["all"]["s0"][...] == canonical_classes()["ecs"].id).all()
    assert constant


def test_unknown_voxels_and_nucleus(ds_none):
    root = ds_none[0]
    cg = open_store(root, "jrc_fix-1")[GT]["crop3"]
    first = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    cc = cg[first]["s0"].attrs["cellmap"]["annotation"]["complement_counts"]
    assert 0 < cc["unknown"] < cg[first]["s0"].size  # partially unknown, still annotated
    fg = {}
    for e in datalist(root)["training"]:
        lab, _ = load(root, e["label"])
        if (lab == LABEL_VALUE["nuc"]).any():
            fg[entry_case(e)] = ((lab == LABEL_VALUE["nuc"]).mean(), len(e["annotated_classes"].split(",")))
    assert 1 <= len(fg) <= 3
    for frac, n_annotated in fg.values():
        assert 0.3 < frac < 0.6 and n_annotated <= 6


# --------------------------------------------------------------------------- conversion at 8 nm


def test_nifti_is_the_crop_at_8_nm(ds_none):
    """Every datalist case is its crop's 8 nm level and the raw s0 box under it: aligned, true affine."""
    root = ds_none[0]
    where = crops_of(root)
    for e in datalist(root)["training"]:
        case = entry_case(e)
        g = open_store(root, where[case])
        cg = g[GT][case]
        names = cg.attrs["cellmap"]["annotation"]["class_names"]
        path = next(p for p, (s, _) in levels(cg["all"].attrs).items() if np.allclose(s, 8.0))
        scale, t = levels(cg["all"].attrs)[path]
        img, aff = load(root, e["image"])
        lab, laff = load(root, e["label"])
        want = np.diag(scale + [1.0])
        want[:3, 3] = t
        np.testing.assert_allclose(aff, want)
        np.testing.assert_allclose(laff, want)
        expected = np.zeros(cg["all"][path].shape, dtype=np.uint8)
        for cls in CLASS_NAMES:
            if cls in names:
                a = cg[cls][path][...]
                expected[(a != 0) & (a != 255)] = LABEL_VALUE[cls]
        np.testing.assert_array_equal(lab, expected)
        _, raw_t0 = levels(g[RAW].attrs)["s0"]
        p = [int(round((a - b) / 8)) for a, b in zip(t, raw_t0)]
        region = g[RAW]["s0"][p[0]: p[0] + img.shape[0], p[1]: p[1] + img.shape[1], p[2]: p[2] + img.shape[2]]
        np.testing.assert_array_equal(img, region)
        assert e["annotated_classes"] == ",".join(str(LABEL_VALUE[c] - 1) for c in CLASS_NAMES if c in names)


def test_raw_has_membrane_contrast(ds_none):
    root = ds_none[0]
    dark = []
    for e in datalist(root)["training"]:
        img, _ = load(root, e["image"])
        lab, _ = load(root, e["label"])
        mem = np.isin(lab, [LABEL_VALUE[c] for c in CLASS_NAMES if c.endswith("_mem") or c == "pm"])
        if mem.sum() > 50 and (lab == 0).sum() > 50:
            dark.append(img[mem].mean() - img[lab == 0].mean())
    assert dark and max(dark) < -20


# --------------------------------------------------------------------------- clean dataset


def test_none_is_clean(ds_none):
    root, exp = ds_none
    assert exp["defects"] == [] and exp["findings"] == []
    assert exp["clean_cases"] == exp["cases"]
    assert exp["cases"]["datalist"] == [f"crop{i}" for i in range(1, 11)]
    assert exp["cases"]["zarr"] == [f"crop{i}" for i in range(1, 11)] + ["crop300", "crop301", "crop302"]
    dl = datalist(root)
    assert "validation" not in dl
    assert dl["labels"] == {"0": "background", **{str(i + 1): n for i, n in enumerate(CLASS_NAMES)}}
    folds = [e["fold"] for e in dl["training"]]
    assert set(folds) == {0, 1} and 2 <= folds.count(0) <= 4
    for ch in range(len(CLASS_NAMES)):
        n0 = sum(str(ch) in e["annotated_classes"].split(",") for e in dl["training"] if e["fold"] == 0)
        n1 = sum(str(ch) in e["annotated_classes"].split(",") for e in dl["training"] if e["fold"] == 1)
        assert n0 >= 1 and n1 >= 2, CLASS_NAMES[ch]
    for e in dl["training"]:
        assert set(e) == {"image", "label", "fold", "annotated_classes"}
        img, _ = load(root, e["image"])
        assert img.min() >= 1 and img.std() > 15
    stats = yaml.safe_load((root / "datastats.yaml").read_text())
    assert stats["stats_summary"]["n_cases"] == len(dl["training"])


# --------------------------------------------------------------------------- defects


def test_all_findings_cover_every_check(ds_all):
    root, exp = ds_all
    assert exp["seed"] == 0 and exp["defects"] == sorted(DEFECT_IDS)
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


def test_planted_datalist_defects_are_there(ds_all):
    root, exp = ds_all
    dl = datalist(root)
    by_case: dict[str, list[dict]] = {}
    for e in dl["training"]:
        by_case.setdefault(entry_case(e), []).append(e)
    rows = {(r["defect"], r["view"]): r for r in exp["findings"]}
    assert "label" not in by_case[rows["datalist-invalid", "datalist"]["case"]][0]
    e = by_case[rows["missing-file", "datalist"]["case"]][0]
    assert (root / e["image"]).exists() and not (root / e["label"]).exists()
    assert "fold" not in by_case[rows["missing-fold", "datalist"]["case"]][0]
    assert {e.get("fold") for e in dl["training"]} == {0, 1, 3, None}
    dup = by_case[rows["duplicate-case", "datalist"]["case"]]
    assert len(dup) == 2 and {d["fold"] for d in dup} == {0, 1} and dup[0]["image"] == dup[1]["image"]
    assert by_case[rows["annotated-classes-invalid", "datalist"]["case"]][0]["annotated_classes"] == "0,1,15"
    assert by_case[rows["annotated-classes-mangled", "datalist"]["case"]][0]["annotated_classes"] == (
        "/home/user/cellmap/data/0,1,2,3")
    # the field kept its fold-0 entries in a `validation` array
    assert dl["validation"] == [e for e in dl["training"] if e.get("fold") == 0]
    for e in dl["training"]:
        if e.get("fold") == 0:
            assert "4" not in e["annotated_classes"].split(",")  # class-coverage: mito_ribo
    stats = yaml.safe_load((root / "datastats.yaml").read_text())
    assert len(stats["stats_by_cases"]) == len(dl["training"]) + 1

    def image(defect):
        return load(root, by_case[f"crop{DEFECTS[defect].crop}"][0]["image"])[0]

    assert image("resolution-mismatch").max() == 0  # the field's 8 nm read of a 32 nm crop: never downloaded
    assert image("blank-image").max() == 0
    assert np.unique(image("constant-image")).tolist() == [128]
    for d in ("partial-blank", "out-of-bounds"):
        img = image(d)
        assert img.max() > 0 and (img == 0).mean() > 0.3
    assert by_case["crop105"][0]["annotated_classes"] == ""
    assert 17 in np.unique(load(root, by_case["crop107"][0]["label"])[0])
    e = by_case["crop109"][0]
    assert load(root, e["image"])[0].shape != load(root, e["label"])[0].shape
    e = by_case["crop110"][0]
    assert np.allclose(np.diag(load(root, e["label"])[1])[:3], 4.0)
    with pytest.raises(Exception):
        load(root, by_case["crop111"][0]["image"])
    e = by_case["crop112"][0]
    big = zarr.open_group(str(root / e["image"]), mode="r")
    assert big["s0"].shape == (1152, 1024, 1024)
    # a loader's float32 output, NaN past the raw volume
    nan = image("non-finite")
    assert nan.dtype == np.float32 and np.isnan(nan).any() and np.nanmax(nan) <= 1
    # the label reversed along x in data and affine alike: the same world positions, mirrored arrays
    e = by_case[f"crop{DEFECTS['orientation-mismatch'].crop}"][0]
    (img, ia), (lab, la) = load(root, e["image"]), load(root, e["label"])
    assert la[2, 2] == -ia[2, 2] and np.allclose(la @ [0, 0, lab.shape[2] - 1, 1], ia @ [0, 0, 0, 1])


def test_planted_zarr_defects_are_there(ds_all):
    root, exp = ds_all
    g1, g2 = open_store(root, "jrc_fix-1"), open_store(root, "jrc_fix-2")
    # off-grid: the corner written as translation, half a crop voxel off
    crop = levels(g1[GT]["crop113"]["all"].attrs)
    raw = levels(g1[RAW].attrs)
    assert not on_grid(crop["s1"][1], raw["s0"][1], raw["s0"][0])
    # multiscale-metadata: datasets listed coarsest first
    c = g2[GT]["crop114"].attrs["cellmap"]["annotation"]["class_names"][0]
    assert [d["path"] for d in multiscales(g2[GT]["crop114"][c].attrs)["datasets"]] == ["s2", "s1", "s0"]
    # mixed-zarr-format: a format 3 crop inside the format 2 store, invisible to its reader
    folder = store_path(root, "jrc_fix-1") / GT / "crop115"
    assert (folder / "zarr.json").is_file() and "crop115" not in g1[GT].group_keys()
    # empty-annotation: entirely unknown classes
    cg = g1[GT]["crop105"]
    for c in cg.attrs["cellmap"]["annotation"]["class_names"]:
        a = cg[c]["s0"]
        assert (a[...] == 255).all() and a.attrs["cellmap"]["annotation"]["complement_counts"]["unknown"] == a.size
    # annotation-metadata: absent off by 100
    cg = g2[GT]["crop106"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    a = cg[c]["s0"]
    assert abs(a.attrs["cellmap"]["annotation"]["complement_counts"]["absent"] - int((a[...] == 0).sum())) == 100
    # label-values: a 7 in a semantic class array
    cg = g1[GT]["crop107"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    assert 7 in np.unique(cg[c]["s0"][...])
    # unannotated-label-present: a canonical id in `all` of a class the crop does not list
    cg = g2[GT]["crop108"]
    listed = {canonical_classes()[n].id for n in cg.attrs["cellmap"]["annotation"]["class_names"]}
    assert set(np.unique(cg["all"]["s0"][...]).tolist()) - listed - {0}
    # shape- and spacing-mismatch between class arrays
    cg = g1[GT]["crop109"]
    assert len({cg[c]["s0"].shape for c in cg.attrs["cellmap"]["annotation"]["class_names"]}) == 2
    cg = g2[GT]["crop110"]
    assert len({tuple(levels(cg[c].attrs)["s0"][1]) for c in cg.attrs["cellmap"]["annotation"]["class_names"]}) == 2
    # unreadable: truncated .zarray
    c = g1[GT]["crop111"].attrs["cellmap"]["annotation"]["class_names"][0]
    with pytest.raises(json.JSONDecodeError):
        json.loads((store_path(root, "jrc_fix-1") / GT / "crop111" / c / "s0" / ".zarray").read_text())
    # oversized: > 2^30 voxels, no chunks written, counts say all absent
    cg = g2[GT]["crop112"]
    c = cg.attrs["cellmap"]["annotation"]["class_names"][0]
    a = cg[c]["s0"]
    assert a.size > 2**30 and a.attrs["cellmap"]["annotation"]["complement_counts"] == {"absent": a.size}
    assert not (store_path(root, "jrc_fix-2") / GT / "crop112" / c / "s0" / "c").exists()


def test_single_defect(tmp_path):
    exp = make_dataset(tmp_path / "d", defects=["label-values"], n_clean=3)
    assert exp["defects"] == ["label-values"]
    assert exp["findings"] == [
        {"defect": "label-values", "view": "datalist", "check": "label-values", "case": "crop107"},
        {"defect": "label-values", "view": "zarr", "check": "label-values", "case": "crop107"},
    ]
    assert exp["cases"]["zarr"] == ["crop1", "crop2", "crop3", "crop107", "crop300", "crop301", "crop302"]
    assert exp["clean_cases"]["zarr"] == ["crop1", "crop2", "crop3", "crop300", "crop301", "crop302"]


def test_api_errors(tmp_path):
    with pytest.raises(UnknownDefectError):
        make_dataset(tmp_path / "a", defects="nope")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(FileExistsError):
        make_dataset(tmp_path / "b", defects="none")
