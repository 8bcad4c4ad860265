"""The one intensity rule: a dtype's range onto 0..1, floats as stored, one dtype per model."""

import numpy as np
import pytest

from cellcheck.errors import CellcheckError
from cellcheck.intensity import IntensityRule, rule_for_dtypes


@pytest.mark.parametrize("dtype, low, high", [("uint8", 0, 255), ("uint16", 0, 65535), ("int16", -32768, 32767)])
def test_integer_range_onto_unit_interval(dtype, low, high):
    rule = IntensityRule.for_dtype(dtype)
    out = rule.apply(np.array([low, high], dtype=dtype))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 1.0]
    assert IntensityRule.from_json(rule.to_json()) == rule


def test_floats_are_taken_as_stored_and_other_dtypes_refused():
    data = np.array([0.25, 0.5], dtype=np.float32)
    assert np.array_equal(IntensityRule.for_dtype("float32").apply(data), data)
    with pytest.raises(CellcheckError, match="voxels are int16, the model was trained on uint8 images"):
        IntensityRule.for_dtype("uint8").apply(np.zeros(3, np.int16), "crop.nii.gz")


def test_one_rule_per_set_of_images():
    assert rule_for_dtypes([np.dtype("uint8")] * 3).dtype == "uint8"
    with pytest.raises(CellcheckError, match="stored as uint16, uint8"):
        rule_for_dtypes(["uint8", "uint16"])
    with pytest.raises(CellcheckError, match="no image"):
        rule_for_dtypes([])
