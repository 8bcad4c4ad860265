"""Predicted versus measured host memory of a real DataLoader pipeline, run under `cellcheck profile`.

The measurement: `loader_pipeline.py` (MONAI Dataset + torch DataLoader, Auto3DSeg's loading chain
or cellcheck's trainer's) over crops written by the fixture generator, run as `cellcheck profile
--output ... -- python loader_pipeline.py ...`; measured = the peak over samples of the process tree's
footprint: PSS summed over the main process and its DataLoader workers, plus the shared memory of
finished batches that no process maps yet (PSS alone is reported beside it).

The prediction: `cellcheck.memory.ram.predict_ram` for the same chain, crop shape, workers,
prefetch and batch. For a skewed mix of crop sizes (`LoaderConfig.mix`: many small crops, a few
large ones) each run is one epoch in a shuffled order (a different seed per run), and the prediction
is `predict_ram_over` on the crops' header sizes: its worst case must hold every run's peak, its
typical case (the median simulated epoch peak) is compared with the median of the runs' peaks.
The model's two machine-dependent constants, the memory of an idle rank and of an idle worker, are
measured first on tiny crops (16^3, where data is negligible): a run with no workers gives the rank
base, a run with two workers adds two worker bases. Everything else (bytes per voxel through the
chain, batches in flight per worker, the collate copy, the batch the step holds) is the model's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from cellcheck.memory.ram import Crop, Loader, predict_ram, predict_ram_over, template_chain

PIPELINE = Path(__file__).with_name("loader_pipeline.py")
CALIBRATION_SIZE = 16
TOLERANCE = 0.15  # the target: predicted within 15 % of measured


@dataclass(frozen=True)
class LoaderConfig:
    """One DataLoader configuration to measure."""

    size: int  # crop side in voxels
    workers: int
    prefetch: int = 2
    batch: int = 2
    one_hot: int = 0
    chain: str = "template"  # or "trainer": cellcheck's trainer transforms, `patches` patches of `roi`^3 per crop
    roi: int = 64
    patches: int = 2
    step_s: float = 0.3  # a training step slower than loading, as on a GPU: every prefetch slot fills
    mix: tuple[tuple[int, int], ...] = ()  # (crop side, crops) for a skewed dataset; `size` is then unused

    @property
    def batches(self) -> int:
        """Enough batches for every worker to refill its prefetch slots several times; one epoch of a mix."""
        if self.mix:
            return -(-sum(n for _, n in self.mix) // self.batch)
        return max(8, 6 * self.workers * self.prefetch)

    def label(self) -> str:
        oh = f", one-hot {self.one_hot}" if self.one_hot else ""
        chain = f"trainer ({self.patches} x {self.roi}^3 patches), " if self.chain == "trainer" else ""
        crops = " + ".join(f"{n} x {side}^3" for side, n in self.mix) + " shuffled" if self.mix else f"{self.size}^3"
        return f"{chain}{crops}, {self.workers} workers, prefetch {self.prefetch}, batch {self.batch}{oh}"


@dataclass(frozen=True)
class Bases:
    """Measured footprint of an idle rank and of one idle DataLoader worker (bytes)."""

    rank: int
    worker: int


def generated_dataset(cache: Path, size: int) -> Path:
    """The fixture generator's clean dataset with every crop `size`^3 (written once into `cache`); its datalist."""
    from fixtures import make_dataset

    root = cache / f"crops{size}"
    if not (root / "datalist.json").exists():
        make_dataset(root, defects="none", n_clean=3, crop_shape=(size, size, size))
    return root / "datalist.json"


def mixed_dataset(cache: Path, mix: tuple[tuple[int, int], ...]) -> Path:
    """One datalist over the generated crops of each size in `mix`, each repeated to its count."""
    entries = []
    for side, count in mix:
        source = generated_dataset(cache, side)
        cases = json.loads(source.read_text())["training"]
        for i in range(count):
            e = cases[i % len(cases)]
            folder = source.parent.name
            entries.append({**e, "image": f"{folder}/{e['image']}", "label": f"{folder}/{e['label']}"})
    name = "mix_" + "_".join(f"{n}x{side}" for side, n in mix) + ".json"
    datalist = cache / name
    datalist.write_text(json.dumps({"training": entries}))
    return datalist


