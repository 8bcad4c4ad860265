"""The field-style converter replays incident 19 as described: label s0 and raw s0 whatever their voxel sizes,
the raw read from round(label translation / raw s0 scale), no resampling, an 8 nm header on every case.
Checked against the stores read back with zarr, not against the converter's own arithmetic."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import zarr

from fixtures.field_convert import field_convert

RAW, GT = "recon-1/em/fibsem-uint8", "recon-1/labels/groundtruth"


@pytest.fixture(scope="module")
def field(ds_none, tmp_path_factory):
    root, _ = ds_none
    out = tmp_path_factory.mktemp("field") / "out"
    return root, out, field_convert(root / "zarr", out)


def s0(group):
    ms = dict(group.attrs)
    ms = (ms["ome"] if "ome" in ms else ms)["multiscales"][0]
    [ds] = [d for d in ms["datasets"] if d["path"] == "s0"]
    t = {x["type"]: x for x in ds["coordinateTransformations"]}
    return t["scale"]["scale"], t["translation"]["translation"]


def test_every_crop_of_every_store_at_8_nm_named_as_nnunet_names_them(field):
    root, out, datalist = field
    crops = {f"{p.parents[3].name.removesuffix('.zarr')}_{p.name}" for p in (root / "zarr").glob(f"*/*.zarr/{GT}/crop*")}
    assert {e["image"] for e in datalist["training"]} == {f"imagesTr/{c}_0000.nii.gz" for c in crops}
    assert {e["label"] for e in datalist["training"]} == {f"labelsTr/{c}.nii.gz" for c in crops}
    # no record of where a case came from; the fold-0 entries again in a `validation` array
    assert set(datalist) == {"name", "training", "validation"}
    assert datalist["validation"] == [e for e in datalist["training"] if e["fold"] == 0]
    for e in datalist["training"]:
        for key in ("image", "label"):
            img = nib.load(str(out / e[key]))
            assert np.allclose(img.header.get_zooms()[:3], 8.0)
    assert json.loads((out / "datalist.json").read_text()) == datalist


def test_label_s0_beside_raw_s0_from_the_rounded_translation(field):
    root, out, datalist = field
    for e in datalist["training"]:
        name = e["label"].split("/")[-1].removesuffix(".nii.gz")
        store_name, case = name.rsplit("_", 1)
        store = root / "zarr" / store_name / f"{store_name}.zarr"
        g = zarr.open_group(str(store), mode="r")
        first = next(iter(sorted(g[GT][case].group_keys())))
        crop_scale, crop_t = s0(g[GT][case][first])
        raw_scale, _ = s0(g[RAW])
        label = np.asarray(nib.load(str(out / e["label"])).dataobj)
        image = np.asarray(nib.load(str(out / e["image"])).dataobj)
        assert label.shape == image.shape == g[GT][case][first]["s0"].shape  # never resampled
        start = [round(t / s) for t, s in zip(crop_t, raw_scale)]
        raw = g[RAW]["s0"]
        inside = tuple(slice(max(a, 0), min(a + n, m)) for a, n, m in zip(start, label.shape, raw.shape))
        where = tuple(slice(i.start - a, i.stop - a) for i, a in zip(inside, start))
        assert np.array_equal(image[where], np.asarray(raw[inside])), case
        assert np.allclose(nib.load(str(out / e["image"])).affine[:3, 3], crop_t)
