"""The 14 CellMap organelle classes of our models, and the label-value / channel conventions.

Label value k (1..14) in an integer label image is channel k - 1 of the network output;
label value 0 is background for the annotated classes and "unknown" for the others.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "ecs",
    "pm",
    "mito_mem",
    "mito_lum",
    "mito_ribo",
    "golgi_mem",
    "golgi_lum",
    "ves_mem",
    "ves_lum",
    "endo_mem",
    "endo_lum",
    "er_mem",
    "er_lum",
    "nuc",
)
NUM_CLASSES = len(CLASS_NAMES)

#: label value of each class name (1-based; 0 is background).
LABEL_VALUE: dict[str, int] = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}


def channel_of(label_value: int) -> int:
    """Network output channel of a label value (value k -> channel k - 1)."""
    return label_value - 1
