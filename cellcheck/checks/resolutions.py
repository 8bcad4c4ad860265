"""Without --resolution: which resolutions a store's crops can train at, once per store, not once per crop.

A store whose crops are annotated at several voxel sizes (4 nm crops over 8 nm raw beside 32 nm ones, as
published) is normal: each crop then trains at its own set of resolutions, and the advice to pass
--resolution belongs in one summary line with those sets counted. A crop is worth a line of its own
only when it trains at none of the resolutions most of the store's other crops train at: whatever
resolution training picks for the others, that crop drops out (or converts blank, incident 3).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cellcheck.findings import Finding, Severity, finding
from cellcheck.grid import format_scale

Scale = tuple[float, ...]


@dataclass(frozen=True)
class CropResolutions:
    """One crop: the resolutions it trains at (finest first), and why not at its raw's s0 voxel size ('' when it does)."""

    case: str
    path: Path | str
    trainable: tuple[Scale, ...]
    raw: Scale
    why_not_raw: str = ""


def store_summary(store: str, path: Path | str, crops: Sequence[CropResolutions]) -> list[Finding]:
    """One info finding for the store (resolutions and crop counts) and a warning per crop that shares none.

    Nothing when every crop trains at its raw's s0 resolution (no crop has a `why_not_raw`).
    """
    crops = [c for c in crops if c.trainable]
    if not any(c.why_not_raw for c in crops):
        return []
    counts = Counter(_key(s) for c in crops for s in c.trainable)
    scales = {_key(s): s for c in crops for s in c.trainable}
    finest = Counter(_key(c.trainable[0]) for c in crops)
    order = sorted(counts, key=lambda k: (math.prod(k), k))  # finest first
    listing = ", ".join(f"{format_scale(scales[k])} ({counts[k]}{' crops' if i == 0 else ''})" for i, k in enumerate(order))
    read_at = ", ".join(f"{format_scale(scales[k])} for {n}" for k, n in sorted(finest.items(), key=lambda t: -t[1]))
    out = [finding(
        "resolution-mismatch", None, path,
        f"{store}: resolutions its {len(crops)} crops train at: {listing}; without --resolution each crop is read at its finest "
        f"({read_at}). Pass --resolution with the resolution you train at: a crop that cannot train there is then an "
        "error", severity=Severity.INFO, store=store,
        resolutions={format_scale(scales[k]): counts[k] for k in order},
    )]
    for c in crops:
        others = [o for o in crops if o is not c]
        shared = [k for k in order if sum(k in {_key(s) for s in o.trainable} for o in others) * 2 > len(others)]
        if not shared or {_key(s) for s in c.trainable} & set(shared):
            continue
        why = f"; at its raw's {format_scale(c.raw)} {c.why_not_raw}" if c.why_not_raw else ""
        out.append(finding(
            "resolution-mismatch", c.case, c.path,
            f"crop trains at {', '.join(format_scale(s) for s in c.trainable)} only, none of the resolutions most crops "
            f"of {store} train at ({', '.join(format_scale(scales[k]) for k in shared)}){why}. A training at any of those "
            "leaves it out; pass --resolution with the one you train at",
            severity=Severity.WARNING, trainable=[list(s) for s in c.trainable],
            shared=[list(scales[k]) for k in shared],
        ))
    return out


def _key(scale: Scale) -> tuple[float, ...]:
    """Voxel sizes written by different tools compare within 0.1 % (grid.same_scale); rounded keys do the same here."""
    return tuple(round(float(v), 2) for v in scale)
