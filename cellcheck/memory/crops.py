"""The crops a job will load, by size, from their headers only: what the host-RAM model fills its slots with.

A datalist's cases (`Datalist.cases`: each image once) are split as MONAI's `datafold_read` splits
them: `fold == k` validates, everything else trains; without fold keys a `validation` array
validates. Each image header is read through `cellcheck.readers.open_volume` (NIfTI header, zarr
metadata; no voxels), so a 6.5e9-voxel crop costs what a small one costs. A case whose
header cannot be read is a finding naming it, and is counted as left out of the prediction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cellcheck.findings import Finding, finding
from cellcheck.memory.ram import Crop


@dataclass
class CropSizes:
    """Training and validation crops (voxels from headers), what could not be read, the voxel dtypes seen."""

    train: list[Crop] = field(default_factory=list)
    validation: list[Crop] = field(default_factory=list)
    spacings: list[tuple[float, ...]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    image_dtypes: Counter[str] = field(default_factory=Counter)
    label_dtypes: Counter[str] = field(default_factory=Counter)
    has_folds: bool = False

    @property
    def all(self) -> list[Crop]:
        return self.train + self.validation

    def dtype(self, which: str) -> str:
        """The most common image or label dtype, uint8 when none was read."""
        seen = self.image_dtypes if which == "image" else self.label_dtypes
        return seen.most_common(1)[0][0] if seen else "uint8"


def read_crop_sizes(path: Path, dataroot: Path | None = None, fold: int | None = 0) -> CropSizes:
    """Sizes of a datalist's cases from their headers; `fold` validates (None: no split)."""
    from cellcheck.datalist import load_datalist
    from cellcheck.readers import open_volume
    from cellcheck.readers.volume import ReadError

    dl = load_datalist(Path(path), dataroot)
    out = CropSizes(has_folds=any(e.has_fold for e in dl.entries if e.section == "training"))
    for entry in dl.cases.values():  # a repeated entry is the same case: sized once, as the audit counts it
        if entry.section != "training" and out.has_folds:
            continue  # beside fold keys the validation array is not read (the audit's validation-array)
        if not entry.image:
            out.left_out.append(entry.case)  # the datalist's own finding (datalist-invalid) names it
            continue
        image = dl.resolve(entry.image)
        try:
            if not image.exists():
                raise FileNotFoundError(image)
            header = open_volume(image).header
        except FileNotFoundError:
            out.findings.append(finding("missing-file", entry.case, image, "image does not exist; its size is "
                                        "left out of the host-RAM plan: fix the path or drop the entry"))
            out.left_out.append(entry.case)
            continue
        except (ReadError, OSError) as exc:
            out.findings.append(finding("unreadable", entry.case, image, f"{getattr(exc, 'reason', exc)}; its size "
                                        "is left out of the host-RAM plan"))
            out.left_out.append(entry.case)
            continue
        if len(header.shape) < 3:
            out.findings.append(finding("unreadable", entry.case, image, f"a {len(header.shape)}-D image has no "
                                        "3-D crop size; its size is left out of the host-RAM plan"))
            out.left_out.append(entry.case)
            continue
        shape = tuple(int(s) for s in header.shape[:3])
        crop = Crop(entry.case, float(math.prod(shape)) * _channels(header.shape), shape)
        validates = entry.section == "validation" or (fold is not None and out.has_folds and entry.fold == fold)
        (out.validation if validates else out.train).append(crop)
        out.spacings.append(tuple(header.spacing[:3]))
        out.image_dtypes[str(header.dtype)] += 1
        if entry.label:
            try:
                out.label_dtypes[str(open_volume(dl.resolve(entry.label)).header.dtype)] += 1
            except (ReadError, OSError):
                pass  # the audit reports the label; the image's size is what the plan needs
    return out


def _channels(shape: tuple[int, ...]) -> int:
    """Extra channels of a 4-D image (X, Y, Z, C) count as voxels; trailing 1s do not."""
    return math.prod(int(s) for s in shape[3:]) if len(shape) > 3 else 1
