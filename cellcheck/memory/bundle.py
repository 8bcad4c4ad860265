"""A generated Auto3DSeg bundle's data side: DataLoader settings and the training transforms, for the host-RAM model.

`work_dir/dints_0/configs/hyper_parameters.yaml` (DiNTS keeps these under `training`, SwinUNETR at
the top) gives `num_workers`, `num_images_per_batch` (crops per DataLoader batch),
`num_crops_per_image` (patches cut per crop) and `roi_size`; `configs/transforms_train.yaml` the
chain as `algo.py` filled it (the label expansion and crop-label `Lambdad`s included), followed by
`cellcheck.memory.chains.interpret`. The templates leave `prefetch_factor` unset: PyTorch's 2.
At run time DiNTS and SwinUNETR recompute `num_crops_per_image` as 2 x their batch when
`auto_scale_allowed` is true; `predict` passes the recomputed value in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellcheck.errors import CellcheckError
from cellcheck.memory import auto_scale as autoscale
from cellcheck.memory.chains import Chain, ChainContext, interpret

#: Where each template keeps its loader keys.
_PREFIX = {"dints": "training#", "swinunetr": "", "segresnet": ""}


@dataclass
class BundleData:
    """The data-side values of a bundle (None where absent) and its training transforms (None without the file)."""

    path: Path
    model: str
    workers: int | None
    batch: int | None  # num_images_per_batch: crops per DataLoader batch
    crops_per_image: int | None
    roi: list[int] | None
    auto_scale_allowed: bool | None
    transforms: Any
    doc: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "model": self.model, "num_workers": self.workers,
                "num_images_per_batch": self.batch, "num_crops_per_image": self.crops_per_image,
                "roi_size": self.roi, "auto_scale_allowed": self.auto_scale_allowed,
                "transforms_train": self.transforms is not None}


def read_bundle_data(path: Path, model: str | None = None) -> BundleData:
    """Loader settings and `transforms_train` of the bundle at `path` (its folder or its hyper_parameters.yaml)."""
    config = autoscale.read_bundle(Path(path), model)
    configs = config.path.parent
    hp = _yaml(config.path)
    transforms_file = configs / "transforms_train.yaml"
    tdoc = _yaml(transforms_file) if transforms_file.is_file() else {}
    doc = {**tdoc, **hp}
    prefix = _PREFIX[config.model]

    def value(*keys: str) -> Any:
        for key in keys:
            found = autoscale.resolve_key(doc, prefix + key)
            if found is None:
                found = autoscale.resolve_key(doc, key)
            if found is not None and not (isinstance(found, str) and found.startswith("$")):
                return found
        return None

    roi = value("roi_size", "patch_size")
    return BundleData(
        path=configs.parent, model=config.model, workers=_int(value("num_workers"), "num_workers", config.path),
        batch=_int(value("num_images_per_batch"), "num_images_per_batch", config.path),
        crops_per_image=_int(value("num_crops_per_image", "num_patches_per_image"), "num_crops_per_image",
                             config.path),
        roi=[int(r) for r in roi] if isinstance(roi, list) and all(isinstance(r, int) for r in roi) else None,
        auto_scale_allowed=value("auto_scale_allowed"), transforms=tdoc.get("transforms_train"), doc=doc)


def bundle_chain(bundle: BundleData, roi: list[int], crops_per_image: int, image_dtype: str = "uint8",
                 label_dtype: str = "uint8") -> Chain | None:
    """The bundle's training chain in bytes per voxel, None when it has no transforms_train.yaml."""
    if bundle.transforms is None:
        return None
    prefix = _PREFIX[bundle.model]
    given = {"roi_size": roi, "num_crops_per_image": crops_per_image, "num_patches_per_image": crops_per_image}

    def resolve(ref: str) -> Any:
        key = ref.lstrip("@")
        short = key[len(prefix):] if prefix and key.startswith(prefix) else key
        if short in given:
            return given[short]
        return autoscale.resolve_key(bundle.doc, key)

    ctx = ChainContext(image_dtype=image_dtype, label_dtype=label_dtype,
                       image_key=str(bundle.doc.get("image_key", "image")),
                       label_key=str(bundle.doc.get("label_key", "label")), resolve=resolve)
    try:
        return interpret(bundle.transforms, ctx, name=f"bundle {bundle.model}")
    except CellcheckError as exc:
        raise CellcheckError(f"{bundle.path / 'configs' / 'transforms_train.yaml'}: {exc}") from None


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CellcheckError(f"{path}: cannot read the bundle config ({type(exc).__name__}); fix the YAML") from None
    if not isinstance(doc, dict):
        raise CellcheckError(f"{path}: not a mapping; expected a generated Auto3DSeg bundle config")
    return doc


def _int(value: Any, key: str, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CellcheckError(f"{path}: {key} is {value!r}, not a whole number; fix the bundle's hyper-parameters")
    return value
