"""How stored image voxels become network input: one rule for training, validation and inference.

The rule maps the range of the images' stored dtype onto 0..1, x -> (x - low) / (high - low) as
float32: uint8 EM (the field's data) is divided by 255, uint16 by 65535, int16 shifted by 32768
first; float images are taken as stored (already scaled). A training run fixes one rule from its
images' dtype, stores it in every checkpoint, and inference applies the checkpoint's rule, so a
crop reaches the network with the same values in training and at inference. An image of another
dtype is refused rather than guessed at: the same number means something else in uint8 and int16.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cellcheck.errors import CellcheckError

__all__ = ["IntensityRule", "rule_for_dtypes"]


@dataclass(frozen=True)
class IntensityRule:
    """Stored dtype the rule is for, and the stored values that become 0 and 1."""

    dtype: str
    low: float
    high: float

    @classmethod
    def for_dtype(cls, dtype: np.dtype | str) -> IntensityRule:
        """The rule for images stored as `dtype`: its full range for integers, identity for floats."""
        dt = np.dtype(dtype)
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            return cls(dt.name, float(info.min), float(info.max))
        if np.issubdtype(dt, np.floating):
            return cls(dt.name, 0.0, 1.0)
        raise CellcheckError(f"images stored as {dt} cannot be network input; convert them to uint8, uint16 or float32")

    def apply(self, data: np.ndarray, where: str = "image") -> np.ndarray:
        """(..., Z, Y, X) stored voxels -> float32 network input; raises CellcheckError for another dtype."""
        if data.dtype != np.dtype(self.dtype):
            raise CellcheckError(
                f"{where}: voxels are {data.dtype}, the model was trained on {self.dtype} images "
                f"({self.low:g}..{self.high:g} -> 0..1); convert the image to {self.dtype}"
            )
        out = data.astype(np.float32)
        if (self.low, self.high) != (0.0, 1.0):
            out -= np.float32(self.low)
            out *= np.float32(1.0 / (self.high - self.low))
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IntensityRule:
        return cls(str(data["dtype"]), float(data["low"]), float(data["high"]))


def rule_for_dtypes(dtypes: Iterable[np.dtype | str], where: str = "training images") -> IntensityRule:
    """The one rule for a set of images; raises CellcheckError when they are stored in different dtypes."""
    found = sorted({np.dtype(d).name for d in dtypes})
    if not found:
        raise CellcheckError(f"{where}: no image to take the intensity rule from")
    if len(found) > 1:
        raise CellcheckError(
            f"{where} are stored as {', '.join(found)}: one model needs one intensity scale; "
            "convert them to one dtype (uint8 for FIB-SEM)"
        )
    return IntensityRule.for_dtype(found[0])
