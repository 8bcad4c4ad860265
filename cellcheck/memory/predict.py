"""`predict`: from a datalist (or its stats) to what Auto3DSeg would choose, and whether it fits the GPU and the node.

Returns the JSON contract of DESIGN.md ("Memory prediction"), with extra keys for the detail:

    {"gpu": {"name", "total_bytes"},
     "auto_scale": {"batch_size", "num_epochs", "roi_size", ...},
     "vram": {"peak_bytes", "fits", "max_batch_size", ...},
     "ram": {"peak_bytes", "per_rank_bytes", "per_worker_bytes", "slurm_mem", ...},
     "model", "dataset", "findings"}
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from cellcheck.errors import CellcheckError
from cellcheck.memory import auto_scale as autoscale
from cellcheck.memory.auto_scale import DatasetStats
from cellcheck.memory.gpus import GpuProfile, gpu_profile
from cellcheck.memory.ram import predict_ram
from cellcheck.units import parse_bytes

#: Our network outputs: 14 sigmoid channels (cellcheck.classes); the templates count 15 (plus background).
OUT_CHANNELS = 14


def dataset_stats(path: Path, dataroot: Path | None = None) -> tuple[DatasetStats, dict[str, Any]]:
    """Case count, image shape (mean, median, max per axis, voxels), spacing and dtypes from headers only.

    Reads the `training` entries of a datalist through `open_volume` (no voxels). Entries whose image
    cannot be opened are skipped and counted; the audit reports them.
    """
    from cellcheck.datalist import load_datalist
    from cellcheck.sources import open_volume
    from cellcheck.sources.volume import ReadError

    dl = load_datalist(Path(path), dataroot)
    shapes: list[tuple[int, int, int]] = []
    spacings: list[tuple[float, ...]] = []
    image_dtypes: Counter[str] = Counter()
    label_dtypes: Counter[str] = Counter()
    skipped = 0
    largest: tuple[int, str | None] = (0, None)
    for entry in dl.entries:
        if entry.section != "training" or not entry.image:
            continue
        try:
            header = open_volume(dl.resolve(entry.image)).header
        except (ReadError, OSError):
            skipped += 1
            continue
        shape = tuple(int(s) for s in header.shape[:3])
        if len(shape) != 3:
            skipped += 1
            continue
        shapes.append(shape)  # type: ignore[arg-type]
        spacings.append(tuple(header.spacing[:3]))
        image_dtypes[str(header.dtype)] += 1
        if header.voxels > largest[0]:
            largest = (header.voxels, entry.case)
        if entry.label:
            try:
                label_dtypes[str(open_volume(dl.resolve(entry.label)).header.dtype)] += 1
            except (ReadError, OSError):
                pass
    if not shapes:
        raise CellcheckError(f"{path}: no training image could be opened to read its shape; run `cellcheck audit` "
                             "on it first")
    axes = list(zip(*shapes))
    stats = DatasetStats(
        n_cases=len(shapes),
        mean_shape=tuple(statistics.fmean(a) for a in axes),  # type: ignore[arg-type]
        spacing=tuple(statistics.median(s) for s in zip(*spacings)) if spacings else (1.0, 1.0, 1.0),  # type: ignore[arg-type]
        max_shape=tuple(max(a) for a in axes),  # type: ignore[arg-type]
        median_shape=tuple(float(statistics.median(a)) for a in axes),  # type: ignore[arg-type]
    )
    extra = {"source": str(path), "skipped_unreadable": skipped,
             "image_dtype": image_dtypes.most_common(1)[0][0] if image_dtypes else "uint8",
             "label_dtype": label_dtypes.most_common(1)[0][0] if label_dtypes else "uint8",
             "largest_case": largest[1], "largest_case_voxels": largest[0]}
    return stats, extra


def _stats(path_or_stats: Any) -> tuple[DatasetStats, dict[str, Any]]:
    if isinstance(path_or_stats, DatasetStats):
        return path_or_stats, {"source": "stats"}
    if isinstance(path_or_stats, dict):
        extra = {"source": "stats", "image_dtype": str(path_or_stats.get("image_dtype", "uint8")),
                 "label_dtype": str(path_or_stats.get("label_dtype", "uint8"))}
        return DatasetStats.from_dict(path_or_stats), extra
    if isinstance(path_or_stats, (str, Path)):
        return dataset_stats(Path(path_or_stats))
    raise CellcheckError(f"predict needs a datalist path or a dict of stats, got {type(path_or_stats).__name__}")


def _amp(amp: bool | str | None) -> str | None:
    if amp is True:
        return "bf16"
    if amp in (False, None, "none", "fp32"):
        return None
    if amp in ("bf16", "fp16"):
        return str(amp)
    raise CellcheckError(f"amp must be true/false, bf16, fp16 or none; got {amp!r}")


def predict(path_or_stats: Any, model: str, gpu: str | GpuProfile = "L40S", gpus: int = 1, workers: int = 8,
            prefetch: int = 2, roi: Sequence[int] | None = None, batch: int | None = None,
            amp: bool | str | None = True, one_hot: bool = False, bundle: str | Path | None = None,
            mem: int | str | None = None, gpu_mem_mib: float | None = None, loader_batch: int | None = None,
            search_max_batch: bool = True, rank_base: int | str | None = None,
            worker_base: int | str | None = None, chain: str = "template", num_patches: int = 1) -> dict[str, Any]:
    """Predict Auto3DSeg's choice, the step's peak GPU memory and the job's host RAM for `model` on `gpu`.

    `path_or_stats`: a datalist JSON path (image headers are read, not voxels) or a dict with n_cases,
    mean_shape (voxels), optional spacing / max_shape / image_dtype / label_dtype. `roi` and `batch`
    default to what the template would choose; `amp` True means bf16 autocast. `one_hot`: the labels
    are expanded to 14 float32 channels in the DataLoader workers. `mem`: the node's memory (bytes
    or a SLURM size such as "512G") to check the RAM against. `loader_batch`: crops per DataLoader batch
    (default 1; for the trainer chain the step's batch over `num_patches`, as the trainer builds it).
    `rank_base` / `worker_base`: an idle rank's and worker's memory measured on the node (bytes or a
    size such as "3.2G", e.g. from `cellcheck profile`), replacing the RAM model's assumed ones.
    `chain`: the loading chain of the RAM model, "template" (Auto3DSeg's: whole crops, float32) or
    "trainer" (cellcheck's: `num_patches` patches of the ROI per crop, uint8 labels).
    """
    from cellcheck.memory import vram as vram_model

    if model not in vram_model.MODELS:
        raise CellcheckError(f"unknown model {model!r}; choose one of {', '.join(vram_model.MODELS)}")
    if gpus < 1 or workers < 0 or prefetch < 1 or (loader_batch is not None and loader_batch < 1) or num_patches < 1:
        raise CellcheckError("need --gpus >= 1, --workers >= 0, --prefetch >= 1, --patches >= 1")
    profile = gpu if isinstance(gpu, GpuProfile) else gpu_profile(gpu, gpu_mem_mib)
    mem_bytes = _mem_bytes(mem)
    bases = {key: _mem_bytes(value, flag) for key, value, flag in (("rank_base_bytes", rank_base, "--rank-base"),
                                                                   ("worker_base_bytes", worker_base, "--worker-base"))
             if value is not None}
    stats, extra = _stats(path_or_stats)
    amp_dtype = _amp(amp)

    chosen = autoscale.auto_scale(model, stats, profile)
    roi_note = None
    if roi:
        roi_used = [int(r) for r in roi]
    else:  # the template's ROI, rounded up to what our fixed-depth network accepts (tiny images only)
        unit = vram_model.ROI_MULTIPLE[model]
        roi_used = [max(-(-int(r) // unit) * unit, 2 * unit) for r in chosen.roi_size]
        if roi_used != list(chosen.roi_size):
            roi_note = f"template ROI {chosen.roi_size} rounded up to multiples of {unit} for {model}"
    batch_used = int(batch or chosen.batch_size)
    if batch_used < 1:
        raise CellcheckError(f"--batch {batch_used} must be at least 1")

    runs: dict[int, vram_model.VramEstimate] = {}
    if search_max_batch:
        search = vram_model.max_batch_size(model, roi_used, profile, gpus, amp_dtype, out_channels=OUT_CHANNELS)
        runs = search.estimates
        max_batch: int | None = search.max_batch_size
    else:
        max_batch = None
    at_batch = runs.get(batch_used) or vram_model.estimate(
        vram_model.track_step(model, roi_used, batch_used, amp_dtype, out_channels=OUT_CHANNELS), profile, gpus)

    crop = list(stats.mean_shape)
    patches: dict[str, Any] = {}
    if chain == "trainer":  # SpatialPadd brings a crop up to the ROI first
        crop = [max(float(c), float(r)) for c, r in zip(crop, roi_used)]
        patches = {"chain": "trainer", "patch_voxels": num_patches * math.prod(roi_used)}
    elif chain != "template":
        raise CellcheckError(f"unknown loading chain {chain!r}; expected template or trainer")
    if loader_batch is None:
        loader_batch = max(1, batch_used // num_patches) if chain == "trainer" else 1
    ram = predict_ram(crop, gpus=gpus, workers=workers, prefetch=prefetch, batch=loader_batch,
                      one_hot_channels=OUT_CHANNELS if one_hot else 0, image_dtype=extra.get("image_dtype", "uint8"),
                      label_dtype=extra.get("label_dtype", "uint8"), mem_bytes=mem_bytes, **bases, **patches)

    findings = []
    if bundle is not None:
        config = autoscale.read_bundle(Path(bundle), model)
        findings = autoscale.stale_config(config, chosen, profile)

    step = at_batch.step
    return {
        "gpu": profile.to_json(),
        "auto_scale": chosen.to_json(),
        "vram": {
            "peak_bytes": at_batch.peak_bytes, "fits": at_batch.fits, "max_batch_size": max_batch,
            "batch_size": batch_used, "roi_size": roi_used, "amp": amp_dtype, "gpus": gpus,
            "breakdown": at_batch.breakdown,
            "tracked": {"peak_bytes": step.peak_bytes, "phase_at_peak": step.phase_at_peak,
                        "n_params": step.n_params, "optimizer": step.optimizer,
                        "breakdown_at_peak": step.breakdown_at_peak, "seconds": step.seconds},
            "network": vram_model.network_spec(model, OUT_CHANNELS),
            "roi_note": roi_note,
            "calibrated": False,
        },
        "ram": ram.to_json(),
        "model": model,
        "dataset": {**stats.to_json(), **extra},
        "findings": [f.to_json() for f in findings],
        "fits": bool(at_batch.fits and ram.fits is not False),
    }


def _mem_bytes(mem: int | str | None, flag: str = "--mem") -> int | None:
    if mem is None or isinstance(mem, int):
        return mem
    try:
        return parse_bytes(str(mem))
    except ValueError as exc:
        raise CellcheckError(f"{flag} {mem!r}: {exc}") from None
