"""Labels that do not follow their image: a crop whose label boundaries show far less contrast than the
same boundaries in the dataset's other crops (docs/INCIDENTS.md, incident 19: misaligned pairs, labels at the wrong scale).

Statistic, per crop k and label pair p (neighbouring voxels labelled a < b): the mean intensity step
across the boundary, in units of the crop's intensity std, c[k, p]. The reference R[p] is the mean of
c[j, p] over the *other* crops j that have at least `MIN_PAIR_VOXELS` voxels on such a boundary (each
crop one vote, so a few large crops cannot set it), used only when at least two other crops and
`MIN_SUPPORT` voxels stand behind it. The crop's agreement is the least-squares slope of its steps on
the reference,

    E[k] = sum_p n[k, p] c[k, p] R[p] / sum_p n[k, p] R[p]^2,   n = min(boundary pairs, voxels of a, of b),

about 1 for a crop like the others and about 0 when its label is shifted against its image (steps
average out). The evidence, sum_p n R^2 / sqrt(sum_p n R^2 s^2) (s^2: the crop's variance of single
steps), is the z-score an aligned crop would reach: only a crop with evidence >= `MIN_EVIDENCE` and
E < `MAX_AGREEMENT` is flagged, so small or structureless crops (all one class) are left alone.
Misalignment can only remove contrast, never add it, so the reference stays usable even when most
crops are wrong (their steps are ~0 and dilute R, the right ones then score above 1). When every crop
is wrong there is nothing to compare with: `cellcheck audit --source` is the check that needs no
majority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from cellcheck.findings import Finding, finding
from cellcheck.stats import CaseStats

MAX_AGREEMENT = 0.2
MIN_EVIDENCE = 5.0
MIN_PAIR_VOXELS = 5
MIN_SUPPORT = 30


@dataclass(frozen=True)
class Agreement:
    case: str
    agreement: float  # E: 1 like the other crops, 0 no contrast where the label changes
    evidence: float  # z-score an aligned crop with the dataset's contrast would reach

    @property
    def flagged(self) -> bool:
        return self.evidence >= MIN_EVIDENCE and self.agreement < MAX_AGREEMENT


def agreements(cases: Sequence[CaseStats]) -> list[Agreement]:
    """E and evidence of every case with boundary statistics (leave-one-out reference over the others)."""
    crops = [c for c in (_crop(s) for s in cases) if c is not None]
    if len(crops) < 3:
        return []
    keys = np.unique(np.concatenate([c.keys for c in crops]))
    index = {int(k): i for i, k in enumerate(keys)}
    contrast = np.zeros((len(crops), len(keys)))
    weight = np.zeros((len(crops), len(keys)))
    voters = np.zeros((len(crops), len(keys)))
    for i, c in enumerate(crops):
        cols = [index[int(k)] for k in c.keys]
        contrast[i, cols] = c.contrast
        weight[i, cols] = c.neff
        voters[i, cols] = c.neff >= MIN_PAIR_VOXELS
    votes, summed, support = voters.sum(0), (voters * contrast).sum(0), (voters * weight).sum(0)
    out = []
    for i, c in enumerate(crops):
        n_votes = votes - voters[i]
        ok = (n_votes >= 2) & (support - voters[i] * weight[i] >= MIN_SUPPORT)
        ref = np.where(ok, (summed - voters[i] * contrast[i]) / np.maximum(n_votes, 1), 0.0)
        n = weight[i]
        den = float((n * ref * ref).sum())
        if den <= 0 or c.step_var <= 0:
            continue
        out.append(Agreement(c.case, float((n * contrast[i] * ref).sum() / den), den / np.sqrt(den * c.step_var)))
    return out


def label_contrast(cases: Sequence[CaseStats], shown: Mapping[str, str]) -> Iterator[Finding]:
    """label-contrast warnings: crops whose labels separate their intensities far less than the other crops'.

    `shown`: case -> the label path to report (as the datalist writes it).
    """
    for a in agreements(cases):
        if not a.flagged:
            continue
        yield finding(
            "label-contrast", a.case, shown.get(a.case),
            f"intensity steps across this label's boundaries are {a.agreement:.2f}x those of the same boundaries in the "
            f"other crops (an aligned crop would show ~1, and with this much boundary ~{a.evidence:.0f} sigma of it): "
            "the label likely does not follow the image (misaligned, or at another voxel size); check the conversion "
            "with cellcheck audit --source",
            agreement=round(a.agreement, 3), evidence=round(a.evidence, 1),
        )


@dataclass(frozen=True)
class _Crop:
    case: str
    keys: np.ndarray
    contrast: np.ndarray  # mean step per pair / image std
    neff: np.ndarray
    step_var: float  # variance of single steps around their pair's mean, / image std^2


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
    return _Crop(s.case, b.keys, b.total / np.maximum(b.count, 1) / std, neff, within / max(dof, 1.0) / var)
