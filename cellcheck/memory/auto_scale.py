"""What Auto3DSeg's DiNTS, SwinUNETR and SegResNet templates would choose for a dataset on a given GPU.

The rules are those of the MONAI Auto3DSeg algorithm templates (research-contributions,
`auto3dseg/algorithm_templates/*/scripts`), restated in docs/INCIDENTS.md ("What Auto3DSeg computes"); they are
reproduced here, formula by formula, so that cellcheck can (a) say what a run will use on the target
card and (b) flag a generated bundle whose YAML still carries values from another card or from a
smoke test (`stale-config`). They size GPU memory from two reference points and know nothing of the
network's real activations: `vram.py` is cellcheck's own model.

Units: Auto3DSeg's `mem` is GiB (2**30 bytes); shapes are voxels; spacing in the file's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, Severity
from cellcheck.memory.gpus import GiB, GpuProfile

#: Outputs as the templates count them for our 14 sigmoid classes: 14 + background.
TEMPLATE_OUTPUT_CLASSES = 15

#: DiNTS and SwinUNETR patch size before clipping to the image (training#patch_size / patch_size).
DEFAULT_PATCH = (96, 96, 96)

#: SegResNet's `roi_size` default (configs/hyper_parameters.yaml).
SEGRESNET_ROI = (224, 224, 144)

#: SwinUNETR epochs aim at N patches in total: 400000 in one published template, 800000 in the version
#: the field used (it logged 1000 epochs with batch 1 for 198 cases, which only N >= 396000 gives).
SWINUNETR_TOTAL_PATCHES = 800000
SWINUNETR_MAX_EPOCHS = 1000


@dataclass(frozen=True)
class DatasetStats:
    """What the templates read from DataAnalyzer's stats: case count, image shape (voxels), spacing."""

    n_cases: int
    mean_shape: tuple[float, float, float]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_shape: tuple[int, int, int] | None = None
    median_shape: tuple[float, float, float] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetStats":
        """Stats from a plain dict: n_cases, mean_shape, optional spacing, max_shape, median_shape."""
        try:
            n = int(d["n_cases"])
            mean = _triple(d["mean_shape"], "mean_shape")
        except KeyError as exc:
            raise CellcheckError(f"dataset stats need {exc.args[0]!r} (n_cases and mean_shape, e.g. "
                                 "{'n_cases': 198, 'mean_shape': [393, 402, 418]})") from None
        if n < 1:
            raise CellcheckError(f"dataset stats: n_cases must be at least 1, got {n}")
        spacing = _triple(d.get("spacing", (1.0, 1.0, 1.0)), "spacing")
        max_shape = d.get("max_shape")
        median = d.get("median_shape")
        return cls(n, mean, spacing,
                   tuple(int(v) for v in _triple(max_shape, "max_shape")) if max_shape is not None else None,
                   _triple(median, "median_shape") if median is not None else None)

    def to_json(self) -> dict[str, Any]:
        return {"n_cases": self.n_cases, "mean_shape": list(self.mean_shape), "spacing": list(self.spacing),
                "max_shape": list(self.max_shape) if self.max_shape else None,
                "median_shape": list(self.median_shape) if self.median_shape else None}


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise CellcheckError(f"dataset stats: {what} must be three numbers, got {value!r}") from None
    if len(out) != 3 or any(not v > 0 for v in out):
        raise CellcheckError(f"dataset stats: {what} must be three positive numbers, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass
class AutoScale:
    """Auto3DSeg's choice for one template: patches per step, epochs, patch size, and how it got there."""

    model: str
    batch_size: int  # patches per optimizer step (num_patches_per_iter, or SegResNet's batch_size)
    num_epochs: int
    roi_size: list[int]
    num_patches_per_image: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch_size": self.batch_size, "num_epochs": self.num_epochs, "roi_size": self.roi_size}
        if self.num_patches_per_image is not None:
            out["num_patches_per_image"] = self.num_patches_per_image
        out["details"] = self.details
        return out


def free_gib(gpu: GpuProfile, free_bytes: int | None = None) -> float:
    """GiB that `torch.cuda.mem_get_info()` reports free on an idle card: total minus this process's context."""
    from cellcheck.memory.vram import CUDA_CONTEXT_BYTES

    return (gpu.total_bytes - CUDA_CONTEXT_BYTES if free_bytes is None else free_bytes) / GiB


def _interpolated_batch(mem: float, c: int, scale: float) -> tuple[int, dict[str, float]]:
    """DiNTS' rule (SwinUNETR with scale 2): interpolate between the batch-2 and batch-9 memory points."""
    mem_bs2 = scale * (6.0 + (20.0 - 6.0) * (c - 2) / (105 - 2))
    mem_bs9 = scale * (24.0 + (74.0 - 24.0) * (c - 2) / (105 - 2))
    raw = 2 + (9 - 2) * (mem - mem_bs2) / (mem_bs9 - mem_bs2)
    return max(int(raw), 1), {"mem_gib": round(mem, 3), "mem_bs2_gib": round(mem_bs2, 3),
                              "mem_bs9_gib": round(mem_bs9, 3), "batch_unrounded": round(raw, 3)}


def patch_size(stats: DatasetStats, multiple: int) -> list[int]:
    """The templates' patch: 96 per axis, shrunk to a multiple of `multiple` (32 DiNTS, 64 SwinUNETR) on small images."""
    if stats.max_shape is None:
        return list(DEFAULT_PATCH)
    return [max(multiple, s // multiple * multiple) if s < p else p for p, s in zip(DEFAULT_PATCH, stats.max_shape)]


def dints(stats: DatasetStats | None, gpu: GpuProfile, output_classes: int = TEMPLATE_OUTPUT_CLASSES,
          free_bytes: int | None = None, patch: Sequence[int] | None = None) -> AutoScale:
    """DiNTS `scripts/train.py` pre_operation: num_patches_per_iter from free GPU memory, epochs from data size."""
    mem = max(1.0, free_gib(gpu, free_bytes) - 1.0)
    batch, details = _interpolated_batch(mem, output_classes, 1.0)
    p = list(patch) if patch is not None else (patch_size(stats, 32) if stats else list(DEFAULT_PATCH))
    factor = 1.0
    if stats is not None:  # the template skips this factor when the stats are missing
        m = stats.mean_shape
        factor *= 1251.0 / stats.n_cases * (m[0] / 240.0) * (m[1] / 240.0) * (m[2] / 155.0)
    factor *= (96.0 / p[0]) * (96.0 / p[1]) * (96.0 / p[2])
    factor = max(1.0, factor / 6.0)
    epochs = int(400.0 * factor / batch)
    details.update({"epoch_factor": round(factor, 4), "output_classes": output_classes})
    return AutoScale("dints", batch, epochs, p, 2 * batch, details)


def swinunetr(stats: DatasetStats | None, gpu: GpuProfile, output_classes: int = TEMPLATE_OUTPUT_CLASSES,
              free_bytes: int | None = None, total_patches: int = SWINUNETR_TOTAL_PATCHES,
              max_epochs: int = SWINUNETR_MAX_EPOCHS, patch: Sequence[int] | None = None) -> AutoScale:
    """SwinUNETR `scripts/algo.py` auto_scale: DiNTS' memory points doubled; epochs from a total patch count."""
    mem = max(1.0, free_gib(gpu, free_bytes) - 1.0)
    batch, details = _interpolated_batch(mem, output_classes, 2.0)
    per_image = 2 * batch
    n = stats.n_cases if stats else 1
    epochs = min(max_epochs, int(total_patches / n / per_image))
    p = list(patch) if patch is not None else (patch_size(stats, 64) if stats else list(DEFAULT_PATCH))
    details.update({"total_patches": total_patches, "max_epochs": max_epochs, "output_classes": output_classes})
    return AutoScale("swinunetr", batch, epochs, p, per_image, details)


def is_anisotropic(spacing: Sequence[float]) -> bool:
    """The SegResNet templates' test: in-plane spacing over slice spacing outside 0.75..1.25."""
    ratio = 0.5 * (spacing[0] + spacing[1]) / spacing[2]
    return not 0.75 <= ratio <= 1.25


def segresnet(stats: DatasetStats | None, gpu: GpuProfile, output_classes: int = TEMPLATE_OUTPUT_CLASSES,
              auto_scale_batch: bool = True, auto_scale_roi: bool = False, auto_scale_filters: bool = False,
              roi_default: Sequence[int] = SEGRESNET_ROI, levels_limit: int = 5) -> AutoScale:
    """SegResNet `scripts/utils.py` auto_adjust_network_settings (run at training time) + generation-time epochs."""
    gpu_mem = gpu.total_gib  # smallest *total* memory of the visible GPUs, GiB
    base = list(roi_default)
    base_numel = math.prod(base)
    any_scale = auto_scale_batch or auto_scale_roi or auto_scale_filters
    aniso = bool(stats and is_anisotropic(stats.spacing))
    if any_scale:
        gpu_factor_init = gpu_factor = max(1.0, gpu_mem / 16.0)
        if aniso:
            gpu_factor = max(1.0, 0.8 * gpu_factor)
    else:
        gpu_factor_init = gpu_factor = 1.0
    roi = [float(r) for r in base]
    if output_classes > 20:  # many classes: shrink the ROI below what the GPU can hold
        base_adjust = gpu_mem / (0.2 * output_classes + 12.0)
        if gpu_mem < 17:
            base_adjust *= 0.5
        if base_adjust < 0.95:
            side = max(1, int((base_numel * base_adjust) ** (1.0 / 3.0) / 16)) * 16
            roi = [float(side)] * 3
            base_numel = math.prod(roi)
    image = [float(s) for s in ((stats.median_shape or stats.mean_shape) if stats else roi)]
    image = [math.floor(s) for s in image]
    roi = [min(r, s) for r, s in zip(roi, image)]
    max_numel = base_numel * gpu_factor
    while auto_scale_roi and math.prod(roi) < max_numel:  # ROI auto-scaling only (off in the template)
        old = math.prod(roi)
        roi = [min(r * 1.15, s) for r, s in zip(roi, image)]
        if math.prod(roi) == old:
            break
    levels = min(min(math.floor(math.log2(r)) for r in roi), levels_limit)
    unit = 2 ** (levels - 1)
    roi = [unit * max(2, math.floor(r / unit)) for r in roi]
    init_filters = 32
    if auto_scale_filters and math.prod(roi) < base_numel * gpu_factor:
        init_filters = int(max(32, math.floor(4 * (base_numel / math.prod(roi))) * 8))
        gpu_factor_init *= init_filters / 32
        gpu_factor *= init_filters / 32
    batch = int(1.1 * gpu_factor_init) if auto_scale_batch and math.prod(roi) < base_numel * gpu_factor_init else 1
    n = stats.n_cases if stats else 1
    epochs = int(min(1250, max(300, math.ceil(80000.0 / n))))  # algo.py at bundle generation; never recomputed
    details = {"gpu_mem_gib": round(gpu_mem, 3), "gpu_factor_init": round(gpu_factor_init, 4),
               "gpu_factor": round(gpu_factor, 4), "anisotropic": aniso, "levels": levels,
               "init_filters": init_filters, "output_classes": output_classes,
               "num_epochs_note": "written once by algo.py at bundle generation (clip(ceil(80000 / n_cases), 300, "
                                  "1250)); segmenter.py reads it from the YAML and never recomputes it"}
    return AutoScale("segresnet", batch, epochs, [int(r) for r in roi], None, details)


def auto_scale(model: str, stats: DatasetStats | None, gpu: GpuProfile,
               output_classes: int = TEMPLATE_OUTPUT_CLASSES) -> AutoScale:
    """What the `model` template (segresnet, swinunetr, dints) would choose on `gpu` for `stats`."""
    if model == "dints":
        return dints(stats, gpu, output_classes)
    if model == "swinunetr":
        return swinunetr(stats, gpu, output_classes)
    if model == "segresnet":
        return segresnet(stats, gpu, output_classes)
    raise CellcheckError(f"unknown model {model!r}; choose segresnet, swinunetr or dints")


# --- generated bundles -----------------------------------------------------------------------------------

#: Where each template keeps the values auto-scaling decides, in configs/hyper_parameters.yaml
#: ('#' separates nesting levels, as in MONAI bundle configs).
BUNDLE_KEYS: dict[str, dict[str, str]] = {
    "dints": {"batch_size": "training#num_patches_per_iter", "num_patches_per_image": "training#num_patches_per_image",
              "num_epochs": "training#num_epochs", "roi_size": "training#patch_size",
              "output_classes": "training#output_classes", "auto_scale_allowed": "training#auto_scale_allowed"},
    "swinunetr": {"batch_size": "num_patches_per_iter", "num_patches_per_image": "num_patches_per_image",
                  "num_epochs": "num_epochs", "roi_size": "patch_size", "output_classes": "output_classes",
                  "auto_scale_allowed": "auto_scale_allowed"},
    "segresnet": {"batch_size": "num_images_per_batch", "num_epochs": "num_epochs", "roi_size": "roi_size",
                  "output_classes": "output_classes", "auto_scale_allowed": "auto_scale_allowed"},
}


@dataclass
class BundleConfig:
    """The auto-scaled values found in a generated Auto3DSeg bundle (None where a key is absent)."""

    path: Path
    model: str
    values: dict[str, Any]
    auto_scale_batch: bool | None = None


def read_bundle(path: Path, model: str | None = None) -> BundleConfig:
    """Read a bundle directory (or its hyper_parameters.yaml) and pick out the values auto-scaling sets."""
    import yaml

    path = Path(path)
    hp = path / "configs" / "hyper_parameters.yaml" if path.is_dir() else path
    if not hp.is_file():
        raise CellcheckError(f"{path}: no configs/hyper_parameters.yaml; give the folder of a generated Auto3DSeg "
                             "bundle (e.g. work_dir/dints_0)")
    try:
        doc = yaml.safe_load(hp.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CellcheckError(f"{hp}: cannot read the bundle config ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); fix the YAML") from None
    if not isinstance(doc, dict):
        raise CellcheckError(f"{hp}: not a mapping of hyper-parameters")
    model = model or _guess_model(path, doc)
    values = {name: resolve_key(doc, key) for name, key in BUNDLE_KEYS[model].items()}
    if model == "segresnet" and values.get("batch_size") is None:
        values["batch_size"] = resolve_key(doc, "batch_size")
    asb = resolve_key(doc, "auto_scale_batch") if model == "segresnet" else None
    return BundleConfig(hp, model, values, bool(asb) if asb is not None else None)


def _guess_model(path: Path, doc: dict[str, Any]) -> str:
    name = (path if path.is_dir() else path.parent.parent).name.lower()
    for model in ("swinunetr", "segresnet", "dints"):
        if name.startswith(model):
            return model
    if isinstance(doc.get("training"), dict) and "num_patches_per_iter" in doc["training"]:
        return "dints"
    if "num_patches_per_iter" in doc:
        return "swinunetr"
    if "roi_size" in doc:
        return "segresnet"
    raise CellcheckError(f"{path}: cannot tell which template generated this bundle; pass --model")


def resolve_key(doc: dict[str, Any], key: str, depth: int = 0) -> Any:
    """Value at a '#'-separated key; follows plain '@other#key' references, leaves '$' expressions as text."""
    node: Any = doc
    for part in key.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, str) and node.startswith("@") and depth < 8:
        return resolve_key(doc, node[1:], depth + 1)
    return node


def stale_config(bundle: BundleConfig, expected: AutoScale, gpu: GpuProfile) -> list[Finding]:
    """`stale-config` warnings for each auto-scaled value of a bundle that differs from what `gpu` would get."""
    findings: list[Finding] = []
    allowed = bundle.values.get("auto_scale_allowed")
    for name in ("batch_size", "num_patches_per_image", "num_epochs", "roi_size"):
        want = getattr(expected, name)
        if want is None:
            continue
        have = bundle.values.get(name)
        key = BUNDLE_KEYS[bundle.model].get(name, name)
        if have is None or isinstance(have, str):
            continue  # absent or an expression: missing keys are the gate's check, not a stale value
        if _same(have, want):
            continue
        recomputed = _recomputed_at_run_time(bundle, name)
        where = ("the template recomputes it when training starts, but this YAML is what a reader or a "
                 "resumed/copied run sees" if recomputed else "the template uses it as written")
        findings.append(Finding(
            check="stale-config", severity=Severity.WARNING, case=None, path=str(bundle.path),
            message=(f"{key} is {have} but Auto3DSeg's {bundle.model} rule gives {want} on {gpu.name} "
                     f"({gpu.total_bytes / GiB:.1f} GiB); {where}; regenerate the bundle for this GPU or set it"),
            details={"key": key, "config_value": have, "expected": want, "gpu": gpu.name,
                     "recomputed_at_run_time": recomputed, "auto_scale_allowed": allowed},
        ))
    return findings


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(have, (list, tuple)) and [int(v) for v in have] == [int(v) for v in want]
    try:
        return int(have) == int(want)
    except (TypeError, ValueError):
        return False


def _recomputed_at_run_time(bundle: BundleConfig, name: str) -> bool:
    allowed = bool(bundle.values.get("auto_scale_allowed"))
    if bundle.model == "dints":  # train.py pre_operation rewrites patches and epochs
        return allowed and name in ("batch_size", "num_patches_per_image", "num_epochs")
    if bundle.model == "swinunetr":  # newer train.py pre_operation; older templates only at generation
        return allowed and name in ("batch_size", "num_patches_per_image", "num_epochs")
    if bundle.model == "segresnet":  # segmenter.py: batch (and ROI) at run time, never epochs
        return allowed and name == "batch_size" and bool(bundle.auto_scale_batch)
    return False
