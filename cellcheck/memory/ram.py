"""Host RAM of a DDP training job over the crops it will load: the worst case in flight, the typical one, and `--mem`.

One sample follows a loading chain (`cellcheck.memory.chains`): bytes per voxel of its crop held from
load to collate (`held`), at the chain's own peak (`peak`), and what a finished sample hands over
(`out`: per crop voxel for whole crops, a fixed patch size for chains that cut patches in the worker).

The slots in flight, per rank (DDP process), while its DataLoader runs with `workers` workers of
`prefetch` batches of `batch` crops:

- each worker owns `prefetch` outstanding batches: the newest is being built (its crops held, the
  largest at the chain's peak, or all of them plus the stacked copy at collate), the others finished
  (`out`, in shared memory, then pinned by the rank);
- the rank holds its base, the batch the step is using, and one validation volume whole.

    job = ranks x (rank base + batch in use + validation + workers x (worker base
          + (prefetch - 1) finished batches + the batch being built))

Every worker building at once is what happens at each epoch's start (persistent workers all get
their first batches together) and whenever loading is slower than the step.

- **Worst case**: the slots filled with the largest crops, the largest ones where they cost most (at
  the peak of a batch being built, then the rest of building batches, then finished ones): the sum of
  the k largest, each at its slot's bytes per voxel. `--mem` is sized from it, plus the headroom.
- **Typical**: the sampler's order simulated (`simulate`): each epoch shards the crops over the ranks
  and shuffles each shard; DataLoader batch b goes to worker b % workers, so the slots at step s are
  batches s .. s + workers x prefetch - 1. The epoch's peak is the largest window; the typical case is
  the median epoch peak, the chance an epoch crosses `--mem` the share of epochs above it.

Checked against a real DataLoader under `cellcheck profile` (tests/benchmarks/check_ram_model.py,
docs/MEMORY.md): whole-crop chains within 15 % at workers 0/2/4, and a skewed size distribution.
Units: bytes; GiB = 2**30 (SLURM's `G`), GB = 10**9 (the field notes' figures).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cellcheck.errors import CellcheckError
from cellcheck.memory.chains import Chain, Stage, dtype_bytes, template_chain, trainer_chain, transform_stages
from cellcheck.memory.gpus import GiB

__all__ = ["Chain", "Stage", "dtype_bytes", "template_chain", "trainer_chain", "transform_stages", "Crop", "Loader",
           "RamEstimate", "predict_ram", "predict_ram_over", "simulate", "slurm_mem", "measure_ram_per_sample"]

#: Host RSS of one training rank before data: Python, torch, MONAI, the CUDA runtime, cuDNN and cuBLAS
#: libraries mapped and touched, the CUDA context's host side. Commonly 2.5-5 GB for a CUDA PyTorch
#: process; 3 GiB assumed, not calibrated (the profiler measures it: `cellcheck profile`).
RANK_BASE_BYTES = 3 * GiB

#: Host RSS of one DataLoader worker before it loads a sample: a forked copy of the rank whose pages are
#: shared until touched; Python's refcounting touches the interpreter's objects. 0.5 GiB assumed.
WORKER_BASE_BYTES = GiB // 2

#: Margin on top of the worst case for what the model leaves out: glibc arenas that keep freed memory
#: in long-lived workers, page cache of the NIfTI reads charged to the job's cgroup, and the moments
#: when a batch exists both in shared memory and in its pinned copy. 10 %: the model for the field's
#: measured configuration is ~5 % below the ~222 GB observed (docs/MEMORY.md).
HEADROOM_FRACTION = 0.10

#: Epochs of the sampler's order simulated for the typical case and the chance of crossing --mem.
SIMULATED_EPOCHS = 400

#: Crops named as driving the worst case (JSON `drivers`).
DRIVERS = 10


@dataclass(frozen=True)
class Crop:
    """One case as the loader sees it: its id and voxels (as loaded), shape where known."""

    case: str
    voxels: float
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Loader:
    """The job's data side: ranks, DataLoader workers, prefetch and batch (crops), machine bases in bytes."""

    gpus: int = 1
    workers: int = 8
    prefetch: int = 2
    batch: int = 1
    hold_validation: bool = True
    rank_base_bytes: int = RANK_BASE_BYTES
    worker_base_bytes: int = WORKER_BASE_BYTES
    host_state_bytes: int = 0

    def check(self) -> None:
        if self.gpus < 1 or self.workers < 0 or self.prefetch < 1 or self.batch < 1:
            raise CellcheckError("need gpus >= 1, workers >= 0, prefetch >= 1 and batch >= 1")

    @property
    def builders(self) -> int:
        """Batches being built at once per rank: one per worker, or the rank itself without workers."""
        return max(self.workers, 1)

    @property
    def finished(self) -> int:
        """Finished batches waiting per rank when every worker builds its newest."""
        return self.workers * (self.prefetch - 1)

    def slots(self) -> int:
        """Crops in flight per rank (batches being built, finished, in use), validation not counted."""
        return (self.builders + self.finished + 1) * self.batch


