"""`predict`: from a datalist (or its stats) to what Auto3DSeg would choose, and whether it fits the GPU and the node.

Returns the report users script against (README, "Before a job"), with extra keys for the detail:

    {"gpu": {"name", "total_bytes"},
     "auto_scale": {"batch_size", "num_epochs", "roi_size", ...},
     "vram": {"peak_bytes", "fits", "max_batch_size", ...},
     "ram": {"peak_bytes", "per_rank_bytes", "per_worker_bytes", "slurm_mem", ...},
     "model", "dataset", "findings"}
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.errors import CellcheckError
from cellcheck.memory import auto_scale as autoscale
from cellcheck.memory.auto_scale import DatasetStats
from cellcheck.memory.crops import CropSizes, read_crop_sizes
from cellcheck.memory.gpus import GpuProfile, gpu_profile
from cellcheck.memory.ram import SIMULATED_EPOCHS, Crop, Loader, predict_ram_over, resolve_chain
from cellcheck.memory.store_ram import StoreReads, predict_store_ram
from cellcheck.models.shapes import MODELS, roi_multiple
from cellcheck.units import parse_bytes

#: Loading chains `predict` knows: the field's measured pipeline, cellcheck's trainer, the Auto3DSeg template's.
CHAINS = ("template", "trainer", "auto3dseg", "store")


def dataset_stats(path: Path, dataroot: Path | None = None,
                  fold: int | None = 0) -> tuple[DatasetStats, dict[str, Any], CropSizes]:
    """Case count, image shape (mean, median, max per axis), spacing and dtypes from headers only, and the crops.

    Reads the datalist's cases (each image once) through `open_volume` (no voxels). Entries whose image
    cannot be opened are findings, left out and counted (`skipped_unreadable`, `left_out`).
    """
    crops = read_crop_sizes(Path(path), dataroot, fold)
    shapes = [c.shape for c in crops.all if c.shape]
    if not shapes:
        raise CellcheckError(f"{path}: no training image could be opened to read its shape; run `cellcheck audit` "
                             "on it first")
    axes = list(zip(*shapes))
    stats = DatasetStats(
        n_cases=len(shapes),
        mean_shape=tuple(statistics.fmean(a) for a in axes),  # type: ignore[arg-type]
        spacing=tuple(statistics.median(s) for s in zip(*crops.spacings)),  # type: ignore[arg-type]
        max_shape=tuple(max(a) for a in axes),  # type: ignore[arg-type]
        median_shape=tuple(float(statistics.median(a)) for a in axes),  # type: ignore[arg-type]
    )
    largest = max(crops.all, key=lambda c: c.voxels)
    extra = {"source": str(path), "skipped_unreadable": len(crops.left_out), "left_out": list(crops.left_out),
             "image_dtype": crops.dtype("image"), "label_dtype": crops.dtype("label"),
             "largest_case": largest.case, "largest_case_voxels": int(largest.voxels),
             "n_train": len(crops.train), "n_validation": len(crops.validation)}
    return stats, extra, crops


def _stats(path_or_stats: Any, fold: int | None) -> tuple[DatasetStats, dict[str, Any], CropSizes | None]:
    if isinstance(path_or_stats, DatasetStats):
        return path_or_stats, {"source": "stats"}, None
    if isinstance(path_or_stats, dict):
        extra = {"source": "stats", "image_dtype": str(path_or_stats.get("image_dtype", "uint8")),
                 "label_dtype": str(path_or_stats.get("label_dtype", "uint8"))}
        return DatasetStats.from_dict(path_or_stats), extra, _crops_of(path_or_stats.get("crops"), fold)
    if isinstance(path_or_stats, (str, Path)):
        return dataset_stats(Path(path_or_stats), fold=fold)
    raise CellcheckError(f"predict needs a datalist path or a dict of stats, got {type(path_or_stats).__name__}")


def _crops_of(items: Any, fold: int | None) -> CropSizes | None:
    """Per-case sizes given with the stats: [{"case", "shape", optional "fold"}] (as the gate passes them)."""
    if not items:
        return None
    out = CropSizes(has_folds=any(item.get("fold") is not None for item in items))
    for item in items:
        shape = tuple(int(v) for v in item["shape"][:3])
        crop = Crop(str(item.get("case", "?")), float(math.prod(shape)), shape)
        validates = fold is not None and out.has_folds and item.get("fold") == fold
        (out.validation if validates else out.train).append(crop)
    return out


def _amp(amp: bool | str | None) -> str | None:
    if amp is True:
        return "bf16"
    if amp in (False, None, "none", "fp32"):
        return None
    if amp in ("bf16", "fp16"):
        return str(amp)
    raise CellcheckError(f"amp must be true/false, bf16, fp16 or none; got {amp!r}")


def predict(path_or_stats: Any, model: str, gpu: str | GpuProfile = "L40S", gpus: int = 1,
            workers: int | None = None, prefetch: int | None = None, roi: Sequence[int] | None = None,
            batch: int | None = None, amp: bool | str | None = True, one_hot: bool = False,
            bundle: str | Path | None = None, mem: int | str | None = None, gpu_mem_mib: float | None = None,
            loader_batch: int | None = None, search_max_batch: bool = True, rank_base: int | str | None = None,
            worker_base: int | str | None = None, chain: str | None = None, num_patches: int = 1,
            expansion: str = "int64", sigmoid: bool = False, label_cast: str = "uint8", fold: int | None = 0,
            epochs: int = SIMULATED_EPOCHS, seed: int = 0, classes: ClassMap = DEFAULT_CLASS_MAP,
            network_width: float = 1.0, store_reads: StoreReads | None = None,
            hold_validation: bool = True) -> dict[str, Any]:
    """Predict Auto3DSeg's choice, the step's peak GPU memory and the job's host RAM for `model` on `gpu`.

    `path_or_stats`: a datalist JSON path (image headers are read, not voxels: every crop's size) or a
    dict with n_cases, mean_shape (voxels), optional spacing / max_shape / image_dtype / label_dtype and
    `crops` ([{"case", "shape", "fold"}]; without it every crop is taken at the mean shape). `roi` and
    `batch` default to what the template would choose; `amp` True means bf16 autocast. `mem`: the
    node's memory (bytes or a SLURM size such as "512G") to check the RAM against. `fold`: the
    validation fold (datafold_read's split; None: all crops train).

    The host-RAM model follows a loading `chain`: "template" (the field's measured pipeline: MONAI's
    float32 loading, whole crops collated; `one_hot` expands the label to float32 channels), "trainer"
    (cellcheck's: `num_patches` patches of the ROI per crop, uint8 labels) or "auto3dseg" (the DiNTS /
    SwinUNETR template's own transforms, `expansion` "int64" as shipped, "uint8" as fixed, or "none";
    `sigmoid` adds the template's crop-label copy; `label_cast` "float32" for the June 2023 template
    whose expanded channels were float32). Default: the bundle's transforms with `bundle`,
    "template" with `one_hot` or for SegResNet, else "auto3dseg". `workers`, `prefetch` and
    `loader_batch` (crops per DataLoader batch) come from the bundle where it sets them, else 8, 2 and
    1 (the template default of 2 for "auto3dseg"; batch // num_patches for "trainer").
    `rank_base` / `worker_base`: an idle rank's and worker's memory measured on the node (bytes or a
    size such as "3.2G", e.g. from `cellcheck profile`), replacing the RAM model's assumed ones.
    `epochs` simulated epochs of the sampler's order give the typical case and the chance to cross `mem`.
    `classes`: the training classes (the network's output channels and the label expansion's);
    `network_width`: the network's feature widths relative to the template's (the config's `network_width`).
    `chain` "store" (training straight from CellMap stores) sizes host RAM from patches and the chunk
    shapes in `store_reads` (`cellcheck.memory.store_ram`), not from crop sizes. `hold_validation` False
    leaves the validation volume out (the training loop alone, as a probe's loader phase runs it).
    """
    from cellcheck.memory import vram as vram_model

    if model not in MODELS:
        raise CellcheckError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if (gpus < 1 or (workers is not None and workers < 0) or (prefetch is not None and prefetch < 1)
            or (loader_batch is not None and loader_batch < 1) or num_patches < 1):
        raise CellcheckError("need --gpus >= 1, --workers >= 0, --prefetch >= 1, --patches >= 1")
    if chain is not None and chain not in CHAINS:
        raise CellcheckError(f"unknown loading chain {chain!r}; expected {', '.join(CHAINS)}")
    profile = gpu if isinstance(gpu, GpuProfile) else gpu_profile(gpu, gpu_mem_mib)
    mem_bytes = _mem_bytes(mem)
    bases = {key: _mem_bytes(value, flag) for key, value, flag in (("rank_base_bytes", rank_base, "--rank-base"),
                                                                   ("worker_base_bytes", worker_base, "--worker-base"))
             if value is not None}
    stats, extra, crops = _stats(path_or_stats, fold)
    amp_dtype = _amp(amp)

    chosen = autoscale.auto_scale(model, stats, profile)
    roi_note = None
    if roi:
        roi_used = [int(r) for r in roi]
    else:  # the template's ROI, rounded up to what our fixed-depth network accepts (tiny images only)
        unit = roi_multiple(model)
        roi_used = [max(-(-int(r) // unit) * unit, 2 * unit) for r in chosen.roi_size]
        if roi_used != list(chosen.roi_size):
            roi_note = f"template ROI {chosen.roi_size} rounded up to multiples of {unit} for {model}"
    batch_used = int(batch or chosen.batch_size)
    if batch_used < 1:
        raise CellcheckError(f"--batch {batch_used} must be at least 1")

    runs: dict[int, vram_model.VramEstimate] = {}
    if search_max_batch:
        search = vram_model.max_batch_size(model, roi_used, profile, gpus, amp_dtype, out_channels=len(classes),
                                             width=network_width)
        runs = search.estimates
        max_batch: int | None = search.max_batch_size
    else:
        max_batch = None
    at_batch = runs.get(batch_used) or vram_model.estimate(
        vram_model.track_step(model, roi_used, batch_used, amp_dtype, out_channels=len(classes), width=network_width),
        profile, gpus)

    findings = [] if crops is None else list(crops.findings)
    data = None
    if bundle is not None:
        from cellcheck.memory.bundle import read_bundle_data

        config = autoscale.read_bundle(Path(bundle), model)
        findings += autoscale.stale_config(config, chosen, profile)
        data = read_bundle_data(Path(bundle), model)
    plan = _loader_plan(model, chain, one_hot, data, workers, prefetch, loader_batch, batch_used, num_patches,
                        chosen, bool(batch))
    loader = Loader(gpus, plan["workers"], plan["prefetch"], plan["batch"], hold_validation, **bases)
    if plan["chain"] == "store":
        ram = predict_store_ram(roi_used, num_patches, loader, store_reads or StoreReads(classes=len(classes)), mem_bytes)
        return _result(profile, chosen, at_batch, max_batch, batch_used, roi_used, amp_dtype, gpus, model, classes,
                       network_width, roi_note, ram, stats, extra, findings, plan, roi is not None, batch is not None)
    model_chain = _chain(plan, model, roi_used, expansion, sigmoid, label_cast, one_hot, extra, data, len(classes))
    pad = roi_used if plan["chain"] in ("trainer", "auto3dseg") else None  # SpatialPadd brings a crop up to the ROI
    train, validation = _crop_pool(stats, crops, pad)
    ram = predict_ram_over(train, model_chain, loader, validation, mem_bytes=mem_bytes, epochs=epochs, seed=seed,
                           left_out=extra.get("left_out", ()))
    ram.config.update({"one_hot_channels": len(classes) if one_hot else 0, "crop_shape": list(stats.mean_shape),
                       "image_dtype": extra.get("image_dtype", "uint8"),
                       "label_dtype": extra.get("label_dtype", "uint8"),
                       "chain": plan["chain"], "chain_detail": model_chain.name, "from_bundle": plan["from_bundle"],
                       "crops_per_image": plan.get("crops_per_image"),
                       "expansion": expansion if plan["chain"] == "auto3dseg" else None,
                       "sigmoid": sigmoid if plan["chain"] == "auto3dseg" else None,
                       "label_cast": label_cast if plan["chain"] == "auto3dseg" else None,
                       "per_case": crops is not None})

    return _result(profile, chosen, at_batch, max_batch, batch_used, roi_used, amp_dtype, gpus, model, classes,
                   network_width, roi_note, ram, stats, extra, findings, plan, roi is not None, batch is not None)


def _result(profile, chosen, at_batch, max_batch, batch_used, roi_used, amp_dtype, gpus, model, classes,
            network_width, roi_note, ram, stats, extra, findings, plan, roi_given: bool,
            batch_given: bool) -> dict[str, Any]:
    """The report users script against (the module docstring)."""
    from cellcheck.memory import vram as vram_model

    step = at_batch.step
    ram_json = ram.to_json()
    applies = plan_summary(model, chosen, roi_used, roi_given, batch_used, batch_given, at_batch.fits,
                           max_batch, plan, ram_json)
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
            "network": vram_model.network_spec(model, len(classes), width=network_width),
            "roi_note": roi_note,
            "calibrated": False,
        },
        "ram": ram_json,
        "plan": applies,
        "model": model,
        "dataset": {**stats.to_json(), **extra},
        "findings": [f.to_json() for f in findings],
        "fits": bool(at_batch.fits and ram.fits is not False),
    }


#: Below this share of the worst case, the crops in flight do not set --mem: the processes' own memory does.
CROPS_MINOR_SHARE = 0.05


def plan_summary(model: str, chosen: autoscale.AutoScale, roi: list[int], roi_given: bool, batch: int,
                 batch_given: bool, gpu_fits: bool, max_batch: int | None, loader: dict[str, Any],
                 ram: dict[str, Any]) -> dict[str, Any]:
    """Which ROI, batch and epochs the checks below apply to, where each comes from, and which constraint binds.

    Why: Auto3DSeg's choice (kept under `auto_scale`) may be a ROI the trainer refuses, and a job has
    two batches (patches per GPU step, crops per DataLoader batch); the text must say which is which.
    """
    unit = roi_multiple(model)
    if roi_given:
        roi_from, roi_why = "--roi", "as given (--roi)"
    elif roi != list(chosen.roi_size):
        roi_from = "auto3dseg, rounded up"
        roi_why = (f"Auto3DSeg's {'x'.join(map(str, chosen.roi_size))} rounded up to {'x'.join(map(str, roi))}: "
                   f"{model} trains only ROIs whose sides are multiples of {unit} voxels and at least {2 * unit}")
    else:
        roi_from, roi_why = "auto3dseg", "Auto3DSeg's choice for these crops"
    breakdown = ram.get("breakdown") or {}
    processes = int(breakdown.get("rank_base", 0) + breakdown.get("worker_base", 0))
    crops = int(max(0, ram["peak_bytes"] - processes))
    crops_minor = crops < CROPS_MINOR_SHARE * ram["peak_bytes"]
    binds = [name for name, bound in (("GPU memory", not gpu_fits), ("host RAM", ram.get("fits") is False)) if bound]
    return {
        "roi_size": list(roi), "roi_from": roi_from, "roi_why": roi_why,
        "batch_size": int(batch), "batch_from": "--batch" if batch_given else "auto3dseg",
        "num_epochs": chosen.num_epochs,
        "loader_crops_per_batch": loader.get("batch"), "patches_per_crop": loader.get("crops_per_image"),
        "gpu_fits": bool(gpu_fits), "max_batch_size": max_batch,
        "mem": ram["slurm_mem"], "mem_set_by": "processes" if crops_minor else "crops",
        "processes_bytes": processes, "crops_bytes": crops,
        "binding": binds,
    }


def _loader_plan(model: str, chain: str | None, one_hot: bool, data: Any, workers: int | None,
                 prefetch: int | None, loader_batch: int | None, batch_used: int, num_patches: int,
                 chosen: autoscale.AutoScale, batch_given: bool) -> dict[str, Any]:
    """Chain and DataLoader settings: the command line's, else the bundle's, else the defaults."""
    from cellcheck.memory.templates import LOADER_DEFAULTS, MODELLED

    if chain is None:
        chain = "template" if one_hot or model not in MODELLED else "auto3dseg"
    if one_hot and chain != "template":
        raise CellcheckError(f"--one-hot belongs to the template chain; the {chain} chain "
                             + ("expands labels with --expansion" if chain == "auto3dseg" else "never one-hot labels"))
    from_bundle = []

    def pick(given: Any, key: str, bundle_value: Any, default: Any) -> Any:
        if given is not None:
            return given
        if bundle_value is not None:
            from_bundle.append(key)
            return bundle_value
        return default

    auto = chain == "auto3dseg"
    # defaults: our trainer's own (the training config's) for its chain, else the Auto3DSeg template's
    defaults = trainer_loader_defaults() if chain in ("trainer", "store") else LOADER_DEFAULTS
    plan = {"chain": chain, "from_bundle": from_bundle,
            "workers": pick(workers, "num_workers", data and data.workers, defaults["num_workers"]),
            "prefetch": pick(prefetch, "prefetch_factor", None, defaults["prefetch_factor"])}
    if auto:
        plan["batch"] = pick(loader_batch, "num_images_per_batch", data and data.batch,
                             LOADER_DEFAULTS["num_images_per_batch"])
        # DiNTS and SwinUNETR recompute num_crops_per_image = 2 x batch at run time when auto-scaling is allowed
        rerun = batch_given or data is None or data.auto_scale_allowed is not False or not data.crops_per_image
        plan["crops_per_image"] = (2 * batch_used if batch_given else chosen.num_patches_per_image or 2 * batch_used) \
            if rerun else pick(None, "num_crops_per_image", data.crops_per_image, 2 * batch_used)
    elif chain in ("trainer", "store"):
        plan["batch"] = loader_batch or max(1, batch_used // num_patches)
        plan["crops_per_image"] = num_patches
    else:
        plan["batch"] = loader_batch or 1
    return plan


def trainer_loader_defaults() -> dict[str, int]:
    """The DataLoader settings cellcheck's trainer uses when a config does not say (the config's defaults)."""
    from cellcheck.config import KEYS

    return {"num_workers": KEYS["num_workers"].default, "prefetch_factor": KEYS["prefetch_factor"].default}


def _chain(plan: dict[str, Any], model: str, roi: list[int], expansion: str, sigmoid: bool, label_cast: str,
           one_hot: bool, extra: dict[str, Any], data: Any, num_classes: int) -> Any:
    """The loading chain in bytes per voxel (`cellcheck.memory.chains.Chain`); one output channel per class."""
    from cellcheck.memory.chains import ChainContext, interpret
    from cellcheck.memory.templates import train_transforms

    image_dtype, label_dtype = extra.get("image_dtype", "uint8"), extra.get("label_dtype", "uint8")
    if plan["chain"] == "auto3dseg":
        if data is not None:
            from cellcheck.memory.bundle import bundle_chain

            found = bundle_chain(data, roi, plan["crops_per_image"], image_dtype, label_dtype)
            if found is not None:
                return found
        steps = train_transforms(model, num_classes, roi, plan["crops_per_image"], expansion, sigmoid,
                                 label_cast=label_cast)
        return interpret(steps, ChainContext(image_dtype, label_dtype), name=f"auto3dseg {model}")
    patches = plan["crops_per_image"] * math.prod(roi) if plan["chain"] == "trainer" else None
    return resolve_chain(plan["chain"], image_dtype, label_dtype, num_classes if one_hot else 0, patches)


def _crop_pool(stats: DatasetStats, crops: CropSizes | None,
               pad: Sequence[int] | None) -> tuple[list[Crop], list[Crop] | None]:
    """Training and validation crops as loaded (padded up to the ROI where the chain pads), or the mean crop."""
    def padded(c: Crop) -> Crop:
        if pad is None or not c.shape:
            return c
        return Crop(c.case, float(math.prod(max(s, r) for s, r in zip(c.shape, pad))), c.shape)

    if crops is None or not crops.train:  # n_cases crops of the mean shape
        shape = [max(float(s), float(r)) for s, r in zip(stats.mean_shape, pad)] if pad else list(stats.mean_shape)
        mean = Crop("mean crop", math.prod(shape), tuple(int(round(s)) for s in shape))
        return [mean] * stats.n_cases, None
    validation = [padded(c) for c in crops.validation] if crops.has_folds else None
    return [padded(c) for c in crops.train], validation


def _mem_bytes(mem: int | str | None, flag: str = "--mem") -> int | None:
    if mem is None or isinstance(mem, int):
        return mem
    try:
        return parse_bytes(str(mem))
    except ValueError as exc:
        raise CellcheckError(f"{flag} {mem!r}: {exc}") from None
