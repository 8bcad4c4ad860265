"""Convert one crop: plan it, skip it when its record is current, else stream its image and label to NIfTI.

Files are first written (atomically) into `OUT/provenance/.staging`, then the record naming their
hashes, then they are moved into `imagesTr/` and `labelsTr/`: whatever point a run is killed at,
the next run finds either the old files or the new ones, each listed in a record, and redoes the case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cellcheck.cellmap.plan import CropPlan, Refused, plan_crop
from cellcheck.cellmap.render import Renderer
from cellcheck.cellmap.stores import open_store
from cellcheck.checks import case_size, image_content
from cellcheck.convert.nifti import NiftiStream, affine
from cellcheck.convert.options import Options
from cellcheck.convert.records import (
    RECORDS, STAGING, Record, file_of, load_record, settings_of, signature, write_record,
)
from cellcheck.findings import Finding, finding
from cellcheck.grid import format_scale
from cellcheck.readers.volume import ReadError
from cellcheck.files import write_atomic

IMAGES, LABELS = "imagesTr", "labelsTr"


@dataclass(frozen=True)
class Job:
    case: str
    store: Path
    crop: str
    out: Path
    opts: Options
    max_bytes: int


@dataclass
class Outcome:
    """A converted (or already current) case with its record, or the finding that refused it."""

    case: str
    record: Record | None = None
    refused: Finding | None = None
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    present: frozenset[int] | None = None  # channels its metadata does not declare empty (the folds spread these)


def output_paths(case: str) -> tuple[str, str]:
    return f"{IMAGES}/{case}.nii.gz", f"{LABELS}/{case}.nii.gz"


def convert_case(job: Job) -> Outcome:
    """Convert one crop (runs in a worker process: it opens what it needs)."""
    try:
        store = open_store(job.store)
        crop = store.open_crop(job.crop, only=job.opts.classes.names)
        plan = plan_crop(job.case, store, crop, job.opts)
        _refuse_oversized(job, crop, plan)
        sig = signature(store, crop, plan)
        previous = load_record(job.out, job.case)
        outcome = (Outcome(job.case, previous, skipped=True) if _current(job, previous, sig)
                   else _write(job, store, crop, plan, sig, previous))
        if outcome.record is not None:
            names = [job.opts.classes.names[c] for c in outcome.record.channels]
            outcome.present = frozenset(job.opts.classes.channels_of(crop.present(names)))
        return outcome
    except Refused as exc:
        return Outcome(job.case, refused=exc.finding)
    except ReadError as exc:
        return Outcome(job.case, refused=finding("unreadable", job.case, exc.path, f"{exc.reason}; re-download this crop"))


def _refuse_oversized(job: Job, crop, plan: CropPlan) -> None:
    """Refuse, from metadata, a case whose loaded sample would exceed --case-budget (the audit's oversized-case)."""
    for f in case_size.oversized(job.case, crop.path, plan.voxels, job.opts.case_budget):
        raise Refused(finding("oversized-case", job.case, crop.path,
                              f"{f.message.split(';')[0]} at {format_scale(job.opts.resolution)}: not converted; "
                              "raise --case-budget to convert it anyway (memory stays bounded while converting)",
                              **f.details))


def _current(job: Job, record: Record | None, sig: str) -> bool:
    return (record is not None and record.signature == sig and record.settings == settings_of(job.opts)
            and record.image.matches(job.out) and record.label.matches(job.out))


def _write(job: Job, store, crop, plan: CropPlan, sig: str, previous: Record | None) -> Outcome:
    out = job.out
    img_rel, lab_rel = output_paths(job.case)  # the caller made sure they are ours to replace (_check_out)
    stage = out / RECORDS / STAGING
    stage.mkdir(parents=True, exist_ok=True)
    staged = {"image": stage / f"{job.case}.image.nii.gz", "label": stage / f"{job.case}.label.nii.gz"}
    renderer = Renderer(plan, store, crop, job.opts.classes, job.max_bytes)
    aff = affine(plan.spacing, plan.origin)
    hashes: dict[str, str] = {}
    try:
        _stream(staged, plan, renderer, aff, plan.classes, hashes, image=True)
        raw_path = Path(store.raw.path) / plan.raw_level.path
        blank = list(image_content.image_content(job.case, raw_path, renderer.totals.image_scan(plan.shape, "uint8")))
        if blank:  # nothing to learn from, and CropForegroundd crashes on a constant image
            raise Refused(blank[0])
        counts = renderer.totals.counts
        annotated = [n for n in plan.classes if counts[n].annotated and not counts[n].partly_unknown]
        dropped = {n: ("entirely unknown" if not counts[n].annotated else
                       f"{counts[n].unknown} of {counts[n].voxels} voxels unknown")
                   for n in plan.classes if n not in annotated}
        if not annotated:
            raise Refused(finding(
                "empty-annotation", job.case, crop.path,
                f"no training class of this crop is annotated here ({'; '.join(f'{n}: {w}' for n, w in dropped.items())}); "
                "annotate it or drop it", classes=list(plan.classes)))
        if any(counts[n].present for n in dropped):
            # a partly unknown class is not annotated here: its voxels must not be in the label either
            renderer.totals.counts, renderer.totals.conflicts = {}, 0
            _stream(staged, plan, renderer, aff, tuple(annotated), hashes, image=False)
        record = Record(
            case=job.case, store=str(Path(store.path).resolve()), store_name=store.path.name, crop=crop.id,
            settings=settings_of(job.opts), signature=sig, plan=plan.describe(), annotated=annotated,
            channels=sorted(job.opts.classes.label_value[n] - 1 for n in annotated), dropped=dropped,
            image=file_of(img_rel, hashes["image"], staged["image"]),
            label=file_of(lab_rel, hashes["label"], staged["label"]),
            owned=_owned(previous, hashes), notes=_notes(plan, renderer, dropped),
        )
        write_record(out, record)
        for role, rel in (("image", img_rel), ("label", lab_rel)):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged[role], out / rel)
        return Outcome(job.case, record, notes=record.notes)
    finally:
        for p in staged.values():
            p.unlink(missing_ok=True)


