"""Partial annotation: which classes each case is annotated for, and whether the voxels agree.

Getting this wrong trains "unannotated = absent" (docs/INCIDENTS.md, incident 1); an empty list makes a case
useless (4); MONAI's datafold_read path-joins the list (7); CellMap metadata can go stale (13).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from cellcheck.annotated_classes import AnnotatedClasses, parse_annotated_classes
from cellcheck.classes import ClassMap, canonical_names
from cellcheck.findings import Finding, finding


def annotated_classes(case: str, path: Path, raw: object, num_classes: int) -> tuple[AnnotatedClasses, list[Finding]]:
    """Parse an entry's `annotated_classes` (channels 0..num_classes-1): empty-annotation, -invalid, -mangled."""
    parsed = parse_annotated_classes(raw, num_classes)
    out: list[Finding] = []
    if parsed.mangled:
        out.append(
            finding(
                "annotated-classes-mangled", case, path,
                f"annotated_classes {raw!r:.80} has a path joined on (MONAI datafold_read); "
                "read its basename or keep the field out of datafold_read's path keys",
                value=str(raw),
            )
        )
    if parsed.error:
        out.append(finding("annotated-classes-invalid", case, path, f"annotated_classes: {parsed.error}", value=str(raw)))
    elif parsed.channels is not None and not parsed.channels:
        out.append(
            finding("empty-annotation", case, path,
                    "annotated_classes is empty: no class can be learned from this case; annotate it or drop it")
        )
    return parsed, out


def unannotated_present(case: str, path: Path, counts: dict[int, int], channels: Iterable[int],
                        classes: ClassMap) -> Iterator[Finding]:
    """Label voxels of classes the case is not annotated for (they would be masked out of the loss)."""
    annotated = set(channels)
    extra = sorted(v for v, n in counts.items() if 1 <= v <= len(classes) and n and (v - 1) not in annotated)
    if extra:
        names = [classes.names[v - 1] for v in extra]
        yield finding(
            "unannotated-label-present", case, path,
            f"voxels of {', '.join(names)} (label values {extra}) although not listed as annotated; "
            "add them to annotated_classes or clear them",
            label_values=extra, voxels={str(v): int(counts[v]) for v in extra},
        )


def unannotated_canonical(case: str, path: Path, counts: dict[int, int], listed: Iterable[str]) -> Iterator[Finding]:
    """Canonical ids in a crop's `all` whose class the crop does not list (`all` holds only annotated classes)."""
    names = canonical_names()
    listed = set(listed)
    extra = sorted(v for v, n in counts.items() if v in names and n and names[v] not in listed)
    if extra:
        yield finding(
            "unannotated-label-present", case, path,
            f"'all' holds {', '.join(names[v] for v in extra)} (ids {extra}) although the crop does not annotate "
            "them; add them to class_names or clear them",
            label_values=extra, voxels={str(v): int(counts[v]) for v in extra},
        )


def crop_class_names(case: str, path: Path, class_names: list[str] | None, groups: Iterable[str]) -> Iterator[Finding]:
    """CellMap `class_names` that name no sub-group, or sub-groups not in `class_names`."""
    if class_names is None:
        return
    groups = set(groups)
    missing = sorted(set(class_names) - groups)
    unlisted = sorted(groups - set(class_names))
    if missing or unlisted:
        yield finding(
            "annotation-metadata", case, path,
            f"class_names disagree with the crop's groups (listed without a group: {missing}; groups not listed: {unlisted})",
            listed_without_group=missing, groups_not_listed=unlisted,
        )


def complement_counts(case: str, path: Path, declared: dict[str, int] | None, counts: dict[int, int],
                      encoding: dict[str, int], name: str | None = None) -> Iterator[Finding]:
    """`complement_counts` (absent / unknown voxel counts) that disagree with the array (of class `name`)."""
    if declared is None:
        return
    actual = {k: int(counts.get(encoding[k], 0)) for k in declared if k in encoding}
    wrong = {k: (declared[k], actual[k]) for k in actual if declared[k] != actual[k]}
    if wrong:
        text = ", ".join(f"{k} {d} declared vs {a} counted" for k, (d, a) in wrong.items())
        yield finding(
            "annotation-metadata", case, path,
            f"complement_counts are stale ({text}); regenerate the metadata",
            declared={k: d for k, (d, _) in wrong.items()}, counted={k: a for k, (_, a) in wrong.items()},
            **({"class": name} if name else {}),
        )
