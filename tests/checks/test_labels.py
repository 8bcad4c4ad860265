"""label-values and unannotated-label-present on real NIfTI files."""

import nibabel as nib
import numpy as np

from cellcheck.audit import audit
from datasets import read_datalist, write_datalist


def rewrite_label(root, entry, fn, dtype=None):
    path = root / entry["label"]
    img = nib.load(path)
    data = fn(np.asanyarray(img.dataobj).copy())
    out = nib.Nifti1Image(data.astype(dtype or data.dtype), img.affine)
    nib.save(out, path)


def test_float_labels_are_flagged_even_when_integral(clean_copy):
    dl = read_datalist(clean_copy)
    rewrite_label(clean_copy, dl["training"][0], lambda a: a, np.float32)
    report = audit(clean_copy / "datalist.json")
    f = [f for f in report.findings if f.check == "label-values"]
    assert len(f) == 1 and "float32" in f[0].message and f[0].case == dl["training"][0]["image"].split("/")[-1][:-7]


def test_negative_and_large_values(clean_copy):
    dl = read_datalist(clean_copy)

    def damage(a):
        a = a.astype(np.int16)
        a.flat[0], a.flat[1] = -1, 300
        return a

    rewrite_label(clean_copy, dl["training"][1], damage)
    report = audit(clean_copy / "datalist.json")
    (f,) = [f for f in report.findings if f.check == "label-values"]
    assert f.details["values"] == [-1, 300] and f.details["voxels"] == 2


def test_unannotated_class_voxels(clean_copy):
    dl = read_datalist(clean_copy)
    entry = next(e for e in dl["training"] if "13" not in e["annotated_classes"].split(","))
    rewrite_label(clean_copy, entry, lambda a: np.where(np.arange(a.size).reshape(a.shape) < 5, 14, a).astype(a.dtype))
    report = audit(clean_copy / "datalist.json")
    (f,) = [f for f in report.findings if f.check == "unannotated-label-present"]
    assert f.details["label_values"] == [14] and f.details["voxels"] == {"14": 5}
    assert "nuc" in f.message
