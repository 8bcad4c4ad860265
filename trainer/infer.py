"""Per-class probability maps from trained checkpoints: sliding window, ensemble, NIfTI or zarr out.

    python -m trainer.infer --checkpoint A.pt [--checkpoint B.pt ...] IMAGE [IMAGE ...] --output DIR
                            [--format nifti|zarr] [--overlap 0.25] [--device cpu]

Each model slides its own ROI over the image with gaussian blending, its logits become sigmoid
probabilities (classes are independent), and the ensemble is the mean of those probabilities.
Outputs: `<image>_probabilities.nii.gz` (4D float32, class on the last axis, the input's affine) or
`<image>_probabilities.zarr` (zarr v3 array (C, Z, Y, X) float32 with attribute `class_names`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from cellcheck.classes import CLASS_NAMES
from cellcheck.errors import CellcheckError
from trainer.networks import MODELS, build_network, outputs_as_list

__all__ = [
    "Image",
    "image_to_tensor",
    "infer_command",
    "load_checkpoint_model",
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
    "roi_size", "deep_supervision", ...}, "state_dict": ..., "epoch": ...}. Returns (module in eval
    mode, config with "model" and "epoch" filled in). Raises CellcheckError naming the file and the fix.
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
    config = {**config, "model": model, "epoch": ckpt.get("epoch")}
    config.setdefault("num_classes", len(CLASS_NAMES))
    try:
        net = build_network(
            model, num_classes=int(config["num_classes"]), in_channels=int(config.get("in_channels", 1)),
            roi_size=config["roi_size"], deep_supervision=bool(config.get("deep_supervision", True)),
        )
        net.load_state_dict(_strip_wrappers(dict(ckpt["state_dict"])))
    except (ValueError, RuntimeError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CellcheckError(f"{path}: weights do not fit a {model} network ({reason}); {fix}") from None
    return net.eval(), config


# --- images in, probabilities out ------------------------------------------------------------------------


@dataclass
class Image:
    """A volume read for inference: voxels in file order and what the writers need to keep."""

    data: np.ndarray  # 3D, as stored (uint8 or float)
    affine: np.ndarray  # 4 x 4; the NIfTI one, or diag(scale) for zarr
    header: Any = None  # nibabel header of a NIfTI input


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


def _squeeze_to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise CellcheckError(f"{path}: image has shape {data.shape}; inference needs one 3D channel")
    return data


def _read_zarr(path: Path) -> Image:
    import zarr

    from cellcheck.sources.ome_ngff import MetadataError, multiscales_of, parse_levels

    try:
        node = zarr.open(store=str(path), mode="r")
        scale = None
        if not isinstance(node, zarr.Array):
            attrs = dict(node.attrs)
            ms = multiscales_of(attrs)
            if not ms:
                raise CellcheckError(f"{path}: a zarr group without OME-NGFF multiscales; pass the array itself")
            level_path = ms[0]["datasets"][0]["path"]
            try:
                scale = {lv.path: lv.scale for lv in parse_levels(attrs)}.get(level_path)
            except MetadataError:
                scale = None
            node = node[level_path]
        data = np.asarray(node[...])
    except CellcheckError:
        raise
    except Exception as exc:
        raise CellcheckError(f"{path}: cannot read the zarr image ({type(exc).__name__}: {exc}); check the path") from None
    data = _squeeze_to_3d(data, path)
    affine = np.eye(4)
    if scale is not None and len(scale) >= 3:
        affine[:3, :3] = np.diag(scale[-3:])
    return Image(data, affine)


def read_image(path: Path | str) -> Image:
    """A NIfTI file or zarr array / OME-NGFF group (first multiscale level) as 3D voxels; why: one reader for both.

    Returns voxels in the file's array order (NIfTI i, j, k; zarr z, y, x) with dtype as stored.
    """
    path = Path(path)
    if not path.exists():
        raise CellcheckError(f"{path}: image not found; check the path")
    if path.is_dir() or path.suffix == ".zarr":
        return _read_zarr(path)
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CellcheckError(f"{path}: cannot read the NIfTI image ({type(exc).__name__}: {exc}); re-export it") from None
    return Image(_squeeze_to_3d(data, path), np.asarray(img.affine, dtype=np.float64), img.header)


def image_to_tensor(data: np.ndarray, path: Path | str = "image") -> torch.Tensor:
    """Raw EM voxels as network input; why: the models were trained on uint8 EM scaled to 0..1.

    (Z, Y, X) uint8 (or integer within 0..255) -> (1, 1, Z, Y, X) float32 / 255; float -> as is.
    """
    if np.issubdtype(data.dtype, np.floating):
        arr = data.astype(np.float32, copy=False)
    elif np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
        if data.dtype != np.uint8 and data.size and (int(data.min()) < 0 or int(data.max()) > 255):
            raise CellcheckError(
                f"{path}: {data.dtype} voxels span {int(data.min())}..{int(data.max())}; the models expect uint8 EM "
                "(0..255) or floats scaled to 0..1, convert the image first"
            )
        arr = data.astype(np.float32) / np.float32(255.0)
    else:
        raise CellcheckError(f"{path}: unsupported voxel type {data.dtype}; convert the image to uint8 or float32")
    return torch.from_numpy(np.ascontiguousarray(arr))[None, None]


def _write_nifti(prob: np.ndarray, image: Image, out: Path) -> None:
    """(C, Z, Y, X) -> 4D NIfTI with the class on the last axis, via a temporary file and os.replace."""
    import nibabel as nib

    header = image.header.copy() if image.header is not None else None
    img = nib.Nifti1Image(np.moveaxis(prob, 0, -1), image.affine, header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp.nii.gz"
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_zarr(prob: np.ndarray, out: Path, class_names: list[str], source: Path) -> None:
    """(C, Z, Y, X) -> zarr v3 array in a temporary folder, then os.replace (an old output is swapped out)."""
    import zarr

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = out.parent / f".{out.name}.{uuid.uuid4().hex}.old"
    try:
        chunks = (1, *(min(n, 128) for n in prob.shape[1:]))
        arr = zarr.create_array(
            store=str(tmp), shape=prob.shape, dtype="float32", chunks=chunks, zarr_format=3, overwrite=True,
            attributes={"class_names": class_names, "source_image": str(source)},
            dimension_names=["class", "z", "y", "x"],
        )
        arr[...] = prob
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _class_names(config: dict[str, Any]) -> list[str]:
    n = int(config["num_classes"])
    names = config.get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [str(c) for c in names]
    if n == len(CLASS_NAMES):
        return list(CLASS_NAMES)
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
) -> list[Path]:
    """Ensemble probability maps for each image, written atomically; why: the end of the pipeline is files.

    Each image (NIfTI, zarr array or OME-NGFF group) -> `output_dir/<stem>_probabilities.nii.gz`
    (X, Y, Z, C) float32 in file order with the input affine, or `.zarr` (C, Z, Y, X) float32 with
    attribute class_names. Checkpoints may mix models and ROIs. Returns the written paths in input order.
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

    loaded = [load_checkpoint_model(p) for p in checkpoints]
    classes = {int(cfg["num_classes"]) for _, cfg in loaded}
    if len(classes) > 1:
        raise CellcheckError(f"{checkpoints[0]}: checkpoints disagree on num_classes {sorted(classes)}; ensemble like with like")
    models = [net.to(dev) for net, _ in loaded]
    rois = [tuple(cfg["roi_size"]) for _, cfg in loaded]
    class_names = _class_names(loaded[0][1])
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CellcheckError(f"{output_dir}: cannot create the output folder ({exc.strerror or exc}); choose another --output") from None

    for src, out in zip(images, outputs):
        image = read_image(src)
        x = image_to_tensor(image.data, src)
        prob = sliding_window_probabilities(models, x, rois, overlap=overlap, sw_batch_size=sw_batch_size,
                                            device=dev, amp=amp).numpy()
        try:
            if fmt == "nifti":
                _write_nifti(prob, image, out)
            else:
                _write_zarr(prob, out, class_names, src)
        except OSError as exc:
            raise CellcheckError(f"{out}: cannot write ({exc.strerror or exc}); choose another --output") from None
    return outputs


