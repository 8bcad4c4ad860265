"""The shapes each network accepts, without torch: the memory model and the config check ROIs with these rules."""

from __future__ import annotations

from collections.abc import Sequence

#: The networks we train, by the Auto3DSeg template they come from.
MODELS = ("segresnet", "swinunetr", "dints")

#: Total down-sampling from the patch to the coarsest feature map: every ROI side must be a multiple.
_ROI_MULTIPLE = {
    "segresnet": 16,  # four stride-2 stages (blocks_down [1, 2, 2, 4, 4])
    "swinunetr": 32,  # patch embedding (2) and four patch merges
    "dints": 16,  # stem (2) and three stride-2 levels (4 depths); MONAI recommends 32, 16 runs
}


def roi_multiple(model: str) -> int:
    """Divisor every ROI side must respect for `model`; why: patches and sliding windows must fit the network."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return _ROI_MULTIPLE[model]


def check_roi(model: str, roi_size: Sequence[int]) -> tuple[int, int, int]:
    """Validated (Z, Y, X) ROI in voxels; why: a bad ROI must fail at build time, not deep inside forward.

    Every side must be a multiple of `roi_multiple(model)` and at least twice it: at exactly the
    multiple the coarsest feature map is 1 voxel, where instance normalisation raises.
    """
    roi = tuple(int(r) for r in roi_size)
    need = roi_multiple(model)
    if len(roi) != 3:
        raise ValueError(f"ROI {list(roi)}: {model} needs 3 sizes (Z, Y, X)")
    bad = [r for r in roi if r % need or r < 2 * need]
    if bad:
        raise ValueError(
            f"ROI {list(roi)}: {model} needs every side to be a multiple of {need} voxels and at least "
            f"{2 * need}; {bad} break that rule"
        )
    return roi  # type: ignore[return-value]
