"""Per-class probability maps from trained checkpoints: sliding window, ensemble, NIfTI or zarr out.

    cellcheck infer --checkpoint A.pt [--checkpoint B.pt ...] IMAGE [IMAGE ...] --output-dir DIR
                    [--file-format nifti|zarr] [--overlap 0.25] [--device cpu] [--overwrite]

Images are read by the audit's readers (`cellcheck.readers.read_volume`) and become network input by
the intensity rule stored in the checkpoints (`cellcheck.intensity`), the one the model trained with.
Each model slides its own ROI over the image with gaussian blending, its logits become sigmoid
probabilities (classes are independent), and the ensemble is the mean of those probabilities.
Outputs, written atomically: `<image>_probabilities.nii.gz` (4D float32, class on the last axis, the
input's affine, the class names in a JSON header extension: `class_names_of`) or
`<image>_probabilities.zarr` (zarr format-2 array (C, Z, Y, X) float32, readable with zarr 2 and 3, with
attributes `class_names` and xarray's `_ARRAY_DIMENSIONS`). Every input is checked before anything is
written; a map already in the output folder is not replaced without `overwrite`; a failed run leaves
no output folder it created.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from cellcheck.cellmap.reader import RawReader
from cellcheck.cellmap.stores import open_store
from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.errors import CellcheckError
from cellcheck.files import write_atomic, write_folder_atomic
from cellcheck.intensity import IntensityRule
from cellcheck.models.networks import MODELS, build_network, outputs_as_list
from cellcheck.readers.arrays import VolumeArray, read_volume
from cellcheck.readers.volume import ReadError
from cellcheck.readers.zarr_compat import create_array, create_group
from trainer.validation import device_input
from trainer.windows import tiles

__all__ = [
    "class_names_of",
    "load_checkpoint_model",
    "network_input",
    "predict_to_files",
    "read_image",
    "sliding_window_probabilities",
]

FORMATS = ("nifti", "zarr")
_SUFFIX = {"nifti": "_probabilities.nii.gz", "zarr": "_probabilities.zarr"}


# --- the ensemble ----------------------------------------------------------------------------------------


def _rois_per_model(roi_size: Sequence[int] | Sequence[Sequence[int]], n_models: int) -> list[tuple[int, ...]]:
    """One ROI for all models, or one per model."""
    if len(roi_size) and all(isinstance(r, (int, np.integer)) for r in roi_size):
        return [tuple(int(r) for r in roi_size)] * n_models  # type: ignore[union-attr]
    rois = [tuple(int(v) for v in r) for r in roi_size]  # type: ignore[union-attr]
    if len(rois) != n_models:
        raise ValueError(f"got {len(rois)} ROIs for {n_models} models; pass one ROI or one per model")
    return rois


def sliding_window_probabilities(
    models: Sequence[nn.Module],
    image: torch.Tensor,
    roi_size: Sequence[int] | Sequence[Sequence[int]],
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Mean sigmoid probability of an ensemble over a whole image; why: crops are larger than any training patch.

    (1, 1, Z, Y, X) float32 -> (C, Z, Y, X) float32 in [0, 1], on the CPU. `roi_size` is one (Z, Y, X)
    for all models or one per model. Windows run on `device` (default: where the first model's
    parameters are), are blended with a gaussian and stitched on the CPU; an image smaller than the ROI
    is padded with zeros and cropped back. A model returning a list (deep supervision) counts by its
    first, full-resolution output. Each model is put in eval mode and restored afterwards.
    """
    from monai.inferers import sliding_window_inference

    if not models:
        raise ValueError("no model to run; pass at least one")
    if image.ndim != 5 or image.shape[:2] != (1, 1):
        raise ValueError(f"image must be (1, 1, Z, Y, X), got {tuple(image.shape)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    rois = _rois_per_model(roi_size, len(models))
    if device is None:
        first = next(iter(models[0].parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if hasattr(image, "as_tensor"):  # a MONAI MetaTensor (LoadImage): plain tensors in, plain tensors out
        image = image.as_tensor()
    image = image.detach().to("cpu", torch.float32)

    total: torch.Tensor | None = None
    for model, roi in zip(models, rois):
        was_training = model.training
        model.eval()

        def head(x: torch.Tensor, model: nn.Module = model) -> torch.Tensor:
            with torch.autocast(device.type, enabled=amp):
                return outputs_as_list(model(x))[0].float()

        try:
            with torch.no_grad():
                logits = sliding_window_inference(
                    image, roi, sw_batch_size, head, overlap=overlap, mode="gaussian", padding_mode="constant",
                    cval=0.0, sw_device=device, device="cpu",
                )
                prob = torch.sigmoid_(torch.as_tensor(logits)[0].float())
        finally:
            model.train(was_training)
        if total is None:
            total = prob
        elif prob.shape != total.shape:
            raise ValueError(f"models disagree on the output: {tuple(prob.shape)} vs {tuple(total.shape)}")
        else:
            total.add_(prob)
    assert total is not None
    if len(models) > 1:
        total.div_(len(models))
    return total


# --- checkpoints -----------------------------------------------------------------------------------------


def _strip_wrappers(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the key prefixes DistributedDataParallel ("module.") and torch.compile ("_orig_mod.") add."""
    for prefix in ("module.", "_orig_mod."):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_checkpoint_model(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """The network a trainer checkpoint describes, weights loaded, on the CPU; why: inference needs no trainer.

    Checkpoint: a torch.save dict {"model": segresnet|swinunetr|dints, "config": {"num_classes",
    "roi_size", "deep_supervision", ...}, "state_dict": ..., "intensity": {"dtype", "low", "high"}}.
    Returns (module in eval mode, config with "model", "epoch" and "intensity" (an IntensityRule)
    filled in; a checkpoint from before the rule was stored trained on uint8 / 255). Raises
    CellcheckError naming the file and the fix.
    """
    path = Path(path)
    fix = "pass a .pt file written by the trainer (trainer/train.py)"
    if not path.is_file():
        raise CellcheckError(f"{path}: checkpoint not found; {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types on a truncated or foreign file
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CellcheckError(f"{path}: not a readable checkpoint ({reason}); {fix}") from None
    missing = [k for k in ("model", "config", "state_dict") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CellcheckError(f"{path}: checkpoint lacks {', '.join(missing)}; {fix}")
    model, config = ckpt["model"], ckpt["config"]
    if model not in MODELS:
        raise CellcheckError(f"{path}: unknown model {model!r} in the checkpoint; expected one of {', '.join(MODELS)}")
    if not isinstance(config, dict) or "roi_size" not in config:
        raise CellcheckError(f"{path}: checkpoint config has no roi_size; {fix}")
    epoch = ckpt.get("epoch", (ckpt.get("state") or {}).get("epoch"))
    try:
        rule = IntensityRule.from_json(ckpt["intensity"]) if "intensity" in ckpt else IntensityRule.for_dtype("uint8")
    except (KeyError, TypeError, ValueError):
        raise CellcheckError(f"{path}: the checkpoint's intensity rule is malformed; {fix}") from None
    config = {**config, "model": model, "epoch": epoch, "intensity": rule}
    if isinstance(ckpt.get("class_names"), (list, tuple)):  # the run's class map, in channel order
        config["class_names"] = list(ckpt["class_names"])
    config.setdefault("num_classes", len(DEFAULT_CLASS_MAP))  # before class maps: the default one
    try:
        net = build_network(
            model, num_classes=int(config["num_classes"]), in_channels=int(config.get("in_channels", 1)),
            roi_size=config["roi_size"], deep_supervision=bool(config.get("deep_supervision", True)),
            width=float(config.get("network_width", 1.0)),
        )
        net.load_state_dict(_strip_wrappers(dict(ckpt["state_dict"])))
    except (ValueError, RuntimeError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CellcheckError(f"{path}: weights do not fit a {model} network ({reason}); {fix}") from None
    return net.eval(), config


# --- images in, probabilities out ------------------------------------------------------------------------


def _image_stem(path: Path) -> str:
    """Output name stem: crop.nii.gz -> crop; store.zarr/recon-1/em/s0 -> store_recon-1_em_s0."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    parts = path.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].endswith(".zarr"):
            return "_".join([parts[i][: -len(".zarr")], *parts[i + 1:]])
    return path.stem


def read_image(path: Path | str) -> VolumeArray:
    """A NIfTI file or zarr array / OME-NGFF group (finest level) as 3D voxels, by the audit's readers.

    Voxels in the file's array order (NIfTI i, j, k; zarr z, y, x) with dtype as stored, and the affine
    the outputs keep. Raises CellcheckError naming the file.
    """
    try:
        return read_volume(path)
    except ReadError as exc:
        raise CellcheckError(str(exc)) from None


def network_input(volume: VolumeArray, rule: IntensityRule) -> torch.Tensor:
    """(Z, Y, X) stored voxels -> (1, 1, Z, Y, X) float32 by the model's intensity rule; why: as in training."""
    return torch.from_numpy(rule.apply(volume.data, str(volume.header.path)))[None, None]


#: NIfTI header extension code of the JSON that names the classes (6: a comment, which readers keep and skip).
NIFTI_COMMENT = 6


def _write_nifti(prob: np.ndarray, volume: VolumeArray, out: Path, class_names: list[str], source: Path) -> None:
    """(C, Z, Y, X) -> 4D gzipped NIfTI with the class on the last axis, the input's affine and the class
    names (a JSON header extension, as the zarr output's attributes), atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(np.moveaxis(prob, 0, -1), volume.affine)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    meta = {"class_names": class_names, "source_image": str(source), "axis": "class is the 4th axis"}
    img.header.extensions.append(nib.nifti1.Nifti1Extension(NIFTI_COMMENT, json.dumps(meta).encode()))

    def stream(fh: BinaryIO) -> None:
        with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as gz:
            img.to_stream(gz)

    write_atomic(out, stream)


def class_names_of(path: Path | str) -> list[str] | None:
    """The class names a probability map written by infer carries, in channel order (None: it names none)."""
    path = Path(path)
    if path.suffix == ".zarr" or path.is_dir():
        from cellcheck.readers.zarr_compat import open_node

        names = dict(open_node(path).attrs).get("class_names")
        return list(names) if isinstance(names, list) else None
    import nibabel as nib

    for ext in nib.load(path).header.extensions:
        try:
            meta = json.loads(ext.get_content())
        except (ValueError, TypeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("class_names"), list):
            return list(meta["class_names"])
    return None


def _write_zarr(prob: np.ndarray, out: Path, class_names: list[str], source: Path) -> None:
    """(C, Z, Y, X) -> zarr format-2 array (zarr 2 and 3 read it), built beside `out` and swapped in whole."""
    def fill(tmp: Path) -> None:
        chunks = (1, *(min(n, 128) for n in prob.shape[1:]))
        arr = create_array(tmp, prob.shape, "float32", chunks,
                           {"class_names": class_names, "source_image": str(source),
                            "_ARRAY_DIMENSIONS": ["class", "z", "y", "x"]})
        arr[...] = prob

    write_folder_atomic(out, fill)


def _class_names(config: dict[str, Any]) -> list[str]:
    n = int(config["num_classes"])
    names = config.get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [str(c) for c in names]
    if n == len(DEFAULT_CLASS_MAP):  # a checkpoint from before class maps trained the default one
        return list(DEFAULT_CLASS_MAP.names)
    return [f"class_{i}" for i in range(n)]


def _torch_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CellcheckError(f"device {device!r}: {exc}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CellcheckError(f"device {device!r}: no CUDA GPU is visible here; use --device cpu")
    return dev


def predict_to_files(
    checkpoints: Sequence[Path | str],
    images: Sequence[Path | str],
    output_dir: Path | str,
    fmt: str = "nifti",
    overlap: float = 0.25,
    device: str | torch.device = "cpu",
    sw_batch_size: int = 1,
    amp: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Ensemble probability maps for each image, written atomically; why: the end of the pipeline is files.

    Each image (NIfTI, zarr array or OME-NGFF group) -> `output_dir/<stem>_probabilities.nii.gz`
    (X, Y, Z, C) float32 in file order with the input affine, or `.zarr` (C, Z, Y, X) float32, both
    naming their classes. Checkpoints may mix models and ROIs, not intensity rules. Every image's
    header is read before anything is written; an output already there is refused unless `overwrite`;
    when the run fails, a folder it created is removed again. Returns the written paths in input order.
    """
    if fmt not in FORMATS:
        raise CellcheckError(f"unknown output format {fmt!r}; choose nifti or zarr")
    if not checkpoints:
        raise CellcheckError("no checkpoint given; pass --checkpoint PATH at least once")
    if not images:
        raise CellcheckError("no image given; pass one or more NIfTI or zarr paths")
    if not 0.0 <= overlap < 1.0:
        raise CellcheckError(f"overlap {overlap} is outside [0, 1); use e.g. 0.25 or 0.5")
    dev = _torch_device(device)
    images = [Path(p) for p in images]
    output_dir = Path(output_dir)
    outputs = [output_dir / f"{_image_stem(p)}{_SUFFIX[fmt]}" for p in images]
    seen: dict[Path, Path] = {}
    for src, out in zip(images, outputs):
        if out in seen:
            raise CellcheckError(f"{src}: writes the same output as {seen[out]} ({out.name}); rename one of them")
        seen[out] = src
    missing = [p for p in images if not p.exists()]
    if missing:
        raise CellcheckError(f"{missing[0]}: image not found ({len(missing)} missing in all); check the paths")
    _check_headers(images)
    taken = [out for out in outputs if out.exists()]
    if taken and not overwrite:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise CellcheckError(f"{taken[0]}{more}: already exists; not replaced: move it away, choose another "
                             "--output-dir, or pass --overwrite")

    loaded = [load_checkpoint_model(p) for p in checkpoints]
    classes = {int(cfg["num_classes"]) for _, cfg in loaded}
    if len(classes) > 1:
        raise CellcheckError(f"{checkpoints[0]}: checkpoints disagree on num_classes {sorted(classes)}; ensemble like with like")
    rules = {cfg["intensity"] for _, cfg in loaded}
    if len(rules) > 1:
        raise CellcheckError(f"{checkpoints[0]}: checkpoints were trained on different image dtypes "
                             f"({', '.join(sorted(r.dtype for r in rules))}); ensemble like with like")
    rule = rules.pop()
    models = [net.to(dev) for net, _ in loaded]
    rois = [tuple(cfg["roi_size"]) for _, cfg in loaded]
    class_names = _class_names(loaded[0][1])
    created = _make_folder(output_dir)
    try:
        for src, out in zip(images, outputs):
            volume = read_image(src)
            x = network_input(volume, rule)
            prob = sliding_window_probabilities(models, x, rois, overlap=overlap, sw_batch_size=sw_batch_size,
                                                device=dev, amp=amp).numpy()
            try:
                if fmt == "nifti":
                    _write_nifti(prob, volume, out, class_names, src)
                else:
                    _write_zarr(prob, out, class_names, src)
            except OSError as exc:
                raise CellcheckError(f"{out}: cannot write ({exc.strerror or exc}); choose another --output-dir") from None
    except BaseException:
        if created is not None and not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)  # the folders this run made, holding nothing
        raise
    return outputs


# --- straight from the stores ----------------------------------------------------------------------------


def infer_store(
    checkpoints: Sequence[Path | str],
    store_path: Path | str,
    output_dir: Path | str,
    *,
    crop: str | None = None,
    box_nm: tuple[Sequence[float], Sequence[float]] | None = None,
    resolution: Sequence[float] | None = None,
    overlap: float = 0.25,
    device: str | torch.device = "cpu",
    amp: bool = False,
    overwrite: bool = False,
) -> Path:
    """Probability maps of a crop (or any box, in nm) of a CellMap store, at the checkpoint's resolution.

    Written window by window (each voxel from the window that owns it) into an OME-NGFF 0.4 multiscale
    group, zarr format 2: `s0` is (C, Z, Y, X) float32 with the true scale and translation (the centre
    of voxel 0 in nm), so it overlays the raw in a viewer; `class_names` in its attributes. Only a
    window of the raw is in memory at a time. Returns the written folder.
    """
    if (crop is None) == (box_nm is None):
        raise CellcheckError("give either --crop NAME or --box Z0,Y0,X0,Z1,Y1,X1 (nm) to read from a store")
    dev = _torch_device(device)
    loaded = [load_checkpoint_model(p) for p in checkpoints]
    rules = {cfg["intensity"] for _, cfg in loaded}
    if len(rules) > 1 or len({int(cfg["num_classes"]) for _, cfg in loaded}) > 1:
        raise CellcheckError(f"{checkpoints[0]}: the checkpoints disagree on classes or image dtype; ensemble like with like")
    resolution = tuple(resolution) if resolution else _trained_at(loaded, checkpoints[0])
    store = open_store(Path(store_path))
    reader = RawReader.at(store, resolution)
    lo_nm, hi_nm = box_nm if box_nm is not None else _crop_box_nm(store, crop)
    start, stop = reader.voxels(lo_nm, hi_nm)
    shape = tuple(b - a for a, b in zip(start, stop))
    if min(shape) <= 0:
        raise CellcheckError(f"the box {list(lo_nm)}..{list(hi_nm)} nm holds no voxel at {resolution} nm; widen it")
    roi = tuple(loaded[0][1]["roi_size"])
    models = [net.to(dev) for net, _ in loaded]
    rule, names = rules.pop(), _class_names(loaded[0][1])
    out = Path(output_dir) / f"{store.name}_{crop or 'box'}_probabilities.zarr"
    if out.exists() and not overwrite:
        raise CellcheckError(f"{out} already holds probability maps; pass --overwrite to replace them, or another "
                             "--output-dir")
    scale = list(reader.level.scale)
    attrs = {"multiscales": [{"version": "0.4", "name": out.stem, "axes": [
        {"name": "c", "type": "channel"}, *({"name": a, "type": "space", "unit": "nanometer"} for a in "zyx")],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, *scale]},
            {"type": "translation", "translation": [0.0, *reader.centre(start)]}]}]}],
        "class_names": names, "source": {"store": str(store.path), "crop": crop, "box_nm": [list(lo_nm), list(hi_nm)]}}

    def fill(tmp: Path) -> None:
        create_group(tmp, attrs)
        arr = create_array(tmp / "s0", (len(names), *shape), "float32", (1, *(min(n, 64) for n in shape)), {})
        with torch.no_grad():
            for win in tiles(shape, roi, overlap):
                image = reader.read(tuple(s + a for s, a in zip(start, win.lo)), tuple(s + b for s, b in zip(start, win.hi)))
                x = device_input(image, rule, dev)[None, None]
                prob = None
                for net in models:
                    with torch.autocast(dev.type, enabled=amp):
                        p = torch.sigmoid(outputs_as_list(net(x))[0][0].float())
                    prob = p if prob is None else prob.add_(p)
                prob = (prob / len(models))[(slice(None), *win.owned)].cpu().numpy()
                arr[(slice(None), *(slice(a, b) for a, b in zip(win.own_lo, win.own_hi)))] = prob

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_folder_atomic(out, fill)
    except OSError as exc:
        raise CellcheckError(f"{out}: cannot write ({exc.strerror or exc}); choose another --output-dir") from None
    return out


