"""Counts in prose: '1 epoch', '2 epochs', '1 info'; why: every line a person reads says its numbers right."""

from __future__ import annotations

#: Nouns whose plural is not the noun + 's' (or that have none).
_PLURALS = {"info": "info", "process": "processes", "case": "cases", "class": "classes"}


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 epoch', '3 epochs'; `plural` for a noun the table does not know."""
    return f"{n} {noun if n == 1 else plural or _PLURALS.get(noun, noun + 's')}"
