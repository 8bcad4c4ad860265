"""Parsing of per-crop annotated-class strings, including MONAI datafold_read's path-joined form."""

from __future__ import annotations

import os

import pytest
import torch
from monai.auto3dseg.utils import datafold_read

from cellcheck.models.losses import annotation_mask, from_annotated_classes


def _row(indices: list[int], c: int = 14) -> torch.Tensor:
    row = torch.zeros(c, dtype=torch.bool)
    row[indices] = True
    return row


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0,1,2", [0, 1, 2]),
        (" 3 , 13 ", [3, 13]),
        ("5", [5]),
        ("2,2,1", [1, 2]),
        ("/basedir/0,1,2,3", [0, 1, 2, 3]),
        ("relative/dir/7,8", [7, 8]),
        ("C:\\data\\4,6", [4, 6]),
        ("", []),
        ("   ", []),
        ("/basedir/", []),
        ([0, 13], [0, 13]),
        (["/basedir/1", "/basedir/12"], [1, 12]),
        ([], []),
    ],
)
def test_from_annotated_classes(spec, expected):
    row = from_annotated_classes(spec, num_classes=14)
    assert row.dtype == torch.bool and row.shape == (14,)
    assert torch.equal(row, _row(expected))


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("0,a,2", "'a' is not an integer"),
        ("1.5", "'1.5' is not an integer"),
        ("0,14", "class index 14 is out of range 0..13"),
        ("-1", "class index -1 is out of range"),
        ("0,,1", "empty item"),
        ("0,1,", "empty item"),
        ([0, 20], "class index 20 is out of range"),
        ([True], "bool"),
        (3, "expected a string"),
    ],
)
def test_bad_specs_raise_with_the_string(spec, fragment):
    with pytest.raises(ValueError) as info:
        from_annotated_classes(spec, num_classes=14)
    message = str(info.value)
    assert fragment in message
    assert repr(spec) in message  # the message names the offending value


def test_datafold_read_round_trip(tmp_path):
    """What MONAI hands the training loop after joining every string field with the base dir."""
    datalist = {
        "training": [
            {"image": "a.zarr", "label": "a_lab.zarr", "annotated": "0,1,2,3", "fold": 0},
            {"image": "b.zarr", "label": "b_lab.zarr", "annotated": "", "fold": 1},
            {"image": "c.zarr", "label": "c_lab.zarr", "annotated": "13", "fold": 1},
        ]
    }
    train, val = datafold_read(datalist, basedir=str(tmp_path), fold=0)
    assert val[0]["annotated"] == os.path.join(str(tmp_path), "0,1,2,3")
    mask = annotation_mask([d["annotated"] for d in val + train], num_classes=14)
    assert torch.equal(mask, torch.stack([_row([0, 1, 2, 3]), _row([]), _row([13])]))


def test_annotation_mask_batch_and_passthrough():
    mask = annotation_mask(["0,1", "/x/2", ""], num_classes=3)
    assert torch.equal(mask, torch.tensor([[True, True, False], [False, False, True], [False, False, False]]))
    assert annotation_mask(mask, num_classes=3) is mask
    assert annotation_mask([], num_classes=3).shape == (0, 3)
    with pytest.raises(ValueError, match="single string"):
        annotation_mask("0,1", num_classes=3)
    with pytest.raises(ValueError, match="bool tensor"):
        annotation_mask(mask.float(), num_classes=3)
    with pytest.raises(ValueError, match="'0,7'"):
        annotation_mask(["0", "0,7"], num_classes=3)


def test_tensor_row_passthrough_and_num_classes_check():
    row = _row([1], 4)
    assert from_annotated_classes(row, 4) is row
    with pytest.raises(ValueError, match="shape"):
        from_annotated_classes(row, 5)
    with pytest.raises(ValueError, match="num_classes"):
        from_annotated_classes("0", 0)


def test_inverse_frequency_weights():
    from cellcheck.models.losses import inverse_frequency_weights

    mask = annotation_mask(["0,1", "0", "0,2", ""], num_classes=4)  # counts 3, 1, 1, 0
    w = inverse_frequency_weights(mask)
    assert w.dtype == torch.float64 and w.shape == (4,)
    assert w[3] == 0 and torch.isclose(w[:3].mean(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.isclose(w[1] / w[0], torch.tensor(3.0, dtype=torch.float64))
    assert torch.equal(inverse_frequency_weights(torch.zeros(2, 3, dtype=torch.bool)), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="bool"):
        inverse_frequency_weights(mask.float())