@dataclass
class RamEstimate:
    """Host memory of the job (bytes), where it sits, and the SLURM request it implies."""

    peak_bytes: int  # the worst case of the whole job (all ranks and workers at their worst moment)
    required_bytes: int  # the worst case plus the headroom policy
    per_rank_bytes: int  # one rank's own peak: base, all its workers' finished batches (pinned), validation
    per_worker_bytes: int  # one DataLoader worker's own peak: base and the batch it is building
    slurm_mem: str  # required, rounded up to whole GiB, as --mem wants it
    fits: bool | None  # required <= mem, when a --mem was given
    mem_bytes: int | None
    sample: dict[str, Any]
    breakdown: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    worst_case: dict[str, Any] = field(default_factory=dict)
    typical: dict[str, Any] = field(default_factory=dict)
    crops: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "per_rank_bytes": self.per_rank_bytes,
                "per_worker_bytes": self.per_worker_bytes, "slurm_mem": self.slurm_mem,
                "required_bytes": self.required_bytes, "fits": self.fits, "mem_bytes": self.mem_bytes,
                "sample": self.sample, "breakdown": dict(self.breakdown), "config": dict(self.config),
                "worst_case": dict(self.worst_case), "typical": dict(self.typical), "crops": dict(self.crops)}


def slurm_mem(nbytes: int) -> str:
    """`--mem` value for SLURM: whole GiB with a G suffix, rounded up ('200G')."""
    return f"{max(1, math.ceil(nbytes / GiB))}G"


def resolve_chain(chain: str | Chain, image_dtype: str = "uint8", label_dtype: str = "uint8",
                  one_hot_channels: int = 0, patch_voxels: float | None = None) -> Chain:
    """A chain by name ('template', 'trainer') or as given (e.g. `chains.interpret` of a bundle)."""
    if isinstance(chain, Chain):
        return chain
    if chain == "template":
        return template_chain(image_dtype, label_dtype, one_hot_channels)
    if chain == "trainer":
        if one_hot_channels or not patch_voxels:
            raise CellcheckError("the trainer chain hands over patches (give patch_voxels) and never one-hot labels")
        return trainer_chain(image_dtype, float(patch_voxels))
    raise CellcheckError(f"unknown loading chain {chain!r}; expected template, trainer or auto3dseg")


