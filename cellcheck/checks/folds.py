"""Cross-validation folds and the dataset as a whole: what `datafold_read` will do with this datalist.

MONAI's `datafold_read(fold=k)` takes the training entries whose `fold == k` as validation and
the rest as training; an entry without `fold` is always training. No validation case means
`ZeroDivisionError` 70 s into the job (docs/INCIDENTS.md, incident 2).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from cellcheck.classes import ClassMap
from cellcheck.datalist import Entry
from cellcheck.findings import Finding, finding
from cellcheck.grid import format_scale

if TYPE_CHECKING:
    from cellcheck.cellmap.trainset import TrainingSet

#: A class annotated in fewer cases than this (in the whole datalist) is "very few".
MIN_CASES_PER_CLASS = 2


def folds(path: Path, entries: Sequence[Entry]) -> Iterator[Finding]:
    """missing-fold (some entries lack `fold` while others have it) and empty-fold.

    Whether the datalist uses folds is read from every training entry, an invalid one too (it is
    reported as datalist-invalid): a fold key beside a misspelt `image` is still a fold key.
    """
    written = [e for e in entries if e.section == "training"]
    training = [e for e in written if e.valid]
    with_fold = [e for e in training if e.fold is not None]
    if not any(e.has_fold for e in written):
        has_validation = any(e.section == "validation" for e in entries)
        yield finding(
            "empty-fold", None, path,
            "no training entry has a 'fold' key: datafold_read(fold=0) returns 0 validation cases and training dies "
            "with ZeroDivisionError" + (" (the 'validation' array is ignored by it)" if has_validation else "")
            + "; fix: add 'fold' to every training entry (e.g. move validation cases in with fold 0)",
            fold=0,
        )
        return
    for e in training:
        if e.fold is None and not e.has_fold:
            yield finding(
                "missing-fold", e.case, path,
                f"{e.where} has no 'fold' while other entries do: it silently becomes training in every fold; add one",
                entry=e.where,
            )
    used = Counter(e.fold for e in with_fold)
    for k in range(max(used, default=-1) + 1):  # none: the entries carrying folds are all datalist-invalid
        if used[k] == 0:
            yield finding(
                "empty-fold", None, path,
                f"fold {k} has no entries (folds used: {sorted(used)}): datafold_read(fold={k}) gives 0 validation "
                "cases and ZeroDivisionError; renumber the folds",
                fold=k, folds=sorted(used),
            )


def uses_folds(entries: Sequence[Entry]) -> bool:
    """Whether datafold_read will split this datalist by `fold` (then it reads only `training`)."""
    return any(e.section == "training" and e.valid and e.fold is not None for e in entries)


def duplicates(path: Path, entries: Sequence[Entry], resolve) -> Iterator[Finding]:
    """The same image listed twice (a case in two folds leaks validation into training).

    With folds, datafold_read reads only `training`: a `validation` array beside it is never loaded, so
    its entries cannot leak (validation_array reports it); without folds both arrays are compared.
    """
    considered = [e for e in entries if e.section == "training"] if uses_folds(entries) else list(entries)
    seen: dict[Path, Entry] = {}
    for e in considered:
        if not e.image:
            continue
        key = resolve(e.image).resolve()
        first = seen.setdefault(key, e)
        if first is not e:
            folds = f" (fold {first.fold} and fold {e.fold})" if first.fold != e.fold else ""
            yield finding(
                "duplicate-case", e.case, path,
                f"{e.where} repeats the image of {first.where}{folds}; keep one entry per case",
                entries=[first.where, e.where],
            )


def validation_array(path: Path, entries: Sequence[Entry], resolve) -> Iterator[Finding]:
    """A `validation` array beside fold keys: datafold_read ignores it (the field kept one "for reference")."""
    validation = [e for e in entries if e.section == "validation" and e.image]
    if not validation or not uses_folds(entries):
        return
    training: dict[Path, Entry] = {}
    for e in entries:
        if e.section == "training" and e.image:
            training.setdefault(resolve(e.image).resolve(), e)
    copies = [e for e in validation if resolve(e.image).resolve() in training]
    fold0 = sum(1 for e in copies if training[resolve(e.image).resolve()].fold == 0)
    unused = len(validation) - len(copies)
    yield finding(
        "validation-array", None, path,
        f"the 'validation' array ({len(validation)} entries; {len(copies)} repeat training entries, {fold0} of them "
        f"fold 0) is ignored by datafold_read, which validates on the training entries of the chosen fold"
        + (f"; {unused} of its entries are in no training entry and are never used" if unused else ""),
        entries=len(validation), repeats=len(copies), fold0=fold0, unused=unused,
    )


def class_coverage(path: Path, annotated: dict[str, tuple[Entry, frozenset[int]]], classes: ClassMap) -> Iterator[Finding]:
    """Classes no validation case is annotated for (per fold), or annotated in very few cases overall."""
    per_fold: dict[object, set[int]] = defaultdict(set)
    totals = [0] * len(classes)
    folded = any(e.section == "training" and e.fold is not None for e, _ in annotated.values())
    for entry, channels in annotated.values():
        if folded and entry.section != "training":
            continue  # datafold_read never reads the validation array then
        fold = entry.fold if entry.section == "training" else "validation"
        if fold is not None:
            per_fold[fold] |= channels
        for c in channels:
            totals[c] += 1
    for fold, channels in sorted(per_fold.items(), key=lambda kv: str(kv[0])):
        missing = sorted(set(range(len(classes))) - channels)
        if missing:
            names = [classes.names[c] for c in missing]
            where = f"fold {fold}" if fold != "validation" else "the validation list"
            yield finding(
                "class-coverage", None, path,
                f"{', '.join(names)} annotated in no case of {where}: its validation Dice is undefined there; "
                "move an annotated case into it",
                fold=fold, channels=missing,
            )
    few = [c for c, n in enumerate(totals) if 0 < n < MIN_CASES_PER_CLASS]
    if few:
        yield finding(
            "class-coverage", None, path,
            f"{', '.join(classes.names[c] for c in few)} annotated in fewer than {MIN_CASES_PER_CLASS} cases",
            channels=few, cases={classes.names[c]: totals[c] for c in few},
        )


def store_coverage(where: str, training: "TrainingSet", classes: ClassMap) -> Iterator[Finding]:
    """Classes of the map no training crop is annotated for (their channel never learns), or no validation crop."""
    trained = {n for c in training.train for n in c.classes}
    validated = {n for c in training.validate for n in c.classes}
    never = [n for n in classes.names if n not in trained]
    if never:
        yield finding("class-coverage", None, where,
                      f"{', '.join(never)} annotated in no training crop at {format_scale(training.resolution)}: "
                      "its channel never learns; drop it from classes, or add crops that annotate it",
                      classes=never)
    unseen = [n for n in classes.names if n in trained and n not in validated]
    if unseen and training.validate:
        yield finding("class-coverage", None, where,
                      f"{', '.join(unseen)} annotated in no validation crop: its validation Dice is undefined; "
                      "move a crop that annotates it into validation", classes=unseen)