def _stream(staged: dict[str, Path], plan: CropPlan, renderer: Renderer, aff, write: tuple[str, ...],
            hashes: dict[str, str], image: bool) -> None:
    """Render the plan into the staged label (and image) files, slab by slab, each written atomically."""
    shape = plan.shape

    def fill_label(fl) -> None:
        lab = NiftiStream(fl, shape, "uint8", aff)
        if not image:
            for _, _, label in renderer.slabs(write, image=False):
                lab.write(label)
            hashes["label"] = lab.close()
            return

        def fill_image(fi) -> None:
            img = NiftiStream(fi, shape, "uint8", aff)
            for _, data, label in renderer.slabs(write):
                img.write(data)
                lab.write(label)
            hashes["image"] = img.close()

        write_atomic(staged["image"], fill_image)
        hashes["label"] = lab.close()

    write_atomic(staged["label"], fill_label)


def _owned(previous: Record | None, hashes: dict[str, str]) -> list[str]:
    """The new files' hashes, then those of the files they replace (a run killed mid-move leaves those)."""
    old = [] if previous is None else [previous.image.sha256, previous.label.sha256, *previous.owned]
    out: list[str] = []
    for h in [hashes["image"], hashes["label"], *old]:
        if h not in out:
            out.append(h)
    return out[:8]


def _notes(plan: CropPlan, renderer: Renderer, dropped: dict[str, str]) -> list[str]:
    notes = []
    if plan.clipped:
        notes.append(f"clipped to the raw volume: {plan.clipped['before']} voxels dropped before, "
                     f"{plan.clipped['after']} after (z, y, x); the dropped part is not in the output")
    for name, why in dropped.items():
        notes.append(f"{name} not in annotated_classes ({why})")
    if renderer.totals.conflicts:
        notes.append(f"{renderer.totals.conflicts} label voxels claimed by two classes (the later one in the class map kept)")
    return notes