def predict_ram(crop_shape: Sequence[float], gpus: int = 1, workers: int = 8, prefetch: int = 2, batch: int = 1,
                one_hot_channels: int = 0, image_dtype: str = "uint8", label_dtype: str = "uint8",
                val_shape: Sequence[float] | None = None, mem_bytes: int | None = None,
                host_state_bytes: int = 0, headroom: float = HEADROOM_FRACTION, hold_validation: bool = True,
                rank_base_bytes: int = RANK_BASE_BYTES, worker_base_bytes: int = WORKER_BASE_BYTES,
                chain: str | Chain = "template", patch_voxels: float | None = None) -> RamEstimate:
    """Peak host RAM of `gpus` DDP ranks with `workers` DataLoader workers of `prefetch` batches, every crop alike.

    `crop_shape` is the (mean) crop in voxels as loaded, `batch` the crops per DataLoader batch,
    `one_hot_channels` the channels of a one-hot label expansion done in the workers (0 = none),
    `val_shape` the validation volume each rank holds whole (default: the crop), `host_state_bytes`
    whatever a rank keeps on the host besides (e.g. model and optimizer state when offloaded);
    `hold_validation` False for a loop without validation. `rank_base_bytes` / `worker_base_bytes`
    replace the assumed process bases with ones measured on the node (an idle run under
    `cellcheck profile`): they are the only constants of the model that depend on the machine.
    `chain` "template" (the field's measured pipeline, whole crops), "trainer" (cellcheck's, which hands
    over `patch_voxels` voxels of patches per crop) or a `Chain`. For a dataset of crops of different
    sizes, `predict_ram_over`.
    """
    model = resolve_chain(chain, image_dtype, label_dtype, one_hot_channels, patch_voxels)
    crop = Crop("mean crop", math.prod(float(s) for s in crop_shape), tuple(int(round(s)) for s in crop_shape))
    val = Crop("validation", math.prod(float(s) for s in (val_shape or crop_shape)))
    loader = Loader(gpus, workers, prefetch, batch, hold_validation, rank_base_bytes, worker_base_bytes,
                    host_state_bytes)
    est = predict_ram_over([crop] * (loader.gpus * loader.slots()), model, loader, validation=[val] * loader.gpus,
                           mem_bytes=mem_bytes, headroom=headroom, epochs=0)
    est.config.update({"one_hot_channels": one_hot_channels, "crop_shape": [float(s) for s in crop_shape],
                       "patch_voxels": patch_voxels, "image_dtype": image_dtype, "label_dtype": label_dtype})
    return est


def _batch_cost(chain: Chain, voxels: Sequence[float]) -> tuple[float, float]:
    """(bytes while the batch is built, bytes once finished) for a batch of crops of `voxels` (none: 0)."""
    if not voxels:
        return 0.0, 0.0
    out = sum(chain.sample_out_bytes(v) for v in voxels)
    held = chain.held * sum(voxels)
    return held + max((chain.load_peak - chain.held) * max(voxels), out), out


@dataclass
class _Window:
    """One rank's slots at one moment: crops of the batches being built, finished, in use, and validation."""

    building: list[list[Crop]]
    finished: list[list[Crop]]
    in_use: list[Crop]
    validation: Crop | None


def _worst_windows(train: Sequence[Crop], validation: Sequence[Crop], loader: Loader) -> list[_Window]:
    """Each rank's slots filled with the largest crops, largest where a byte per voxel costs most.

    Each crop is in flight once at most: a dataset smaller than the slots leaves the last ones empty.
    """
    pool = iter(sorted(train, key=lambda c: c.voxels, reverse=True))

    def take(n: int) -> list[Crop]:
        return [c for c in (next(pool, None) for _ in range(n)) if c is not None]

    b, r = loader.batch, range(loader.gpus)
    lead = [take(loader.builders) for _ in r]  # at the chain's peak
    rest = [[take(b - 1) for _ in range(loader.builders)] for _ in r]
    finished = [[take(b) for _ in range(loader.finished)] for _ in r]
    in_use = [take(b) for _ in r]
    vals = sorted(validation, key=lambda c: c.voxels, reverse=True)
    return [_Window([[first, *more] for first, more in zip(lead[k], rest[k])], [f for f in finished[k] if f],
                    in_use[k], vals[k % len(vals)] if vals and loader.hold_validation else None) for k in r]


def _window_bytes(win: _Window, chain: Chain, loader: Loader) -> dict[str, float]:
    building = sum(_batch_cost(chain, [c.voxels for c in batch])[0] for batch in win.building)
    finished = sum(_batch_cost(chain, [c.voxels for c in batch])[1] for batch in win.finished)
    return {"rank_base": loader.rank_base_bytes, "host_state": loader.host_state_bytes,
            "batch_in_use": round(_batch_cost(chain, [c.voxels for c in win.in_use])[1]),
            "validation_volume": round(chain.held * win.validation.voxels) if win.validation else 0,
            "worker_base": loader.workers * loader.worker_base_bytes,
            "batches_in_flight": round(building + finished)}


