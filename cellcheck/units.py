"""Byte sizes as SLURM and users write them (`512G`, `8GiB`, `200000M`)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    """'8G' -> 8 GiB in bytes; SLURM's suffixes are binary. Raises ValueError on anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r} is not a size such as 512G, 8GiB or 2000M")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def has_unit(text: str) -> bool:
    """Whether a size says its unit ('512G', '8GiB', '100B'), rather than a bare number ('5')."""
    return re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", str(text)) is None


def parse_size(text: str) -> int:
    """Bytes of a size that says its unit ('512G', '16M', '100B'); a bare number is refused (ValueError).

    Why: SLURM reads `--mem 5` as 5 MB, most tools as 5 bytes, a person often as 5 GB; only a unit says.
    """
    if not has_unit(text):
        raise ValueError(f"{str(text).strip()!r} has no unit; write it with one, such as {str(text).strip()}G or "
                         f"{str(text).strip()}M")
    return parse_bytes(text)
