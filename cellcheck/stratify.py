"""Cross-validation folds for crops (converted, or trained from the stores): every class in every fold wherever the data allow.

With partial annotation a fold that holds no crop annotated for a class cannot validate that class
(its Dice is undefined there). Folds are assigned by iterative stratification (rarest class first:
its crops go to the folds holding fewest of it), then repaired: a class annotated in at least K
crops but missing from a fold gets one of its crops moved there, from a fold holding two or more,
when the move takes no fold's last crop of another class. Deterministic: crops in name order.
"""

from __future__ import annotations

import re
from typing import Mapping


#: Folds when the user does not say: Auto3DSeg's default, fewer when a class is annotated in fewer crops.
MAX_AUTO_FOLDS = 5


def auto_folds(cases: Mapping[str, frozenset[int]], most: int = MAX_AUTO_FOLDS) -> int:
    """As many folds (2..most) as the rarest annotated class has crops, so each fold can validate every class."""
    counts = [sum(c in chans for chans in cases.values()) for c in {c for chans in cases.values() for c in chans}]
    return max(2, min(most, min(counts, default=most), len(cases)))


def natural_key(name: str) -> tuple:
    """crop2 before crop10: names compared by their numbers as numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def assign_folds(cases: Mapping[str, frozenset[int]], k: int) -> tuple[dict[str, int], list[int]]:
    """Fold (0..k'-1, k' = min(k, #cases)) of each case, and the channels not in every fold.

    `cases` maps a case to its annotated channels. A channel annotated in fewer than k' cases cannot
    be in every fold; it is listed, as is any the repair could not place.
    """
    names = sorted(cases, key=natural_key)
    k = max(1, min(k, len(names)))
    channels = sorted({c for chans in cases.values() for c in chans})
    total = {c: sum(c in cases[n] for n in names) for c in channels}
    per_fold = [dict.fromkeys(channels, 0) for _ in range(k)]
    members: list[list[str]] = [[] for _ in range(k)]
    fold: dict[str, int] = {}

    def put(name: str, f: int) -> None:
        fold[name] = f
        members[f].append(name)
        for c in cases[name]:
            per_fold[f][c] += 1

    for c in sorted(channels, key=lambda c: (total[c], c)):
        for name in names:
            if c in cases[name] and name not in fold:
                put(name, min(range(k), key=lambda f: (per_fold[f][c], len(members[f]), f)))
    for name in names:
        if name not in fold:
            put(name, min(range(k), key=lambda f: (len(members[f]), f)))
    _repair(cases, per_fold, members, fold, total, k)
    missing = sorted(c for c in channels if any(per_fold[f][c] == 0 for f in range(k)))
    return fold, missing


def _repair(cases, per_fold, members, fold, total, k) -> None:
    """Move crops into folds that lack a class they could have, without emptying another class or fold."""
    for c in sorted(total, key=lambda c: (total[c], c)):
        if total[c] < k:
            continue
        for target in range(k):
            if per_fold[target][c]:
                continue
            movable = [
                (len(cases[n]), n) for donor in range(k) if per_fold[donor][c] >= 2 and len(members[donor]) > 1
                for n in members[donor]
                if c in cases[n] and all(per_fold[donor][o] >= 2 or total[o] < k for o in cases[n] if o != c)
            ]
            if not movable:
                continue
            _, name = min(movable, key=lambda t: (t[0], natural_key(t[1])))
            donor = fold[name]
            members[donor].remove(name)
            for o in cases[name]:
                per_fold[donor][o] -= 1
            fold[name] = target
            members[target].append(name)
            for o in cases[name]:
                per_fold[target][o] += 1