def crop_sizes(datalist: Path) -> list[Crop]:
    """Every training case's voxels, read from its NIfTI header (repeated cases count each time)."""
    entries = json.loads(datalist.read_text())["training"]
    return [Crop(e["image"], float(math.prod(nib.load(str(datalist.parent / e["image"])).shape[:3])))
            for e in entries]


def mean_crop_shape(datalist: Path) -> list[float]:
    """Mean image shape of the training cases, read from the NIfTI headers."""
    entries = json.loads(datalist.read_text())["training"]
    shapes = [nib.load(str(datalist.parent / e["image"])).shape[:3] for e in entries]
    return [sum(s[i] for s in shapes) / len(shapes) for i in range(3)]


def profile_pipeline(datalist: Path, cfg: LoaderConfig, workdir: Path, interval_s: float = 0.05,
                     seed: int | None = None) -> dict[str, Any]:
    """Run the pipeline under `cellcheck profile` (cases shuffled with `seed` when given); its summary (peaks)."""
    tag = f"{cfg.chain}_s{cfg.size}_w{cfg.workers}_p{cfg.prefetch}_b{cfg.batch}_oh{cfg.one_hot}_seed{seed}"
    out, summary = workdir / f"{tag}.jsonl", workdir / f"{tag}.summary.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "cellcheck", "profile", "--output", str(out), "--interval", str(interval_s),
           "--summary-json", str(summary), "--", sys.executable, str(PIPELINE), str(datalist),
           "--workers", str(cfg.workers), "--prefetch", str(cfg.prefetch), "--batch", str(cfg.batch),
           "--batches", str(cfg.batches), "--one-hot", str(cfg.one_hot), "--step-s", str(cfg.step_s),
           "--chain", cfg.chain, "--roi", str(cfg.roi), "--patches", str(cfg.patches)]
    if seed is not None:
        cmd += ["--shuffle-seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{cfg.label()}: the profiled pipeline failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(summary.read_text())


def measure_bases(cache: Path, workdir: Path, chain: str = "template") -> Bases:
    """Rank and worker bases from runs on tiny crops: no workers, then two (the chain decides what is imported)."""
    datalist = generated_dataset(cache, CALIBRATION_SIZE)
    tiny = {"chain": chain, "roi": CALIBRATION_SIZE, "patches": 1}
    alone = profile_pipeline(datalist, LoaderConfig(CALIBRATION_SIZE, workers=0, **tiny), workdir)["peak_footprint"]
    two = profile_pipeline(datalist, LoaderConfig(CALIBRATION_SIZE, workers=2, **tiny), workdir)["peak_footprint"]
    alone, two = alone["footprint_bytes"], two["footprint_bytes"]
    return Bases(rank=alone, worker=max(0, (two - alone) // 2))


def compare_mix(cfg: LoaderConfig, bases: Bases, cache: Path, workdir: Path, repeats: int = 3) -> dict[str, Any]:
    """A skewed mix, one shuffled epoch per run: the worst case against every run, the typical against their median."""
    datalist = mixed_dataset(cache, cfg.mix)
    loader = Loader(gpus=1, workers=cfg.workers, prefetch=cfg.prefetch, batch=cfg.batch, hold_validation=False,
                    rank_base_bytes=bases.rank, worker_base_bytes=bases.worker)
    predicted = predict_ram_over(crop_sizes(datalist), template_chain(one_hot_channels=cfg.one_hot), loader,
                                 validation=[])
    runs = [profile_pipeline(datalist, cfg, workdir, seed=seed)["peak_footprint"]["footprint_bytes"]
            for seed in range(max(1, repeats))]
    measured = float(np.median(runs))
    typical = predicted.typical["peak_bytes"]
    return {"config": cfg.label(), "workers": cfg.workers, "predicted_bytes": typical, "measured_bytes": measured,
            "ratio": typical / measured, "worst_bytes": predicted.peak_bytes,
            "worst_ratio": predicted.peak_bytes / max(runs),
            "single_runs_bytes": runs, "median_step_bytes": predicted.typical["median_step_bytes"],
            "epoch_peak_p90_bytes": predicted.typical["epoch_peak_p90_bytes"], "breakdown": predicted.breakdown}


def compare(cfg: LoaderConfig, bases: Bases, cache: Path, workdir: Path, repeats: int = 1) -> dict[str, Any]:
    """One row of the table: predicted and measured peak host memory of `cfg` and their ratio.

    With `repeats` > 1 the pipeline runs that many times and the measured peak is the highest: a
    training job repeats the same loading pattern thousands of times, and a single short run on a
    busy 2-core machine does not always meet its workers' transient peaks together.
    """
    if cfg.mix:
        return compare_mix(cfg, bases, cache, workdir, repeats)
    datalist = generated_dataset(cache, cfg.size)
    shape = mean_crop_shape(datalist)
    patches = {"chain": "trainer", "patch_voxels": cfg.patches * cfg.roi**3} if cfg.chain == "trainer" else {}
    predicted = predict_ram(shape, gpus=1, workers=cfg.workers, prefetch=cfg.prefetch, batch=cfg.batch,
                            one_hot_channels=cfg.one_hot, hold_validation=False, rank_base_bytes=bases.rank,
                            worker_base_bytes=bases.worker, **patches)
    runs = [profile_pipeline(datalist, cfg, workdir) for _ in range(max(1, repeats))]
    top = max(runs, key=lambda r: r["peak_footprint"]["footprint_bytes"])
    measured = top["peak_footprint"]["footprint_bytes"]
    pss = max(r["peak"]["pss_bytes"] for r in runs)
    return {"config": cfg.label(), "crop_shape": shape, "workers": cfg.workers, "predicted_bytes": predicted.peak_bytes,
            "measured_bytes": measured, "measured_pss_bytes": pss, "ratio": predicted.peak_bytes / measured,
            "ratio_pss": predicted.peak_bytes / pss,
            "single_runs_bytes": [r["peak_footprint"]["footprint_bytes"] for r in runs],
            "peak": top["peak_footprint"], "breakdown": predicted.breakdown}


def table(rows: list[dict[str, Any]], bases: dict[str, Bases]) -> str:
    """Markdown table of predicted, measured and predicted/measured (skewed mixes in a second table)."""
    mib = 2**20
    mixes = [r for r in rows if "worst_bytes" in r]
    rows = [r for r in rows if "worst_bytes" not in r]
    lines = [f"bases measured on 16^3 crops, {chain} chain: rank {b.rank / mib:.0f} MiB, worker {b.worker / mib:.0f} MiB"
             for chain, b in bases.items()]
    lines += ["", "| pipeline | predicted MiB | measured MiB (PSS + queued shm) | predicted / measured | "
                 "single runs MiB | PSS alone MiB | predicted / PSS alone |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        singles = ", ".join(f"{b / mib:.0f}" for b in r["single_runs_bytes"])
        lines.append(f"| {r['config']} | {r['predicted_bytes'] / mib:.0f} | {r['measured_bytes'] / mib:.0f} | "
                     f"{r['ratio']:.3f} | {singles} | {r['measured_pss_bytes'] / mib:.0f} | {r['ratio_pss']:.3f} |")
    if mixes:
        lines += ["", "| skewed crops, one shuffled epoch per run | typical (median epoch peak) MiB | measured MiB "
                      "(median of runs) | typical / measured | worst case MiB | worst / highest run | runs MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in mixes:
            singles = ", ".join(f"{b / mib:.0f}" for b in r["single_runs_bytes"])
            lines.append(f"| {r['config']} | {r['predicted_bytes'] / mib:.0f} | {r['measured_bytes'] / mib:.0f} | "
                         f"{r['ratio']:.3f} | {r['worst_bytes'] / mib:.0f} | {r['worst_ratio']:.3f} | {singles} |")
    return "\n".join(lines)


def within(ratio: float, tolerance: float = TOLERANCE) -> bool:
    return math.isfinite(ratio) and abs(ratio - 1.0) <= tolerance


def run(configs: list[LoaderConfig], cache: Path | None = None,
        repeats: int = 1) -> tuple[list[dict[str, Any]], dict[str, Bases]]:
    """Measure the bases of each chain, then every config (`repeats` runs each); rows in order."""
    with tempfile.TemporaryDirectory(prefix="cellcheck-loader-") as tmp:
        cache = cache or Path(tmp) / "data"
        workdir = Path(tmp) / "profiles"
        cache.mkdir(parents=True, exist_ok=True)
        workdir.mkdir()
        bases = {chain: measure_bases(cache, workdir, chain) for chain in dict.fromkeys(c.chain for c in configs)}
        return [compare(cfg, bases[cfg.chain], cache, workdir, repeats) for cfg in configs], bases
