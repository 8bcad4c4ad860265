"""Labels that do not follow their image: a crop whose label boundaries show no intensity contrast where
the same boundaries in the dataset's other crops do (docs/INCIDENTS.md, incident 19: misaligned pairs,
labels at the wrong scale).

Per crop k and label pair p (neighbouring voxels labelled a < b) the mean intensity step across the
boundary, in units of the crop's intensity std, is c[k, p] (cellcheck.boundaries). Label 0 means
"background of the annotated classes" only: next to b it is b's unannotated neighbours where the crop
leaves them out (a lumen's membrane, the plasma membrane next to ECS), so a pair (0, b) is compared only
between crops that annotate the same of b's usual neighbours.

- Reference: R[p], the mean of c[j, p] over the *other* crops j that vote for p (at least
  `MIN_PAIR_VOXELS` boundary pairs) and look aligned (agreement >= `ALIGNED`, decided iteratively from
  all crops), so a datalist where most crops are misaligned still has the aligned ones' contrast.
- Spread: aligned crops differ in contrast (staining, blur, thin membranes blurred away), tau[p] around
  R[p], estimated among those crops and pulled towards the dataset's pooled relative spread.
- Agreement: E[k] = sum_p w c R / sum_p w R^2 with w = 1 / (sampling variance + tau^2); about 1 for a
  crop like the others, about 0 when its steps average out. sigma[k] is E's spread if there were no
  contrast at all (the sampling variance of the crop's own steps, neighbouring steps along a boundary
  being correlated: `STEP_CORRELATION`).
- Aligned crops' agreements spread too (a crop's gain); the weakest one expected in 1000 (`GAIN_QUANTILE`)
  comes from the agreements of the crops that clearly look aligned (log-normal, from their upper half).

A crop is *judgeable* when even that weakest aligned gain would stand `POWER` sigma clear of no contrast,
and it is flagged when its agreement is within `NULL` sigma of none and nearer none than that weakest gain. Small or structureless crops are left
alone, and so are crops whose contrast is real but unlike the others' (a sign the others do not share is
contrast too). When every crop is wrong there is nothing to compare with: `cellcheck audit --source` is
the check that needs no majority. Rates on two independently built raw-texture models: docs/BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from cellcheck.findings import Finding, finding
from cellcheck.stats import CaseStats

MIN_PAIR_VOXELS = 5  # boundary pairs a crop needs to vote for a label pair's reference
ALIGNED = 0.5  # agreement from which a crop's steps count towards the references
STEP_CORRELATION = 2.5  # variance of a mean step over independent steps' (neighbouring steps share noise)
PRIOR_CROPS = 10.0  # pseudo-crops pulling a pair's spread towards the pooled relative spread
MIN_SPREAD = 0.1  # a pair's mean step differs between aligned crops by at least this (image std units)
GAIN_QUANTILE = 3.09  # standard normal quantile of 1 in 1000: the weakest aligned gain to expect
POWER = 3.0  # judgeable: the weakest aligned gain stands this many sigma clear of no contrast
NULL = 2.0  # flagged: the agreement is within this many sigma of no contrast
DEFAULT_WEAKEST = 0.2  # weakest aligned gain assumed when fewer than 5 crops clearly show theirs
_NEIGHBOUR_SHARE = 0.1  # a class is b's usual neighbour when it holds this share of b's labelled boundary
_ITERATIONS = 3
_PRIOR_SURE = 20  # pseudo-crops at DEFAULT_WEAKEST when estimating the weakest aligned gain


@dataclass(frozen=True)
class Agreement:
    case: str
    agreement: float  # E: 1 like the other crops, 0 no contrast where the label changes
    sigma: float  # E's spread if the crop had no contrast at all
    weakest: float  # the weakest agreement an aligned crop of this dataset is expected to show (1 in 1000)
    boundary: int  # boundary voxel pairs behind it
    label_pairs: int  # label pairs (a, b) behind it

    @property
    def evidence(self) -> float:
        """How many sigma the weakest aligned crop would stand clear of no contrast."""
        return self.weakest / self.sigma if self.sigma > 0 else 0.0

    @property
    def judgeable(self) -> bool:
        """Enough boundary that an aligned crop and one with no contrast would look different."""
        return self.evidence >= POWER

    @property
    def flagged(self) -> bool:
        """Within NULL sigma of no contrast, and nearer none than the weakest aligned crop."""
        return self.judgeable and abs(self.agreement) < NULL * self.sigma and self.agreement < self.weakest / 2


def agreements(cases: Sequence[CaseStats]) -> list[Agreement]:
    """Agreement of every case with boundary statistics (leave-one-out references over the others)."""
    crops = [c for c in (_crop(s) for s in cases) if c is not None]
    if len(crops) < 3:
        return []
    table = _Table.of(crops)
    c, n = table.contrast, table.neff
    sig2 = STEP_CORRELATION * table.step_var[:, None] / np.maximum(n, 1)
    voter = n >= MIN_PAIR_VOXELS
    aligned = np.ones(len(crops), dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(_ITERATIONS + 1):
            E, sigma, weight = _agree(c, n, sig2, voter, voter & aligned[:, None])
            aligned = np.nan_to_num(E) >= ALIGNED
    weakest = _weakest(E, sigma)
    out = []
    for i, crop in enumerate(crops):
        if not np.isfinite(E[i]) or sigma[i] <= 0:
            continue
        used = weight[i] > 0
        out.append(Agreement(crop.case, float(E[i]), float(sigma[i]), weakest, int(n[i, used].sum()), int(used.sum())))
    return out


def label_contrast(cases: Sequence[CaseStats], shown: Mapping[str, str]) -> Iterator[Finding]:
    """label-contrast warnings: crops whose labels separate their intensities no more than chance would.

    `shown`: case -> the label path to report (as the datalist writes it).
    """
    for a in agreements(cases):
        if not a.flagged:
            continue
        yield finding(
            "label-contrast", a.case, shown.get(a.case),
            f"across {a.boundary} boundary voxel pairs of {a.label_pairs} label pairs, intensity steps are "
            f"{round(a.agreement, 2) + 0.0:.2f}x (+-{a.sigma:.2f}) those of the same boundaries in the other crops: no "
            "contrast where "
            f"the label changes, where an aligned crop of this dataset shows at least {a.weakest:.2f}x "
            f"({a.evidence:.0f} sigma clear of none). The label likely does not follow the image (misaligned, or at "
            "another voxel size); check the conversion with cellcheck audit --source",
            agreement=round(a.agreement, 3), sigma=round(a.sigma, 3), weakest_aligned=round(a.weakest, 3),
            evidence=round(a.evidence, 1), boundary_pairs=a.boundary, label_pairs=a.label_pairs,
        )


def _agree(c: np.ndarray, n: np.ndarray, sig2: np.ndarray, voter: np.ndarray, aligned: np.ndarray):
    """(E, sigma, weights) of every crop against leave-one-out references from the aligned-looking crops in
    `aligned`, or from every voter for a pair fewer than two of those hold (misalignment only dilutes it)."""
    few = (aligned.sum(0)[None, :] - aligned) < 1
    votes = np.where(few, voter, aligned)
    total = votes.sum(0)
    others = total[None, :] - votes
    mean_c = _loo(votes * c) / np.maximum(others, 1)
    mean_c2 = _loo(votes * c * c) / np.maximum(others, 1)
    mean_s2 = _loo(votes * sig2) / np.maximum(others, 1)
    ok = others >= 1
    R = np.where(ok, mean_c, 0.0)
    spread = np.maximum(mean_c2 - R * R - mean_s2, 0.0)
    pooled = _pooled_relative_spread(c, sig2, votes, total)
    tau2 = np.maximum((others * spread + PRIOR_CROPS * pooled * R * R) / (others + PRIOR_CROPS), MIN_SPREAD**2)
    w = np.where(ok & (n > 0), 1.0 / (sig2 + tau2), 0.0)
    den = (w * R * R).sum(1)
    E = np.where(den > 0, (w * c * R).sum(1) / np.maximum(den, 1e-12), np.nan)
    sigma = np.sqrt((w * w * R * R * sig2).sum(1)) / np.maximum(den, 1e-12)
    return E, sigma, w


def _loo(values: np.ndarray) -> np.ndarray:
    """Column sums over every other crop (leave-one-out)."""
    return values.sum(0)[None, :] - values


def _pooled_relative_spread(c, sig2, votes, total) -> float:
    """Median over well-supported pairs of (between-crop spread / mean)^2."""
    m = np.maximum(total, 1)
    mean = (votes * c).sum(0) / m
    spread = np.maximum((votes * c * c).sum(0) / m - mean**2 - (votes * sig2).sum(0) / m, 0.0)
    good = (total >= 20) & (np.abs(mean) > 0)
    return float(np.median(spread[good] / mean[good] ** 2)) if good.any() else 0.25


def _weakest(E: np.ndarray, sigma: np.ndarray) -> float:
    """The 1-in-1000 weakest agreement of aligned crops: a log-normal from the upper half of the crops that
    clearly show contrast (the lower half is where misaligned crops mix in)."""
    sure = np.isfinite(E) & (E > 3 * sigma) & (sigma < 0.15)
    if sure.sum() < 5:
        return DEFAULT_WEAKEST
    log = np.log(E[sure])
    middle = float(np.median(log))
    spread = float(np.percentile(log, 84)) - middle
    found = float(np.clip(np.exp(middle - GAIN_QUANTILE * spread), 0.05, 0.5))
    k = int(sure.sum())  # a few crops say little about a 1-in-1000 tail: lean on the default until there are more
    return float(np.exp((k * np.log(found) + _PRIOR_SURE * np.log(DEFAULT_WEAKEST)) / (k + _PRIOR_SURE)))


@dataclass(frozen=True)
class _Crop:
    case: str
    annotated: frozenset[int] | None  # label values annotated (None: all)
    keys: np.ndarray
    contrast: np.ndarray  # mean step per pair / image std
    neff: np.ndarray
    step_var: float  # variance of single steps around their pair's mean, / image std^2


@dataclass(frozen=True)
class _Table:
    """Crops x label pairs (a pair with 0 split by which of b's usual neighbours the crop annotates)."""

    contrast: np.ndarray
    neff: np.ndarray
    step_var: np.ndarray

    @classmethod
    def of(cls, crops: list[_Crop]) -> "_Table":
        neighbours = _usual_neighbours(crops)
        columns: dict[tuple, int] = {}
        cells = []
        for i, crop in enumerate(crops):
            for key, c, n in zip(crop.keys.tolist(), crop.contrast, crop.neff):
                a, b = divmod(int(key), 256)
                column: tuple = (a, b)
                if a == 0:
                    near = neighbours.get(b, frozenset())
                    column = (a, b, near if crop.annotated is None else near & crop.annotated)
                cells.append((i, columns.setdefault(column, len(columns)), c, n))
        contrast = np.zeros((len(crops), len(columns)))
        neff = np.zeros_like(contrast)
        for i, j, c, n in cells:
            contrast[i, j], neff[i, j] = c, n
        return cls(contrast, neff, np.array([c.step_var for c in crops]))


def _usual_neighbours(crops: list[_Crop]) -> dict[int, frozenset[int]]:
    """Label value -> the labelled classes that hold at least `_NEIGHBOUR_SHARE` of its labelled boundary."""
    share: dict[int, dict[int, float]] = {}
    for crop in crops:
        for key, n in zip(crop.keys.tolist(), crop.neff):
            a, b = divmod(int(key), 256)
            if a == 0:
                continue
            share.setdefault(a, {})[b] = share.setdefault(a, {}).get(b, 0.0) + n
            share.setdefault(b, {})[a] = share.setdefault(b, {}).get(a, 0.0) + n
    return {v: frozenset(u for u, n in d.items() if n >= _NEIGHBOUR_SHARE * sum(d.values())) for v, d in share.items()}


def _crop(s: CaseStats) -> _Crop | None:
    b = s.boundaries
    if b is None or not len(b.keys) or s.image_moments is None or not s.label_counts:
        return None
    n, total, total_sq = s.image_moments
    var = total_sq / n - (total / n) ** 2 if n else 0.0
    if var <= 0:
        return None
    std = float(np.sqrt(var))
    counts = np.array([s.label_counts.get(int(v), 0) for v in range(256)], dtype=np.float64)
    neff = np.minimum(b.count, np.minimum(counts[b.keys // 256], counts[b.keys % 256]))
    within = b.squares - float((b.total ** 2 / np.maximum(b.count, 1)).sum())  # steps around their pair's mean
    dof = float(np.maximum(b.count - 1, 0).sum())
    annotated = None if s.channels is None else frozenset(ch + 1 for ch in s.channels)
    return _Crop(s.case, annotated, b.keys, b.total / np.maximum(b.count, 1) / std, neff, within / max(dof, 1.0) / var)