def _trained_at(loaded: list[tuple[nn.Module, dict[str, Any]]], first: Path | str) -> tuple[float, ...]:
    """The voxel size the checkpoints trained at (their config's resolution), one for all of them."""
    found = {tuple(cfg.get("resolution") or ()) for _, cfg in loaded}
    if len(found) != 1 or not next(iter(found)):
        raise CellcheckError(f"{first}: the checkpoint records no training resolution (trained on a datalist); give "
                             "--resolution NM")
    return next(iter(found))


def _crop_box_nm(store, crop: str) -> tuple[list[float], list[float]]:
    """A crop's physical box (nm): from the corner of its first voxel to the far corner of its last one."""
    if crop not in store.crop_paths:
        raise CellcheckError(f"{store.path}: no crop {crop!r} in this store (it has {', '.join(sorted(store.crop_paths)) or 'none'})")
    opened = store.open_crop(crop)
    arrays = list(opened.classes.values()) or ([opened.all] if opened.all else [])
    if not arrays:
        raise CellcheckError(f"{opened.path}: the crop has no readable label array to take its box from; use --box")
    ref = arrays[0]
    lv = ref.finest
    lo = [t - s / 2 for t, s in zip(lv.translation, lv.scale)]
    return lo, [a + n * s for a, n, s in zip(lo, ref.shape, lv.scale)]
def _check_headers(images: Sequence[Path]) -> None:
    """Open every image's header (no voxels) before anything is written: a bad input fails the run up front."""
    from cellcheck.readers import open_volume

    for path in images:
        try:
            open_volume(path)
        except ReadError as exc:
            raise CellcheckError(str(exc)) from None


def _make_folder(folder: Path) -> Path | None:
    """Create the output folder (and its parents); return the topmost folder created, None if it existed."""
    top = None
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        top = parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CellcheckError(f"{folder}: cannot create the output folder ({exc.strerror or exc}); "
                             "choose another --output-dir") from None
    return top
