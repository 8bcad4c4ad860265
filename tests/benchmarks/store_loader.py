"""The store loader measured: patches per second against a read floor, and the peak memory of its process tree.

    python tests/benchmarks/store_loader.py [--stores DIR --resolution NM] [--patch N] [--batches K]
                                            [--workers W] [--scales 1,4] [--json OUT] [--quick]

The loader is trainer/stores.py as the trainer runs it (`store_loader`: workers, prefetch, per-item
draws), timed over K batches after its workers' start (the steady state) with nothing else to do
(the loader alone), in a child process sampled
by `cellcheck profile` (RSS and PSS of the process tree, and batches waiting in shared memory). The
floor: every chunk each of those batches' patches overlaps (raw and each trained class array, at its
level), read patch after patch in one process with zarr: what a reader of the same patches without a
chunk cache must decompress; beside it, every distinct chunk read once (an unbounded cache's floor). Without
--stores it writes fixture stores (fixtures/stores.py) of full crops at 8 nm, at each size of
--scales (times the voxels of the first: 1,4 is crops of 1x and 4x the voxels), and reports the
peak memory of each: it should not grow with the crops (the model, cellcheck.memory.store_ram, says
it depends on patch and chunk sizes only). JSON at the top level: patches_per_s, peak_rss_mb,
peak_pss_mb (of the first scale), and a row per scale.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Side of the first scale's crops (voxels at 8 nm) and how many crops a fixture store holds.
BASE_SIDE, CROPS = 48, 6


def config(stores: Path, resolution: float, patch: int, workers: int, prefetch: int = 2):
    from cellcheck.config import validate_config

    return validate_config({"model": "segresnet", "datalist": str(stores), "resolution": resolution,
                            "output_dir": str(stores / "runs"), "roi_size": [patch] * 3, "batch_size": 2,
                            "num_patches_per_image": 2, "num_epochs": 10, "num_workers": workers,
                            "prefetch_factor": prefetch}).config


def training_crops(cfg):
    from cellcheck.cellmap.trainset import plan_training_set
    from trainer.stores import prepare

    training = plan_training_set(cfg.datalist, cfg.resolution, cfg.classes, exclude=cfg.exclude_crops)
    return training, prepare(training, cfg.classes, [*training.train, *training.validate], cfg.resample)


def batches_of(crops, cfg, count: int):
    """`count` batches of the store loader, epoch after epoch (one loader: its workers persist, as in training)."""
    from trainer.stores import store_loader

    loader = store_loader(crops, cfg.classes, cfg)
    n = 0
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch
            n += 1
            if n >= count:
                return


def child(args: argparse.Namespace) -> None:
    """Run the loader alone (no step), print patches and seconds (the parent profiles this process tree)."""
    cfg = config(Path(args.stores), args.resolution, args.patch, args.workers, args.prefetch)
    _, crops = training_crops(cfg)
    warm = max(1, args.workers) * args.prefetch  # the workers' start and their first batches: not the steady state
    start, patches = None, 0
    for n, (_, batch) in enumerate(batches_of(crops, cfg, args.batches + warm)):
        if n == warm:
            start = time.perf_counter()
        if start is not None:
            patches += batch["image"].shape[0]
        time.sleep(args.step_s)
    print(json.dumps({"patches": patches, "seconds": time.perf_counter() - start}))


def floor(stores: Path, resolution: float, patch: int, batches: int, skip: int = 0) -> dict[str, Any]:
    """The same patches' chunks read with zarr in one process: patches per second of that.

    Two floors: each patch's chunks in turn (what a reader without a chunk cache, the loader among them,
    must decompress: `patches_per_s`), and every distinct chunk once (what a reader with an unbounded
    cache would: `distinct_patches_per_s`; on small crops many patches share their chunks)."""
    from cellcheck.cellmap.stores import open_store
    from cellcheck.readers.zarr_compat import storage_chunks
    from trainer.stores import StorePatches

    cfg = config(stores, resolution, patch, 0)
    _, crops = training_crops(cfg)
    reads: list[tuple[str, tuple[int, ...]]] = []
    arrays: dict[str, Any] = {}
    ds = StorePatches(crops, cfg.classes, cfg)
    per_batch = max(1, cfg.batch_size // cfg.num_patches_per_image)
    per_epoch = math.ceil(len(ds) / per_batch)
    patches = 0
    for b in range(skip, skip + batches):
        epoch, first = divmod(b, per_epoch)
        for i in range(epoch * len(ds) + first * per_batch, epoch * len(ds) + min(len(ds), (first + 1) * per_batch)):
            _, _, crop = ds.item(i)
            store = open_store(Path(crop.case.store))
            opened = store.open_crop(crop.case.crop, only=crop.case.classes)
            for (lo, hi), _ in ds.draws(i):
                patches += 1
                raw = store.raw.group[crop.plan.raw_level.path]
                key = f"{crop.case.store}/raw"
                arrays[key] = raw
                start = [s + a for s, a in zip(crop.plan.crop_start, lo)]
                stop = [s + b_ for s, b_ in zip(crop.plan.crop_start, hi)]
                reads += [(key, c) for c in _chunks(start, stop, raw.shape, storage_chunks(raw))]
                shift = [s - c for s, c in zip(crop.plan.start, crop.plan.crop_start)]
                inner_lo = [max(a, 0) - s for a, s in zip(lo, shift)]
                inner_hi = [min(b_, n_) - s for b_, n_, s in zip(hi, crop.shape, shift)]
                if any(h <= l for l, h in zip(inner_lo, inner_hi)):
                    continue
                box = crop.plan.label_box(tuple(inner_lo), tuple(inner_hi))
                for name in crop.case.classes:
                    arr = opened.classes[name].group[crop.plan.label_level.path]
                    akey = f"{crop.case.store}/{crop.case.crop}/{name}"
                    arrays[akey] = arr
                    reads += [(akey, c) for c in _chunks([a for a, _ in box], [b_ for _, b_ in box], arr.shape,
                                                         storage_chunks(arr))]

    def read(chunks) -> float:
        t0 = time.perf_counter()
        for key, idx in chunks:
            arr = arrays[key]
            c = storage_chunks(arr)
            arr[tuple(slice(i * s, min((i + 1) * s, n_)) for i, s, n_ in zip(idx, c, arr.shape))]
        return time.perf_counter() - t0

    distinct = sorted(set(reads))
    read(distinct)  # the files into the page cache, as the loader's earlier epochs put them
    seconds, seconds_distinct = read(reads), read(distinct)
    return {"patches": patches, "chunks": len(reads), "distinct_chunks": len(distinct), "seconds": seconds,
            "patches_per_s": patches / seconds, "distinct_patches_per_s": patches / seconds_distinct}


def _chunks(start, stop, shape, chunk):
    lo = [max(0, a) for a in start]
    hi = [min(n, b) for b, n in zip(stop, shape)]
    if any(h <= l for l, h in zip(lo, hi)):
        return []
    return itertools.product(*(range(l // c, -(-h // c)) for l, h, c in zip(lo, hi, chunk)))


def profiled(stores: Path, args: argparse.Namespace, workers: int, step_s: float = 0.0,
             batches: int | None = None, patch: int | None = None) -> dict[str, Any]:
    """The loader run in a child under `cellcheck profile`: its patches per second and the tree's peaks."""
    with tempfile.TemporaryDirectory(prefix="cellcheck-store-loader-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "cellcheck", "profile", "--out", str(Path(tmp) / "profile.jsonl"), "--interval",
               "0.05", "--summary-json", str(summary_path), "--", sys.executable, __file__, "--child", "--stores",
               str(stores), "--resolution", str(args.resolution), "--patch", str(patch or args.patch), "--batches",
               str(batches or args.batches), "--workers", str(workers), "--prefetch", str(args.prefetch),
               "--step-s", str(step_s)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"the profiled loader failed ({proc.returncode}): {proc.stderr[-2000:]}")
        text = proc.stdout
        summary = json.loads(summary_path.read_text())
    run = json.loads(text.strip().splitlines()[-1])
    peak, foot = summary.get("peak") or {}, summary.get("peak_footprint") or {}
    return {"workers": workers, "patches": run["patches"], "seconds": run["seconds"],
            "patches_per_s": run["patches"] / run["seconds"], "peak_rss_mb": peak.get("rss_bytes", 0) / 2**20,
            "peak_pss_mb": peak.get("pss_bytes", 0) / 2**20,
            "peak_footprint_mb": foot.get("footprint_bytes", peak.get("pss_bytes", 0)) / 2**20}


