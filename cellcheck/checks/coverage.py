"""The coverage plan: per class, the crops that annotate it, those it is present in, and how often the sampler draws it.

A class can be annotated in every crop and present in none (the challenge's `ribo`: training died with
"No valid training datasets found"), present in training crops only (its validation Dice is then
undefined), or so rare at the patch size that the sampler almost never draws it. From the audit's
per-crop voxel counts and the run's split, before a step runs:

- `class-empty` (error): annotated in training crops, present in none of them: its loss can only teach
  "absent";
- `class-coverage` (warning): present in training crops, annotated in validation crops, present in
  none of those (a class annotated in no validation crop is the audit's class-coverage already);
- per class, the patches per epoch expected to hold it. Both of the trainer's samplers draw
  `num_patches_per_image` patches per crop per epoch, a share `foreground_ratio` of them centred on a
  foreground voxel (or block) drawn evenly, so a crop gives a class patches x ratio x (its voxels / the
  crop's foreground) centred on it; a crop no larger than the ROI gives it every patch. Patches that
  merely overlap it are not counted: a floor, not an average.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from cellcheck.classes import ClassMap
from cellcheck.datalist import Datalist
from cellcheck.findings import Finding, finding
from cellcheck.stats import CaseStats

if TYPE_CHECKING:
    from cellcheck.cellmap.trainset import TrainingSet


@dataclass(frozen=True)
class Sampling:
    """What the trainer's sampler draws: the ROI, patches per crop per epoch and the foreground share."""

    roi: tuple[int, ...]
    patches: int = 1
    foreground_ratio: float = 0.7


@dataclass
class ClassCoverage:
    """One class over the run's split."""

    name: str
    annotated: int  # training crops annotating it
    present: int  # of those, the crops where it has voxels
    voxels: int  # its voxels over the training crops
    patches_per_epoch: float  # patches per epoch centred on it (or holding it whole), at least
    validation_annotated: int
    validation_present: int
    stale_counts: int = 0  # its arrays whose complement_counts disagree with the voxels (annotation-metadata)


@dataclass
class CoveragePlan:
    """The plan of one split, and what it was made of (for the report)."""

    split: str
    sampling: Sampling
    classes: list[ClassCoverage]

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "roi": list(self.sampling.roi), "patches_per_crop": self.sampling.patches,
                "foreground_ratio": self.sampling.foreground_ratio, "classes": [asdict(c) for c in self.classes]}


def coverage_plan(train: Sequence[CaseStats], validation: Sequence[CaseStats], classes: ClassMap, sampling: Sampling,
                  split: str, stale: Mapping[str, int] | None = None) -> CoveragePlan:
    """Class by class over the split's crops (crops without voxel counts, which cannot train, count nowhere)."""
    train = [c for c in train if c.label_counts is not None]
    validation = [c for c in validation if c.label_counts is not None]
    rows = []
    for channel, name in enumerate(classes.names):
        value = channel + 1
        annotating = [c for c in train if _annotates(c, channel)]
        present = [c for c in annotating if _voxels(c, value)]
        val = [c for c in validation if _annotates(c, channel)]
        rows.append(ClassCoverage(
            name, len(annotating), len(present), sum(_voxels(c, value) for c in present),
            round(sum(_patches(c, value, classes, sampling) for c in present), 4),
            len(val), sum(1 for c in val if _voxels(c, value)), int((stale or {}).get(name, 0))))
    return CoveragePlan(split, sampling, rows)


def plan_findings(plan: CoveragePlan, where: str | Path) -> Iterable[Finding]:
    """class-empty for a class annotated for training and present nowhere in it; class-coverage for one
    annotated in validation crops and present in none of them."""
    for c in plan.classes:
        if c.annotated and not c.present:
            yield empty_class(c, where, f"training crop{_s(c.annotated)} and present in none of them ({plan.split})")
        elif c.present and c.validation_annotated and not c.validation_present:
            yield finding("class-coverage", None, where,
                          f"{c.name} is present in {c.present} training crop{_s(c.present)} but in none of the "
                          f"{c.validation_annotated} validation crop{_s(c.validation_annotated)} annotating it "
                          f"({plan.split}): its validation Dice is undefined; move a crop where it is present "
                          "into validation", **{"class": c.name, "validation_annotated": c.validation_annotated})


