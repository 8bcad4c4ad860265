"""non-finite: NaN or Inf voxels in a float image or label, written as a loader or a resampling writes them."""

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from cellcheck.cli import cli
from datasets import read_datalist


def _as_float(root, key, poison):
    entry = read_datalist(root)["training"][0]
    path = root / entry[key]
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.float32)
    poison(data)
    nib.save(nib.Nifti1Image(data, img.affine), path)
    return entry


def _audit(root):
    result = CliRunner().invoke(cli, ["audit", str(root / "datalist.json"), "--format", "text"])
    return result.exit_code, result.output


def test_nan_padding_in_a_float_image_is_an_error(clean_copy):
    def pad(data):
        data /= 255
        data[:, :, -3:] = np.nan  # past the raw volume, as the CellMap loader pads a read

    entry = _as_float(clean_copy, "image", pad)
    code, out = _audit(clean_copy)
    [line] = [l for l in out.splitlines() if "[non-finite]" in l]
    n = np.prod(nib.load(clean_copy / entry["image"]).shape[:2]) * 3
    assert code == 1 and line.startswith(f"{entry['image']}: error") and f"image holds {n} NaN and 0 Inf" in line


def test_inf_in_a_float_label_is_an_error(clean_copy):
    def poison(data):
        data.flat[7] = np.inf

    entry = _as_float(clean_copy, "label", poison)
    code, out = _audit(clean_copy)
    assert code == 1 and f"{entry['label']}: error [non-finite]" in out and "label holds 0 NaN and 1 Inf" in out


def test_a_finite_float_image_is_no_finding(clean_copy):
    _as_float(clean_copy, "image", lambda d: d.__itruediv__(255))
    code, out = _audit(clean_copy)
    assert code == 0 and "non-finite" not in out