def _drivers(windows: Sequence[_Window], chain: Chain, limit: int = DRIVERS) -> list[dict[str, Any]]:
    """The crops of the worst case, by the bytes each costs where it sits (summed when a small dataset cycles)."""
    rows: list[tuple[Crop, str, float]] = []
    for win in windows:
        for batch in win.building:
            first, *others = batch
            cost = _batch_cost(chain, [c.voxels for c in batch])[0] - chain.held * sum(c.voxels for c in others)
            rows.append((first, "being built, at the chain's peak", cost))
            rows += [(c, "held in a batch being built", chain.held * c.voxels) for c in others]
        rows += [(c, "finished batch", chain.sample_out_bytes(c.voxels)) for batch in win.finished for c in batch]
        rows += [(c, "batch in use", chain.sample_out_bytes(c.voxels)) for c in win.in_use]
        if win.validation:
            rows.append((win.validation, "validation volume", chain.held * win.validation.voxels))
    by_case: dict[str, dict[str, Any]] = {}
    for crop, slot, cost in rows:
        row = by_case.setdefault(crop.case, {"case": crop.case, "voxels": int(crop.voxels),
                                             "shape": list(crop.shape) if crop.shape else None, "slot": slot,
                                             "slots": 0, "bytes": 0})
        row["slots"] += 1
        row["bytes"] += int(cost)
    return sorted(by_case.values(), key=lambda row: row["bytes"], reverse=True)[:limit]