def empty_classes(cases: Sequence[CaseStats], classes: ClassMap, where: str | Path,
                  stale: Mapping[str, int] | None = None) -> Iterable[Finding]:
    """class-empty over the whole dataset: annotated somewhere and present nowhere, so empty in every split."""
    plan = coverage_plan(cases, (), classes, Sampling((1, 1, 1)), "every split", stale)
    for c in plan.classes:
        if c.annotated and not c.present:
            yield empty_class(c, where, f"crop{_s(c.annotated)} and present in none")


def empty_class(c: ClassCoverage, where: str | Path, scope: str) -> Finding:
    return finding("class-empty", None, where,
                   f"{c.name} is annotated in {c.annotated} {scope}: "
                   "its loss can only teach 'absent' (a loader that needs a positive voxel finds no valid crop); "
                   "drop it from classes, or add crops where it is present",
                   **{"class": c.name, "annotated": c.annotated})


def datalist_split(datalist: Datalist, stats: Sequence[CaseStats], fold: int) -> tuple[list[CaseStats], list[CaseStats]]:
    """The trainer's split of a datalist (MONAI datafold_read): training entries with `fold == k` validate."""
    by_case = {s.case: s for s in stats}
    train, val = [], []
    for e in datalist.cases.values():
        if e.section == "training" and e.valid and e.case in by_case:
            (val if e.fold == fold else train).append(by_case[e.case])
    return train, val


def store_split(training: "TrainingSet", stats: Sequence[CaseStats]) -> tuple[list[CaseStats], list[CaseStats]]:
    """A store run's split: each crop's statistics, restricted to the classes it is trained for."""
    by_label = {(Path(s.label_path).resolve() if s.label_path else None): s for s in stats}
    out: dict[str, list[CaseStats]] = {"train": [], "validate": []}
    for case in training.cases:
        found = next((s for p, s in by_label.items() if p is not None and p.name == case.crop
                      and p.is_relative_to(Path(case.store).resolve())), None)
        if found is None:
            continue
        trained = {i for i, n in enumerate(training.classes) if n in case.classes}
        channels = trained if found.channels is None else trained & set(found.channels)
        counts = None if found.label_counts is None else {v: n for v, n in found.label_counts.items() if v - 1 in channels}
        out[case.usage].append(CaseStats(case=case.case, channels=frozenset(channels), label_counts=counts,
                                         label_voxels=found.label_voxels, image_shape=found.image_shape))
    return out["train"], out["validate"]


def stale_counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Arrays per class whose complement_counts the audit found stale."""
    out: dict[str, int] = {}
    for f in findings:
        name = f.details.get("class") if f.check == "annotation-metadata" else None
        if name and "counted" in f.details:
            out[name] = out.get(name, 0) + 1
    return out


def render(plan: CoveragePlan) -> list[str]:
    """The plan as text lines: a header and a table."""
    s = plan.sampling
    lines = [f"coverage ({plan.split}; {s.patches} patch{'es' if s.patches != 1 else ''} of "
             f"{'x'.join(map(str, s.roi))} per crop and epoch, {s.foreground_ratio:.0%} on foreground):",
             f"  {'class':<12} {'annotated':>9} {'present':>7} {'voxels':>12} {'patches/epoch':>13} "
             f"{'val annotated':>13} {'val present':>11}  complement_counts"]
    for c in plan.classes:
        counts = "ok" if not c.stale_counts else f"{c.stale_counts} stale"
        lines.append(f"  {c.name:<12} {c.annotated:>9} {c.present:>7} {c.voxels:>12} {c.patches_per_epoch:>13.3g} "
                     f"{c.validation_annotated:>13} {c.validation_present:>11}  {counts}")
    return lines


def _annotates(case: CaseStats, channel: int) -> bool:
    return case.channels is None or channel in case.channels


def _voxels(case: CaseStats, value: int) -> int:
    return int((case.label_counts or {}).get(value, 0))


def _patches(case: CaseStats, value: int, classes: ClassMap, sampling: Sampling) -> float:
    """Patches per epoch of this crop centred on the class, or all of them where the crop fits in the ROI."""
    shape = case.image_shape[:3] if case.image_shape else None
    if shape is not None and all(n <= r for n, r in zip(shape, sampling.roi)):
        return float(sampling.patches)
    foreground = sum(_voxels(case, v) for v in range(1, len(classes) + 1))
    return sampling.patches * sampling.foreground_ratio * _voxels(case, value) / max(foreground, 1)


def _s(n: int) -> str:
    return "s" if n != 1 else ""
