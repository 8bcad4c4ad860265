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


def _rewrite_label(root, transform):
    """Rewrite the first entry's label through `transform(data, affine) -> (data, affine)`; returns its entry."""
    entry = read_datalist(root)["training"][0]
    path = root / entry["label"]
    img = nib.load(path)
    data, affine = transform(np.asanyarray(img.dataobj), img.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)
    return entry


def test_a_label_flipped_in_its_affine_is_an_orientation_error_naming_the_axis(clean_copy):
    def flip_y(data, affine):  # the same world positions, the array reversed along axis 1 (as an LPS/RAS round trip does)
        affine[:3, 3] += affine[:3, 1] * (data.shape[1] - 1)
        affine[:3, 1] *= -1
        return data[:, ::-1].copy(), affine

    entry = _rewrite_label(clean_copy, flip_y)
    report = audit(clean_copy / "datalist.json")
    [f] = [f for f in report.findings if f.severity.value == "error"]
    assert f.check == "orientation-mismatch" and f.path == entry["label"]
    assert "axis 1 is flipped" in f.message and f.details["axes"] == [1]
    assert not [g for g in report.findings if g.check == "spacing-mismatch"]  # the moved origin is the flip's


def test_permuted_label_axes_are_named(clean_copy):
    def swap_yx(data, affine):
        return np.swapaxes(data, 1, 2).copy(), affine[:, [0, 2, 1, 3]]

    _rewrite_label(clean_copy, swap_yx)
    report = audit(clean_copy / "datalist.json")
    [f] = [f for f in report.findings if f.check == "orientation-mismatch"]
    assert "axes 1 (along image axis 2), 2 (along image axis 1) are permuted" in f.message