def simulate(train: Sequence[float], validation: Sequence[float], chain: Chain, loader: Loader,
             epochs: int = SIMULATED_EPOCHS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Job bytes in flight along simulated epochs: (peak of each epoch, every step's bytes).

    Each epoch the crops (`train`, voxels) are shuffled and split evenly over the ranks (the short
    shard padded from its start, as partition_dataset and DistributedSampler do) and cut into batches.
    At step s a rank uses batch s - 1 and has batches s .. s + workers x prefetch - 1 out: the newest
    one per worker is being built, the others are finished. A batch being built holds its crops, its
    largest at the chain's peak at one of the steps it is being built (drawn), at a moment of the chain
    drawn by where the chain spends its time (`Chain.moments`) at the others; at an epoch's first step
    every worker starts together, so all of them are at the chain's peak. Each rank
    holds the largest validation volume of its shard. Ranks step together (DDP): the job's bytes at
    step s are the sum over ranks.
    """
    rng = np.random.default_rng(seed)
    vox = np.asarray(train, dtype=float)
    val = np.asarray(validation, dtype=float)
    g, b = loader.gpus, loader.batch
    per_rank = -(-len(vox) // g)
    n = -(-per_rank // b)
    fixed = g * (loader.rank_base_bytes + loader.host_state_bytes + loader.workers * loader.worker_base_bytes)
    finished, builders = loader.finished, loader.builders
    share, start, top = chain.moments()
    steps = np.arange(n)
    # batch b goes to worker b % workers; in the window s .. s + workers x prefetch - 1 (cut at the epoch's
    # end) each worker builds its newest batch: the last `builders` of the window, the others are finished
    end = np.minimum(steps + finished + builders, n)
    first = np.maximum(steps, end - builders)
    slots = first[:, None] + np.arange(builders)[None, :]  # (step, worker): the batch being built
    live = slots < end[:, None]
    slots = np.minimum(slots, n - 1)
    peaks, totals = np.empty(epochs), []
    for e in range(epochs):
        order = vox[rng.permutation(len(vox))]
        total = np.full(n, float(fixed))
        for k in range(g):
            shard = np.zeros(n * b)
            shard[:per_rank] = np.resize(order[k::g], per_rank)  # the sampler pads a short shard from its start
            shard = shard.reshape(n, b)  # the last batch may be short (drop_last=False)
            lead, held = shard.max(1), chain.held * shard.sum(1)
            out = chain.out * (chain.patch_voxels * (shard > 0).sum(1) if chain.patch_voxels is not None
                               else shard.sum(1))
            at_peak = held + np.maximum((chain.load_peak - chain.held) * lead, out)
            stage = rng.choice(len(share), size=slots.shape, p=share)
            level = start[stage] + rng.random(slots.shape) * (top[stage] - start[stage])
            cost = held[slots] + (level - chain.held) * lead[slots]
            # a batch passes its peak at one of the steps it is being built; the epoch starts all workers at once
            peak_at = np.arange(builders)[None, :] == rng.integers(0, builders, size=n)[slots]
            peak_at[0] = True
            building = np.where(live, np.where(peak_at, at_peak[slots], cost), 0.0).sum(1)
            c_out = np.concatenate([[0.0], np.cumsum(out)])
            total += c_out[first] - c_out[steps] + building
            total += np.where(steps > 0, out[steps - 1], 0.0)
            if loader.hold_validation and len(val):
                total += chain.held * val[rng.permutation(len(val))][k::g].max(initial=0.0)
        peaks[e] = total.max()
        totals.append(total)
    return peaks, np.concatenate(totals) if totals else np.empty(0)


def predict_ram_over(train: Sequence[Crop], chain: Chain, loader: Loader, validation: Sequence[Crop] | None = None,
                     mem_bytes: int | None = None, headroom: float = HEADROOM_FRACTION,
                     epochs: int = SIMULATED_EPOCHS, seed: int = 0, left_out: Sequence[str] = ()) -> RamEstimate:
    """Host RAM of a job over its crops: the worst case in flight (sizes `--mem`), the typical epoch, what drives them.

    `train` are the crops the DataLoader draws from, `validation` those a rank may hold whole for
    validation (None: the training crops; [] with `hold_validation`: none), `left_out` the cases whose
    size could not be read (reported, not guessed). `epochs` simulated epochs of the sampler's order
    give the typical case and, with `mem_bytes`, the chance an epoch crosses it (0: no simulation,
    the typical case is the worst).
    """
    loader.check()
    if not train:
        raise CellcheckError("no training crop with a readable size to plan host memory for")
    val = list(train if validation is None else validation)
    # the sampler pads the ranks' shards to one length by repeating crops: the largest may be in flight twice
    padding = sorted(train, key=lambda c: c.voxels, reverse=True)[:(-len(train)) % loader.gpus]
    windows = _worst_windows([*train, *padding], val, loader)
    parts = [_window_bytes(w, chain, loader) for w in windows]
    breakdown = {key: int(sum(p[key] for p in parts)) for key in parts[0]}  # summed over ranks
    peak = sum(breakdown.values())
    required = int(peak * (1 + headroom))
    breakdown["headroom"] = required - peak
    first = windows[0]  # the first rank got the largest crops of each kind
    own = [_batch_cost(chain, [c.voxels for c in batch]) for batch in first.building + first.finished]
    # a rank's own worst: every batch of its workers finished and waiting (pinned); without workers it builds
    in_flight = sum(out for _, out in own) if loader.workers else max(building for building, _ in own)
    per_rank = (loader.rank_base_bytes + loader.host_state_bytes + parts[0]["batch_in_use"]
                + parts[0]["validation_volume"] + in_flight)
    per_worker = loader.worker_base_bytes + max(building for building, _ in own) if loader.workers else 0
    largest = max(train, key=lambda c: c.voxels)
    typical = _typical(train, val, chain, loader, epochs, seed, mem_bytes, peak)
    slots = loader.gpus * loader.slots()
    return RamEstimate(
        peak_bytes=int(peak), required_bytes=required, per_rank_bytes=int(per_rank), per_worker_bytes=int(per_worker),
        slurm_mem=slurm_mem(required), fits=None if mem_bytes is None else required <= mem_bytes, mem_bytes=mem_bytes,
        sample={"voxels": int(largest.voxels), "bytes_per_voxel": chain.held,
                "out_bytes": int(chain.sample_out_bytes(largest.voxels)),
                "peak_bytes": int(max(chain.load_peak * largest.voxels,
                                      chain.held * largest.voxels + chain.sample_out_bytes(largest.voxels))),
                "chain": chain.name, "stages": [vars(s) for s in chain.stages], "notes": list(chain.notes)},
        breakdown=breakdown,
        config={"gpus": loader.gpus, "workers": loader.workers, "prefetch": loader.prefetch, "batch": loader.batch,
                "chain": chain.name, "hold_validation": loader.hold_validation, "headroom_fraction": headroom,
                "held_bytes_per_voxel": chain.held, "peak_bytes_per_voxel": chain.load_peak,
                "out_bytes_per_voxel": chain.out, "patch_voxels": chain.patch_voxels},
        worst_case={"peak_bytes": int(peak), "required_bytes": required, "slurm_mem": slurm_mem(required),
                    "slots": slots, "distinct_crops": min(slots, len(train)),
                    "drivers": _drivers(windows, chain)},
        typical=typical,
        crops={"train": len(train), "validation": len(val) if validation is not None else 0,
               "left_out": len(left_out), "left_out_cases": list(left_out)},
    )


def _typical(train: Sequence[Crop], val: Sequence[Crop], chain: Chain, loader: Loader, epochs: int, seed: int,
             mem_bytes: int | None, worst: float) -> dict[str, Any]:
    if epochs <= 0 or len({c.voxels for c in train}) == 1 and len({c.voxels for c in val}) <= 1:
        return {"peak_bytes": int(worst), "median_step_bytes": int(worst), "epochs_simulated": 0,
                "p_epoch_exceeds_mem": None if mem_bytes is None else float(worst > mem_bytes)}
    peaks, steps = simulate([c.voxels for c in train], [c.voxels for c in val], chain, loader, epochs, seed)
    q = np.percentile(peaks, [50, 90, 99])
    return {"peak_bytes": int(q[0]), "median_step_bytes": int(np.median(steps)),
            "epoch_peak_p90_bytes": int(q[1]), "epoch_peak_p99_bytes": int(q[2]),
            "epoch_peak_max_bytes": int(peaks.max()), "epochs_simulated": epochs, "seed": seed,
            "p_epoch_exceeds_mem": None if mem_bytes is None else float(np.mean(peaks > mem_bytes))}


# --- a real measurement ---------------------------------------------------------------------------------

_MEASURE = r"""
import gc, json, sys
import numpy as np, psutil, torch
from monai.transforms import EnsureChannelFirstd, LoadImaged
from monai.networks.utils import one_hot
image, label, tiny, channels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = LoadImaged(keys=["image", "label"])
first = EnsureChannelFirstd(keys=["image", "label"])
warm = first(load({"image": tiny, "label": tiny}))          # import-time and first-call costs out of the way
if channels:
    one_hot(warm["label"][None], channels, dim=1)
del warm
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
sample = first(load({"image": image, "label": label}))
gc.collect()
loaded = proc.memory_info().rss
out = {"load_bytes": loaded - before, "image_dtype": str(sample["image"].dtype),
       "label_dtype": str(sample["label"].dtype), "shape": list(sample["image"].shape)}
if channels:
    expanded = one_hot(sample["label"][None], channels, dim=1)[0]  # float label kept, as in docs/INCIDENTS.md, incident 5
    gc.collect()
    out["one_hot_bytes"] = proc.memory_info().rss - loaded
    out["one_hot_dtype"] = str(expanded.dtype)
    out["one_hot_shape"] = list(expanded.shape)
print(json.dumps(out))
"""


def measure_ram_per_sample(shape: Sequence[int] = (128, 128, 128), one_hot_channels: int = 0,
                           workdir: Path | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Measure the RSS that MONAI LoadImaged (+ a one-hot expansion) adds for one sample, in a fresh process.

    Writes a uint8 image and label NIfTI of `shape` voxels (labels 0..C-1), loads them with LoadImaged in
    a subprocess and reports the RSS growth (bytes) after loading and after the one-hot, beside what
    `transform_stages` predicts for the same sample.
    """
    import nibabel as nib
    import numpy as np

    shape = tuple(int(s) for s in shape)
    voxels = math.prod(shape)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rng = np.random.default_rng(0)
        paths = {}
        for name, high in (("image", 256), ("label", max(one_hot_channels, 2))):
            paths[name] = os.path.join(tmp, f"{name}.nii.gz")
            data = rng.integers(0, high, size=shape, dtype=np.uint8)
            nib.save(nib.Nifti1Image(data, np.eye(4)), paths[name])
            del data
        paths["tiny"] = os.path.join(tmp, "tiny.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), paths["tiny"])
        proc = subprocess.run([sys.executable, "-c", _MEASURE, paths["image"], paths["label"], paths["tiny"],
                               str(one_hot_channels)], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement subprocess failed: {proc.stderr.strip().splitlines()[-1:]}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = transform_stages("uint8", "uint8", one_hot_channels)
    measured["voxels"] = voxels
    measured["model_load_bytes"] = int(stages[0].held * voxels)
    if one_hot_channels:
        # what the one-hot adds on top of the loaded sample while the float label is still referenced
        measured["model_one_hot_bytes"] = int(4 * one_hot_channels * voxels)
    return measured