def compare_model(stores: Path, args: argparse.Namespace, workers: int, step_s: float = 0.3) -> dict[str, Any]:
    """The store RAM model (cellcheck.memory.store_ram) against the loader's measured footprint.

    The machine's two constants are measured first, as for the datalist loader (loader_memory.py): an
    idle-ish run with no workers gives the rank base, one with two workers adds two worker bases (both
    on 16^3 patches, where data is negligible). The measured run steps slowly (`step_s`, as a GPU step
    would) so that every worker's prefetch slots fill.
    """
    from cellcheck.memory.ram import Loader
    from cellcheck.memory.store_ram import predict_store_ram, reads_of

    tiny = 16
    alone = profiled(stores, args, 0, batches=4, patch=tiny)["peak_footprint_mb"] * 2**20
    two = profiled(stores, args, 2, batches=8, patch=tiny)["peak_footprint_mb"] * 2**20
    measured = profiled(stores, args, workers, step_s=step_s)
    cfg = config(stores, args.resolution, args.patch, workers, args.prefetch)
    training, _ = training_crops(cfg)
    loader = Loader(gpus=1, workers=workers, prefetch=args.prefetch, batch=1, rank_base_bytes=int(alone),
                    worker_base_bytes=int(max(0, two - alone) // 2))
    predicted = predict_store_ram([args.patch] * 3, 2, loader, reads_of(training))
    got = measured["peak_footprint_mb"] * 2**20
    return {"workers": workers, "patch": args.patch, "predicted_bytes": predicted.peak_bytes, "measured_bytes": got,
            "ratio": predicted.peak_bytes / got, "rank_base_bytes": int(alone),
            "worker_base_bytes": loader.worker_base_bytes, "breakdown": predicted.breakdown}


def fixture_stores(root: Path, side: int, hidden: int = 0) -> Path:
    """A folder holding one store of CROPS full crops of side^3 at 8 nm (written once)."""
    from fixtures.full import full_crop
    from fixtures.stores import CropArrays, write_store

    folder = root / f"crops{side}"
    if not folder.exists():
        crops = [CropArrays(f"crop{i + 1}", *full_crop(0, i + 1, (side, side, side))) for i in range(CROPS)]
        write_store(folder / "jrc_bench.zarr", crops)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="store_loader.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=Path, help="a folder of CellMap stores (default: fixture stores)")
    parser.add_argument("--resolution", type=float, default=8.0, help="training voxel size, nm")
    parser.add_argument("--patch", type=int, default=32, help="patch side, voxels")
    parser.add_argument("--batches", type=int, default=24, help="batches to draw (2 patches each)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--scales", default="1,4", help="crop voxels of each fixture set, times the first's")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="CI: fewer batches")
    parser.add_argument("--model", action="store_true", help="also check the RAM model against a measured run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.quick:  # CI: one crop size, a few batches; the ratio is printed, never enforced
        args.batches, args.scales = min(args.batches, 12), args.scales.split(",")[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cellcheck-stores-") as tmp:
        sets = [(1.0, args.stores)] if args.stores else [
            (float(s), fixture_stores(Path(tmp), round(BASE_SIDE * float(s) ** (1 / 3)))) for s in args.scales.split(",")]
        for scale, stores in sets:
            measured = profiled(stores, args, args.workers)
            reading = floor(stores, args.resolution, args.patch, args.batches, skip=max(1, args.workers) * args.prefetch)
            rows.append({"scale": scale, "stores": str(stores), **measured, "floor_patches_per_s": reading["patches_per_s"],
                         "floor_chunks": reading["chunks"], "ratio_to_floor": measured["patches_per_s"] / reading["patches_per_s"],
                         "distinct_floor_patches_per_s": reading["distinct_patches_per_s"],
                         "distinct_chunks": reading["distinct_chunks"],
                         "ratio_to_distinct_floor": measured["patches_per_s"] / reading["distinct_patches_per_s"]})
            if args.model:
                rows[-1]["model"] = compare_model(stores, args, args.workers)
    first = rows[0]
    report = {"patches_per_s": first["patches_per_s"], "peak_rss_mb": first["peak_rss_mb"],
              "peak_pss_mb": first["peak_pss_mb"], "floor_patches_per_s": first["floor_patches_per_s"],
              "ratio_to_floor": first["ratio_to_floor"], "patch": args.patch, "workers": args.workers, "rows": rows}
    if len(rows) > 1:
        report["peak_pss_growth"] = rows[-1]["peak_pss_mb"] / rows[0]["peak_pss_mb"]
    for r in rows:
        print(f"crops x{r['scale']:g}: {r['patches_per_s']:.1f} patches/s with {r['workers']} workers, floor "
              f"{r['floor_patches_per_s']:.1f} ({r['ratio_to_floor']:.2f} of it; {r['floor_chunks']} chunk reads), "
              f"distinct chunks once {r['distinct_floor_patches_per_s']:.1f} ({r['ratio_to_distinct_floor']:.2f}; "
              f"{r['distinct_chunks']} chunks); peak RSS {r['peak_rss_mb']:.0f} MiB, PSS {r['peak_pss_mb']:.0f} MiB")
    for r in rows:
        if "model" in r:
            m = r["model"]
            print(f"crops x{r['scale']:g}: RAM model {m['predicted_bytes'] / 2**20:.0f} MiB, measured (PSS + queued shm) "
                  f"{m['measured_bytes'] / 2**20:.0f} MiB: {m['ratio']:.3f}")
    if "peak_pss_growth" in report:
        print(f"peak PSS with crops x{rows[-1]['scale']:g} / x{rows[0]['scale']:g}: {report['peak_pss_growth']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
