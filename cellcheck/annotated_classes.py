"""Parsing `annotated_classes`: the 0-based channels a crop is annotated for, as the datalist writes them.

The field format is a string such as "0,1,2,3". MONAI's `datafold_read` joins every string
field of an entry with the base directory, so it often arrives as "/data/base/0,1,2,3";
the class list is then the basename (FIELD_NOTES incident 7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cellcheck.classes import NUM_CLASSES


@dataclass(frozen=True)
class AnnotatedClasses:
    """Result of parsing: `channels` (None if unparseable), whether a path was joined on, and why it failed."""

    channels: frozenset[int] | None
    mangled: bool = False
    error: str | None = None


_SEPARATORS = re.compile(r"[/\\]")


def parse_annotated_classes(raw: object, num_classes: int = NUM_CLASSES) -> AnnotatedClasses:
    """Parse "0,1,2" (or a list of ints, or a path-joined "/base/0,1,2") into channel ids 0..num_classes-1."""
    if isinstance(raw, list):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            return _validated(frozenset(raw), num_classes, False, raw)
        return AnnotatedClasses(None, error=f"list holds non-integers: {raw!r:.60}")
    if not isinstance(raw, str):
        return AnnotatedClasses(None, error=f"expected a string such as \"0,1,2\", got {type(raw).__name__}")
    mangled = bool(_SEPARATORS.search(raw))
    text = _SEPARATORS.split(raw)[-1].strip() if mangled else raw.strip()
    if not text:
        return AnnotatedClasses(frozenset(), mangled)
    tokens = [t.strip() for t in text.split(",")]
    if not all(re.fullmatch(r"\d+", t) for t in tokens):
        return AnnotatedClasses(None, mangled, f"{text!r} is not a comma-separated list of channel ids")
    return _validated(frozenset(int(t) for t in tokens), num_classes, mangled, text)


def _validated(channels: frozenset[int], num_classes: int, mangled: bool, shown: object) -> AnnotatedClasses:
    bad = sorted(c for c in channels if not 0 <= c < num_classes)
    if bad:
        return AnnotatedClasses(
            None, mangled, f"channel ids {bad} out of range 0..{num_classes - 1} in {shown!r}"
        )
    return AnnotatedClasses(channels, mangled)
