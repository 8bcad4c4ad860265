"""`python -m trainer.probe`: the run's own data path, validation read and training step, timed phase by phase.

The measured side of `cellcheck probe` (cellcheck.probe starts it and samples its process tree from
outside): it opens the run's data as `cellcheck train` would, with the config's workers and prefetch,
and runs, each phase bounded by batches and seconds, marking where each starts and ends:

1. `base`: data opened, the network, loss and optimizer built, nothing loading (an idle rank);
2. `workers`: the config's workers forked and idle (a DataLoader over nothing);
3. `epoch`: the trainer's loader for epoch 1 in its own shuffled order: batches per second of the
   loader alone (no step waits for it), the first batch apart (it starts the workers);
4. `worst`: a datalist run's loader over its largest training crops only, so every slot in flight holds
   one of them (the store loader reads patches: its worst is its epoch);
5. `validation`: the largest validation crop read as validation reads it, window by window (host side);
6. `scoring`: the same crop scored through the network on the run's device, after one warm-up window
   (validation's time per sliding window);
7. `step`: training steps on the run's device fed by the loader, each timed from the end of the one
   before, then the network alone on one batch (with CUDA: peak allocated and reserved memory).

On a machine without CUDA the last two run the network on the CPU: their tensors are then host memory
that a GPU job keeps on its GPU, so the host-RAM comparison leaves them out.

Writes one JSON report; what it reads is never written to (the run folder gets no split, no checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from cellcheck.config import LoadedConfig, TrainConfig, load_config, parse_overrides
from cellcheck.errors import CellcheckError, run_cli
from cellcheck.files import write_atomic
from cellcheck.models.networks import build_network
from cellcheck.readers.open import open_volume
from cellcheck.readers.volume import ReadError
from trainer.data import Case, train_loader
from trainer.run_data import RunData, open_data
from trainer.stores import store_loader
from trainer.train import amp_dtype_for, build_loss, run_device, train_step
from trainer.validation import OVERLAP, score_case
from trainer.windows import tiles


class Phases:
    """Appends `{"t", "phase", "edge"}` lines to the events file, flushed, so the sampler outside can split its samples."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._write(name, "start")
        try:
            yield
        finally:
            self._write(name, "end")

    def _write(self, name: str, edge: str) -> None:
        self.fh.write(json.dumps({"t": time.time(), "phase": name, "edge": edge}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def probe(cfg: TrainConfig, events: Phases, *, batches: int, seconds: float, steps: int) -> dict[str, Any]:
    """Every phase, in order; the report (timings, crops, the device's peaks)."""
    t0 = time.time()
    with events.phase("base"):
        data = open_data(cfg, record=False)
        device = run_device(0)
        net, loss_fn, optimizer, scaler, amp = build_step(cfg, data, device)  # on CUDA: the context's host side too
        report: dict[str, Any] = {"device": str(device), "data": describe_data(data, cfg), "open_s": time.time() - t0}
        time.sleep(0.5)  # a few samples of the idle rank
    with events.phase("workers"):
        report["workers"] = idle_workers(data, cfg, report["data"])
    with events.phase("epoch"):
        report["epoch"] = time_loader(data.loader(0), batches, seconds)
    if data.train_cases:
        with events.phase("worst"):
            # twice the batches in flight: every slot is refilled with one of the largest crops at least once
            enough = min(batches, max(4, 2 * (max(1, cfg.num_workers) * cfg.prefetch_factor + 1)))
            largest = largest_cases(data.train_cases, report["data"], cfg, enough)
            report["worst"] = {**time_loader(train_loader(largest, cfg, data.rule), enough, seconds),
                               "cases": sorted({c.case for c in largest})}
    case = largest_validation(data, report["data"])
    if case is not None:
        with events.phase("validation"):
            read_windows(case, cfg)
        with events.phase("scoring"):
            report["validation"] = score(net, case, data, cfg, device, amp)
    with events.phase("step"):
        report["step"] = time_steps(net, loss_fn, optimizer, scaler, data, cfg, device, amp, steps, seconds)
    return report


def describe_data(data: RunData, cfg: TrainConfig) -> dict[str, Any]:
    """The crops the run trains and validates on, with their shapes at the training resolution (what the models read)."""
    if data.train_crops:
        train = [{"case": c.case.case, "shape": list(c.shape)} for c in data.train_crops]
        val = [{"case": v.case, "shape": list(v.shape), "windows": len(tiles(v.shape, cfg.roi_size, OVERLAP))}
               for v in data.validation]
        training = data.training.to_json() if data.training is not None else None
        return {"kind": "stores", "train": train, "validation": val, "training_set": training,
                "crops_per_batch": crops_per_batch(cfg)}
    train = [{"case": c.case, "shape": list(_shape(c))} for c in data.train_cases]
    val = [{"case": c.case, "shape": list(shape), "windows": len(tiles(shape, cfg.roi_size, OVERLAP))}
           for c, shape in ((c, _shape(c)) for c in data.validation)]
    return {"kind": "datalist", "train": train, "validation": val, "crops_per_batch": crops_per_batch(cfg)}


def crops_per_batch(cfg: TrainConfig) -> int:
    return max(1, cfg.batch_size // cfg.num_patches_per_image)


def _shape(case: Case) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in open_volume(case.image).header.shape[:3])
    except ReadError as exc:
        raise CellcheckError(str(exc)) from None


def _voxels(entries: Sequence[dict[str, Any]]) -> list[int]:
    """Voxels of each crop `describe_data` described, in its order (the cases' order): no header read again."""
    return [math.prod(e["shape"]) for e in entries]


def idle_workers(data: RunData, cfg: TrainConfig, described: dict[str, Any]) -> dict[str, Any]:
    """The config's workers, each having loaded one batch of the smallest crops, then idle for a second.

    What a worker costs once its code paths have run (imports, thread pools, allocator arenas) and before
    it holds a crop: the RAM model's worker base, as this machine has it.
    """
    workers = int(cfg.num_workers)
    if not workers:
        return {"workers": 0}
    n = workers * crops_per_batch(cfg)
    if data.train_crops:
        loader = store_loader(data.train_crops[:n], cfg.classes, cfg)
    else:
        order = np.argsort(_voxels(described["train"]), kind="stable")[:n]
        smallest = [data.train_cases[i] for i in order]
        loader = train_loader(smallest * -(-n // max(1, len(smallest))), cfg, data.rule)
    it = iter(loader)
    for _ in range(min(workers, len(loader))):
        next(it)  # every worker built its one batch; with no index left they wait
    time.sleep(1.0)
    del it, loader
    return {"workers": workers}


def time_loader(loader: DataLoader, batches: int, seconds: float) -> dict[str, Any]:
    """Batches drawn with nothing else running: the first apart (it starts the workers), then batches per second."""
    times = []
    start = time.time()
    patches = 0
    it = iter(loader)
    for i in range(min(batches, len(loader))):
        t = time.time()
        try:
            batch = next(it)
        except StopIteration:
            break
        times.append(time.time() - t)
        patches += int(batch["image"].shape[0])
        del batch
        if time.time() - start > seconds:
            break
    del it
    steady = times[1:]
    return {"batches": len(times), "epoch_batches": len(loader), "patches": patches,
            "first_batch_s": times[0] if times else None,
            "s_per_batch": float(np.mean(steady)) if steady else (times[0] if times else None),
            "seconds": time.time() - start}


def largest_cases(cases: Sequence[Case], described: dict[str, Any], cfg: TrainConfig, batches: int) -> list[Case]:
    """The training crops that fill every slot in flight, largest first, repeated to last `batches` batches."""
    per = crops_per_batch(cfg)
    slots = per * (max(1, cfg.num_workers) * (cfg.prefetch_factor if cfg.num_workers else 1) + 1)
    voxels = _voxels(described["train"])
    largest = [cases[i] for i in sorted(range(len(cases)), key=lambda i: voxels[i], reverse=True)[:slots]]
    reps = max(1, -(-batches * per // len(largest)))
    return largest * reps


def build_step(cfg: TrainConfig, data: RunData, device: torch.device):
    """The network, loss, optimizer and scaler as `cellcheck train` builds them."""
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.model, cfg.num_classes, roi_size=cfg.roi_size, deep_supervision=cfg.deep_supervision,
                        width=cfg.network_width).to(device)
    loss_fn = build_loss(cfg, data.annotated).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    amp = amp_dtype_for(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    return net, loss_fn, optimizer, scaler, amp


def largest_validation(data: RunData, described: dict[str, Any]) -> tuple[Any, tuple[int, ...]] | None:
    """The largest validation crop and its shape (None without validation crops)."""
    if not data.validation:
        return None
    pick = int(np.argmax(_voxels(described["validation"])))
    return data.validation[pick], tuple(described["validation"][pick]["shape"])


def read_windows(picked: tuple[Any, tuple[int, ...]], cfg: TrainConfig) -> None:
    """The crop held and read window by window, as validation holds and reads it, with no network."""
    crop = picked[0].validation(cfg.num_classes)
    for win in tiles(crop.shape, cfg.roi_size, OVERLAP):
        crop.read(win.lo, win.hi)
    time.sleep(0.3)  # a few samples while it is held


def score(net, picked: tuple[Any, tuple[int, ...]], data: RunData, cfg: TrainConfig, device: torch.device,
          amp) -> dict[str, Any]:
    """The crop read and scored through the network as validation does: validation's time per window.

    One window goes through the network first and is timed apart (the first call in inference mode pays
    for the allocator, cuDNN's choice of kernels or a compile): a run pays that once, not per crop."""
    case, shape = picked
    net.eval()
    t = time.time()
    with torch.inference_mode(), torch.autocast(device.type, enabled=amp is not None):
        net(torch.zeros((1, 1, *cfg.roi_size), device=device))
    _sync(device)
    warmup, start = time.time() - t, time.time()
    with torch.inference_mode():
        crop = case.validation(cfg.num_classes)
        score_case(net, crop.read, crop.shape, cfg.roi_size, cfg.num_classes, data.rule, device, amp=amp is not None)
    net.train()
    _sync(device)
    return {"case": case.case, "shape": list(shape), "voxels": math.prod(shape), "seconds": time.time() - start,
            "windows": len(tiles(shape, cfg.roi_size, OVERLAP)), "warmup_s": warmup}


def time_steps(net, loss_fn, optimizer, scaler, data: RunData, cfg: TrainConfig, device: torch.device, amp,
               steps: int, seconds: float) -> dict[str, Any]:
    """Steps fed by the loader, each timed from the end of the one before (waiting for a batch included, as the
    loop waits), the first apart (it starts the workers and warms up allocator, cuDNN, compile); then the
    network alone on one batch."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fed, batch = [], None
    start = t = time.time()
    loader = data.loader(1)
    for batch in _batches(loader, cfg.batch_size):
        train_step(net, loss_fn, optimizer, scaler, batch, device, amp, False, data.rule)
        _sync(device)
        fed.append(time.time() - t)
        t = time.time()
        if len(fed) > steps or t - start > seconds:
            break
    alone = []
    if batch is not None:
        for _ in range(3):
            t = time.time()
            train_step(net, loss_fn, optimizer, scaler, batch, device, amp, False, data.rule)
            _sync(device)
            alone.append(time.time() - t)
    out: dict[str, Any] = {"steps": len(fed), "warmup_s": fed[0] if fed else None,
                           "s_per_step_fed": float(np.mean(fed[1:])) if len(fed) > 1 else None,
                           "s_per_step_network": float(np.median(alone)) if alone else None,
                           "batch": cfg.batch_size, "roi": list(cfg.roi_size), "amp": str(amp) if amp else None}
    if device.type == "cuda":
        out["cuda"] = {"max_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
                       "max_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
                       "total_bytes": int(torch.cuda.get_device_properties(device).total_memory),
                       "name": torch.cuda.get_device_name(device)}
    return out


def _batches(loader: DataLoader, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Loader batches split into steps of `batch_size` patches, as the training loop splits them."""
    for batch in loader:
        n = batch["image"].shape[0]
        for i in range(0, n, batch_size):
            yield {k: v[i : i + batch_size] for k, v in batch.items() if isinstance(v, torch.Tensor)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.probe", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--report", required=True, type=Path, help="where the JSON report goes")
    ap.add_argument("--events", required=True, type=Path, help="phase marks, one JSON line each")
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    loaded: LoadedConfig = load_config(args.config, parse_overrides(args.overrides))
    if loaded.config is None:
        first = next(f for f in loaded.findings if f.severity.value == "error")
        raise CellcheckError(f"{loaded.source}: {first.message}")
    events = Phases(args.events)
    try:
        report = probe(loaded.config, events, batches=args.batches, seconds=args.seconds, steps=args.steps)
    finally:
        events.close()
    report["pid"] = os.getpid()
    write_atomic(args.report, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
