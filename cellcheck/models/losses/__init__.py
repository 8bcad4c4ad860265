"""Losses for partially annotated multi-class segmentation (CellMap: 14 classes, some annotated per crop).

``PartialAnnotationLoss`` is per-channel sigmoid Dice + BCE masked by a (B, C) annotation mask,
computed from the integer labels without a one-hot target; ``DeepSupervisionPartialLoss`` wraps
it for SegResNetDS outputs; ``from_annotated_classes`` / ``annotation_mask`` turn datalist strings
("0,1,2", possibly path-joined by MONAI's datafold_read) into that mask, and
``inverse_frequency_weights`` gives per-class weights from how often each class is annotated.
"""

from .annotations import annotation_mask, from_annotated_classes, inverse_frequency_weights
from .deep_supervision import DeepSupervisionPartialLoss, level_weights, resize_labels_nearest
from .partial import PartialAnnotationLoss, check_label_values, flatten_labels
from .logit_sums import LogitStats, known_logit_stats, logit_stats
from .targets import VoxelTargets, channel_bits

__all__ = [
    "DeepSupervisionPartialLoss",
    "LogitStats",
    "PartialAnnotationLoss",
    "VoxelTargets",
    "annotation_mask",
    "channel_bits",
    "check_label_values",
    "flatten_labels",
    "from_annotated_classes",
    "inverse_frequency_weights",
    "known_logit_stats",
    "level_weights",
    "logit_stats",
    "resize_labels_nearest",
]