# --- command line -----------------------------------------------------------------------------------------


class _OneLineUsageErrors(click.Command):
    """A usage error (missing option, bad value) as one line on stderr and exit 2, like every other error."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            click.echo(f"cellcheck: {exc.format_message()} (see --help)", err=True)
            raise click.exceptions.Exit(2) from None


@click.command("infer", cls=_OneLineUsageErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Trainer checkpoint (.pt); repeat to ensemble (probabilities are averaged).")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the probability maps (created if missing).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="nifti", show_default=True,
              help="nifti: 4D, class last, input affine; zarr: v3 array (C, Z, Y, X).")
@click.option("--overlap", type=float, default=0.25, show_default=True, help="Sliding-window overlap in [0, 1).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--sw-batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass.")
@click.option("--amp/--no-amp", default=False, show_default=True, help="Mixed precision forward passes.")
def infer_command(checkpoints: tuple[Path, ...], images: tuple[Path, ...], output_dir: Path, fmt: str,
                  overlap: float, device: str, sw_batch_size: int, amp: bool) -> None:
    """Write per-class probability maps for IMAGES with one checkpoint or an ensemble."""
    ctx = click.get_current_context()
    try:
        written = predict_to_files(list(checkpoints), list(images), output_dir, fmt=fmt, overlap=overlap,
                                   device=device, sw_batch_size=sw_batch_size, amp=amp)
    except CellcheckError as exc:
        click.echo(f"cellcheck: {exc}", err=True)
        ctx.exit(exc.exit_code)
    except Exception as exc:  # a bug of ours or of a dependency: one line, never a silent exit 0
        if os.environ.get("CELLCHECK_DEBUG"):
            traceback.print_exc()
        click.echo(f"cellcheck: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(rerun with CELLCHECK_DEBUG=1 and report it)", err=True)
        ctx.exit(2)
    for path in written:
        click.echo(str(path))


if __name__ == "__main__":
    infer_command.main(prog_name="python -m trainer.infer")
