"""shape-mismatch and spacing-mismatch from NIfTI headers."""

import nibabel as nib
import numpy as np

from cellcheck.audit import audit
from datasets import read_datalist


def test_trailing_singleton_label_axis_is_not_a_mismatch(clean_copy):
    entry = read_datalist(clean_copy)["training"][0]
    path = clean_copy / entry["label"]
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[..., None], img.affine), path)
    report = audit(clean_copy / "datalist.json")
    assert not [f for f in report.findings if f.severity.value in ("error", "warning")]


def test_origin_shift_is_a_spacing_mismatch(clean_copy):
    entry = read_datalist(clean_copy)["training"][0]
    path = clean_copy / entry["label"]
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 8.0  # one voxel
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), affine), path)
    report = audit(clean_copy / "datalist.json")
    (f,) = [f for f in report.findings if f.check == "spacing-mismatch"]
    assert "origin" in f.message and f.path == entry["label"]
