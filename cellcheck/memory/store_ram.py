"""Host RAM of the store loader: what it holds in flight, from patch and chunk sizes, never from crop sizes.

The store loader (trainer/stores.py) never loads a crop: a worker reads one patch at a time, the raw
chunks and then each class's chunks under the patch box, and hands over the patch as its uint8 image
and two packed masks. So what a job holds is fixed by the ROI, the chunk shapes of the stores and the
loader's settings, and stays flat however large the crops grow:

- a patch handed over: ROI voxels x (image bytes + 2 ceil(C/8)); a batch: crops per batch x patches;
- a worker building a batch: its patches so far, the stacked copy collate makes, and the one patch
  being read: the decompressed chunks under its box (worst alignment: ceil(extent / chunk) + 1 chunks
  per axis) and the box itself, for the raw, or for one class array (at the label level, `factor`
  label voxels per training voxel), its states and masks;
- per rank: its base, the batch in use, (prefetch - 1) finished batches per worker waiting in shared
  memory, and the validation window (one window of the ROI at a time, probabilities on the device).

    job = ranks x (rank base + batch in use + validation window
                   + workers x (worker base + building + (prefetch - 1) finished batches))

Checked against a measured store loader under `cellcheck profile` (tests/benchmarks/store_loader.py,
docs/MEMORY.md). Units: bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from cellcheck.memory.ram import HEADROOM_FRACTION, Loader, RamEstimate, slurm_mem


@dataclass(frozen=True)
class StoreReads:
    """What reading one patch touches: chunk shapes (voxels) and bytes per voxel of the raw and the label arrays.

    `label_factor`: label-level voxels per training voxel along each axis (2 when a finer level is
    mode-reduced by 2). The worst crop of the training set decides each (the gate takes the maximum).
    """

    raw_chunk: tuple[int, int, int] = (64, 128, 128)  # CellMap's raw chunks
    raw_bytes: int = 1
    label_chunk: tuple[int, int, int] = (64, 64, 64)
    label_bytes: int = 1
    label_factor: tuple[int, int, int] = (1, 1, 1)
    classes: int = 14


def _chunks_under(extent: Sequence[float], chunk: Sequence[int]) -> int:
    """Chunks a box of `extent` voxels overlaps at worst, wherever it starts: ceil((e - 1) / c) + 1 per axis."""
    return math.prod(math.ceil((e - 1) / c) + 1 for e, c in zip(extent, chunk))


def patch_bytes(roi: Sequence[int], reads: StoreReads) -> int:
    """One patch as it travels: the image and the packed present and known masks."""
    return math.prod(roi) * (reads.raw_bytes + 2 * math.ceil(reads.classes / 8))


def read_bytes(roi: Sequence[int], reads: StoreReads) -> dict[str, int]:
    """The transient of reading one patch: the raw read, or one class's read (they do not overlap), whichever is larger."""
    voxels = math.prod(roi)
    raw = _chunks_under(roi, reads.raw_chunk) * math.prod(reads.raw_chunk) * reads.raw_bytes + voxels * reads.raw_bytes
    fine = [r * f for r, f in zip(roi, reads.label_factor)]
    label = (_chunks_under(fine, reads.label_chunk) * math.prod(reads.label_chunk) * reads.label_bytes
             + math.prod(fine) * (reads.label_bytes + 1)  # the box read and its states
             + 2 * voxels)  # a class's present and known masks before they are packed
    return {"raw": int(raw), "class": int(label), "transient": int(max(raw, label))}


def predict_store_ram(roi: Sequence[int], patches: int, loader: Loader, reads: StoreReads,
                      mem_bytes: int | None = None, headroom: float = HEADROOM_FRACTION) -> RamEstimate:
    """Host RAM of a job training from the stores with `loader` (batch = crops per DataLoader batch)."""
    loader.check()
    one = patch_bytes(roi, reads)
    batch_out = loader.batch * patches * one
    transient = read_bytes(roi, reads)
    building = 2 * batch_out + transient["transient"]  # the patches, collate's stacked copy, one patch being read
    # one validation window on the host, while a validation runs
    validation = math.prod(roi) * (reads.raw_bytes + 2 * math.ceil(reads.classes / 8)) if loader.hold_validation else 0
    if loader.workers:
        per_worker = loader.worker_base_bytes + building
        waiting = loader.workers * (loader.prefetch - 1) * batch_out
        rank_side = loader.rank_base_bytes + loader.host_state_bytes + batch_out + validation + waiting
        per_rank_tree = rank_side + loader.workers * per_worker
    else:
        per_worker = 0
        rank_side = loader.rank_base_bytes + loader.host_state_bytes + building + validation
        per_rank_tree = rank_side
    peak = loader.gpus * per_rank_tree
    required = int(peak * (1 + headroom))
    breakdown = {"rank_base": loader.gpus * loader.rank_base_bytes,
                 "worker_base": loader.gpus * loader.workers * loader.worker_base_bytes,
                 "batches_building": loader.gpus * max(loader.workers, 1) * building,
                 "batches_waiting": loader.gpus * loader.workers * (loader.prefetch - 1) * batch_out,
                 "batch_in_use": loader.gpus * batch_out if loader.workers else 0,
                 "validation_window": loader.gpus * validation, "headroom": required - peak}
    return RamEstimate(
        peak_bytes=int(peak), required_bytes=required, per_rank_bytes=int(rank_side), per_worker_bytes=int(per_worker),
        slurm_mem=slurm_mem(required), fits=None if mem_bytes is None else required <= mem_bytes, mem_bytes=mem_bytes,
        sample={"patch_bytes": one, "batch_bytes": batch_out, "read": transient, "reads": asdict(reads)},
        breakdown=breakdown,
        config={"gpus": loader.gpus, "workers": loader.workers, "prefetch": loader.prefetch, "batch": loader.batch,
                "patches": patches, "roi": list(roi), "chain": "store", "headroom_fraction": headroom,
                "hold_validation": loader.hold_validation},
        worst_case={"peak_bytes": int(peak), "required_bytes": required, "slurm_mem": slurm_mem(required),
                    "note": "flat in crop size: patches and chunks, never whole crops, are in flight"},
        typical={"peak_bytes": int(peak)},
    )


def reads_of(training: Any) -> StoreReads:
    """The worst reads of a training set (`cellcheck.cellmap.trainset.TrainingSet.reads`)."""
    r = training.reads
    return StoreReads(raw_chunk=tuple(r["raw_chunk"]), raw_bytes=int(r["raw_bytes"]), label_chunk=tuple(r["label_chunk"]),
                      label_bytes=int(r["label_bytes"]), label_factor=tuple(r["label_factor"]),
                      classes=len(training.classes))
