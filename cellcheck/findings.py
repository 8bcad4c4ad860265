"""Findings and the stable registry of check ids (a public contract, like a linter's rule codes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Check:
    """One stable check id: its severity, what it catches and the field incident(s) it comes from (docs/INCIDENTS.md)."""

    id: str
    severity: Severity
    catches: str
    incident: str
    stage: str = "audit"  # "audit": data; "source": data against its CellMap source (audit --source); "gate": config, environment and memory plan


_ERROR, _WARN, _INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

#: Every check id cellcheck can report. Ids are never renamed; new checks add new ids.
CHECKS: dict[str, Check] = {
    c.id: c
    for c in (
        Check("datalist-invalid", _ERROR, "malformed JSON, wrong schema, entry without image/label", "7, 12"),
        Check("missing-file", _ERROR, "image or label path that does not exist", "3"),
        Check("unreadable", _ERROR, "truncated/corrupt NIfTI or zarr, bad metadata", "3 (JSONDecodeError downloads)"),
        Check("missing-fold", _ERROR, "entries without `fold` while folds are used", "2"),
        Check("empty-fold", _ERROR, "a fold with no validation cases (ZeroDivisionError)", "2"),
        Check("duplicate-case", _ERROR, "same image twice, or one case in two folds", "14"),
        Check("empty-annotation", _ERROR, "`annotated_classes` empty", "4"),
        Check("annotated-classes-invalid", _ERROR, "unparseable or out-of-range channel ids", "7"),
        Check("annotated-classes-mangled", _WARN, "a path joined onto the class list", "7"),
        Check("blank-image", _ERROR, "image all zero (max = 0), missing download", "3"),
        Check("constant-image", _ERROR, "image of one constant value", "9"),
        Check("partial-blank", _WARN, "all-zero slabs in an image (clip + pad, partial download)", "3"),
        Check("shape-mismatch", _ERROR, "image and label shapes differ", "3"),
        Check("spacing-mismatch", _ERROR, "image and label voxel size or origin differ", "3"),
        Check("orientation-mismatch", _ERROR, "label axes flipped or permuted against the image's (NIfTI affine "
              "directions): the voxel arrays do not overlay", "19"),
        Check("non-finite", _ERROR, "NaN or Inf voxels in a float image or label (NaN losses)", "15"),
        Check("resolution-mismatch", _ERROR, "crop cannot train at --resolution (no label level, or no raw data there); "
              "without --resolution one info line per store (the resolutions its crops train at, counted) and a "
              "warning for a crop that trains at none of the resolutions most of the store's crops train at",
              "3 (26 blank crops)"),
        Check("out-of-bounds", _ERROR, "crop extends past the raw volume", "3 (14 blank crops)"),
        Check("label-values", _ERROR, "label values outside 0..C, float labels, or CellMap arrays outside their "
              "declared encoding (`all` outside the canonical class ids)", "10, 13"),
        Check("unannotated-label-present", _WARN, "voxels of a class not listed as annotated", "1"),
        Check("oversized-case", _WARN, "case too large for the memory budget", "4, 5 (crop247)"),
        Check("class-coverage", _WARN, "class annotated in no validation case, or very few; present in no validation "
              "crop that annotates it (coverage plan)", "15"),
        Check("class-empty", _ERROR, "class annotated in crops and present in none of them (in none of the training "
              "split's, at the gate): its loss can only teach 'absent'", "20"),
        Check("stale-stats", _WARN, "a datastats file that does not match the datalist", "14"),
        Check("annotation-metadata", _WARN, "zarr class_names / complement_counts that disagree with the arrays", "13"),
        Check("off-grid", _ERROR, "crop translation off the raw voxel grid by a fraction of a voxel", "19"),
        Check("multiscale-metadata", _WARN, "OME-NGFF datasets not listed finest first", "19"),
        Check("mixed-zarr-format", _ERROR, "a zarr format 3 node inside a format 2 store (or the reverse)", "3"),
        Check("source-geometry", _ERROR, "`audit --source`: an entry's extent, voxel size or origin differ from its "
              "source crop's at that resolution, or the crop has no image there (levels paired by name, spacing lost, "
              "origin shifted)", "19", "source"),
        Check("source-content", _ERROR, "`audit --source`: image voxels differ from the raw, or label voxels from the "
              "class arrays, at the declared grid (misaligned, wrong scale, shifted read); says how far off", "19", "source"),
        Check("source-annotation", _ERROR, "`audit --source`: annotated_classes lists a class the source crop does not "
              "annotate, or marks partly unknown (its unknown voxels train as background)", "1, 19", "source"),
        Check("label-contrast", _WARN, "labels that do not follow the image: intensity steps across a crop's label "
              "boundaries far below the same boundaries in the other crops (misaligned, or at another voxel size)", "19"),
        Check("source-missing", _WARN, "`audit --source`: entries whose source crop cannot be found, by provenance, "
              "name or content (one line for the datalist)", "19", "source"),
        Check("header-voxel-size", _ERROR, "`audit --source`: a header's voxel size that is not the voxel size of the "
              "data it holds (the raw or crop level its voxels were found at); info without --source: not checked",
              "19", "source"),
        Check("source-placed", _INFO, "`audit --source`: entries placed by their voxels, their names and provenance "
              "giving no crop (one line: crop, level and offset each matched)", "19", "source"),
        Check("validation-array", _INFO, "a `validation` array, which datafold_read ignores (training trains on "
              "the fold keys)", "18"),
        # gate: config, environment and memory plan
        Check("config-invalid", _ERROR, "training config with missing keys or wrong types", "12", "gate"),
        Check("stale-config", _WARN, "config values left from elsewhere (smoke-test epochs, another GPU's batch)", "6", "gate"),
        Check("loss-unmasked", _ERROR, "loss not masked (or softmax) while annotations are partial", "1, 10", "gate"),
        Check("alloc-conf-invalid", _ERROR, "PYTORCH_CUDA_ALLOC_CONF the CUDA allocator would reject", "8", "gate"),
        Check("vram-exceeds", _ERROR, "predicted GPU memory above the target GPU", "15", "gate"),
        Check("ram-exceeds", _ERROR, "predicted host memory above --mem", "5", "gate"),
        Check("ram-headroom", _WARN, "--mem holds the worst case in flight but not its headroom", "16", "gate"),
    )
}


@dataclass
class Finding:
    """One problem found: which check, how bad, which case (None for dataset-level) and where."""

    check: str
    severity: Severity
    case: str | None
    path: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["severity"] = self.severity.value
        return out


#: The checks `cellcheck audit` makes on data (the gate adds the rest).
AUDIT_CHECKS: tuple[str, ...] = tuple(c.id for c in CHECKS.values() if c.stage == "audit")


def finding(check: str, case: str | None, path: object, message: str, *, severity: Severity | None = None,
            **details: Any) -> Finding:
    """Build a Finding with the registered severity of `check` (so severities live in one table).

    `severity` overrides it only where the table says a check depends on an option (resolution-mismatch,
    header-voxel-size).
    """
    return Finding(check, severity or CHECKS[check].severity, case, None if path is None else str(path), message, details)
