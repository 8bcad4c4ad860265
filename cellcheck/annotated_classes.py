"""Parsing `annotated_classes`: the 0-based channels a crop is annotated for, as the datalist writes them.

The field format is a string such as "0,1,2,3". MONAI's `datafold_read` joins every string
field of an entry with the base directory, so it often arrives as "/data/base/0,1,2,3";
the class list is then the basename (incident 7 in docs/INCIDENTS.md). A JSON list of ints is accepted
too; `datafold_read` joins each string item of a list, which only a caller handed its output
accepts (`path_joined_items=True`: the trainer's loss API). The audit and the trainer's data path
parse the raw datalist with the defaults, so both read a crop's classes the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence



@dataclass(frozen=True)
class AnnotatedClasses:
    """Result of parsing: `channels` (None if unparseable), whether a path was joined on, and why it failed."""

    channels: frozenset[int] | None
    mangled: bool = False
    error: str | None = None


_SEPARATORS = re.compile(r"[/\\]")


def _basename(text: str) -> str:
    return _SEPARATORS.split(text)[-1]


def parse_annotated_classes(raw: object, num_classes: int, *,
                            path_joined_items: bool = False) -> AnnotatedClasses:
    """Parse "0,1,2" (or a list of ints, or a path-joined "/base/0,1,2") into channel ids 0..num_classes-1.

    The error, when there is one, names the offending item and what is expected, for a one-line finding.
    """
    if isinstance(raw, str):
        mangled = bool(_SEPARATORS.search(raw))
        text = _basename(raw).strip()
        if not text:
            return AnnotatedClasses(frozenset(), mangled)
        tokens: Sequence[object] = [t.strip() for t in text.split(",")]
        if not all(tokens):
            return AnnotatedClasses(None, mangled, f"empty item in comma-separated list {text!r}")
    elif isinstance(raw, (list, tuple)):
        if not path_joined_items and not all(isinstance(v, int) for v in raw):
            return AnnotatedClasses(None, error=f"list holds non-integers: {raw!r:.60}")
        tokens = raw
        mangled = any(isinstance(v, str) and _SEPARATORS.search(v) for v in raw)
    else:
        return AnnotatedClasses(None, error=f"expected a string such as \"0,1,2\" or a list of channel ids, "
                                            f"got {type(raw).__name__}")
    channels = set()
    for token in tokens:
        value = _channel(token, num_classes)
        if isinstance(value, str):
            return AnnotatedClasses(None, mangled, value)
        channels.add(value)
    return AnnotatedClasses(frozenset(channels), mangled)


def _channel(token: object, num_classes: int) -> int | str:
    """One channel id from a token, or the reason it is not one."""
    if isinstance(token, bool):
        return f"{token!r} is a bool, not a class index"
    if isinstance(token, int):
        value = token
    elif isinstance(token, str):
        text = _basename(token).strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            return (f"{text!r} is not an integer class index (expected comma-separated channel ids in "
                    f"0..{num_classes - 1}, e.g. '0,1,2')")
        value = int(text)
    else:
        return f"{token!r} is not a class index"
    if not 0 <= value < num_classes:
        return (f"class index {value} is out of range 0..{num_classes - 1} "
                f"(indices are output channels, i.e. label value - 1)")
    return value
