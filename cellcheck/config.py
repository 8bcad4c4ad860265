"""The training config: one YAML file, validated on load, with every default in one visible place.

Shared by `cellcheck gate` and the trainer, so both refuse the same configs. Missing keys
(FIELD_NOTES 12), smoke-test leftovers such as `num_epochs: 2` (6) and an unmasked loss on
partially annotated data (1) are findings, not crashes three days in.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from cellcheck.classes import CLASS_NAMES
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding

MODELS = ("segresnet", "swinunetr", "dints")
#: Losses the trainer knows; only "partial" masks unannotated channels.
LOSSES = ("partial", "dice_bce", "dicece")
#: Fewer epochs than this, without `smoke_test: true`, is a smoke-test value left in the config.
MIN_EPOCHS = 10

_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    name: str
    types: tuple[type, ...]
    default: Any
    doc: str
    valid: Callable[[Any], bool] | None = None
    rule: str = ""


def _positive(v: Any) -> bool:
    return v > 0


def _roi(v: Any) -> bool:
    return len(v) == 3 and all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in v)


SCHEMA: tuple[Key, ...] = (
    Key("model", (str,), _REQUIRED, "network", lambda v: v in MODELS, f"one of {', '.join(MODELS)}"),
    Key("datalist", (str,), _REQUIRED, "MONAI datalist JSON (or a folder of CellMap zarr stores)"),
    Key("dataroot", (str, type(None)), None, "folder datalist paths are relative to (default: the datalist's)"),
    Key("output_dir", (str,), _REQUIRED, "run folder: checkpoints, metrics.jsonl, memory.jsonl, gate report"),
    Key("fold", (int,), 0, "validation fold for datafold_read", lambda v: v >= 0, ">= 0"),
    Key("num_classes", (int,), len(CLASS_NAMES), "sigmoid output channels", _positive, "> 0"),
    Key("roi_size", (list,), _REQUIRED, "patch size in voxels (z, y, x)", _roi, "three positive integers"),
    Key("batch_size", (int,), _REQUIRED, "patches per GPU step", _positive, "> 0"),
    Key("num_patches_per_image", (int,), _REQUIRED, "patches drawn from each loaded crop", _positive, "> 0"),
    Key("num_epochs", (int,), _REQUIRED, "epochs", _positive, "> 0"),
    Key("num_epochs_per_validation", (int,), 1, "validate every N epochs", _positive, "> 0"),
    Key("early_stopping_patience", (int,), 10, "validations without improvement before stopping", _positive, "> 0"),
    Key("learning_rate", (float, int), 2e-4, "AdamW learning rate", _positive, "> 0"),
    Key("weight_decay", (float, int), 1e-5, "AdamW weight decay", lambda v: v >= 0, ">= 0"),
    Key("num_workers", (int,), 4, "DataLoader workers per rank", lambda v: v >= 0, ">= 0"),
    Key("prefetch_factor", (int,), 2, "batches each worker prepares ahead", _positive, "> 0"),
    Key("amp", (bool,), True, "mixed precision on CUDA (bf16 where supported)"),
    Key("deep_supervision", (bool,), True, "SegResNetDS deep supervision"),
    Key("loss", (str,), "partial", "partial (masked sigmoid Dice+BCE) or an unmasked baseline",
        lambda v: v in LOSSES, f"one of {', '.join(LOSSES)}"),
    Key("lambda_dice", (float, int), 1.0, "Dice weight", lambda v: v >= 0, ">= 0"),
    Key("lambda_bce", (float, int), 1.0, "BCE weight", lambda v: v >= 0, ">= 0"),
    Key("foreground_ratio", (float, int), 0.7, "share of patches centred on annotated foreground",
        lambda v: 0 <= v <= 1, "in 0..1"),
    Key("max_nan_steps", (int,), 5, "stop after this many non-finite losses in a row", _positive, "> 0"),
    Key("gpu", (str,), "l40s", "target GPU profile for the memory plan"),
    Key("gpus", (int,), 1, "GPUs (DDP ranks) per job", _positive, "> 0"),
    Key("mem", (str, type(None)), None, "host memory of the job, as SLURM's --mem (e.g. 512G)"),
    Key("seed", (int,), 0, "random seed"),
    Key("smoke_test", (bool,), False, "a deliberately short run: allows few epochs"),
    Key("max_steps_per_epoch", (int, type(None)), None, "cap on steps per epoch (tests, smoke runs)"),
)
KEYS = {k.name: k for k in SCHEMA}


def read_config(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`. Raises CellcheckError (one line) if it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CellcheckError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CellcheckError(f"{path}: cannot read the config ({exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CellcheckError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CellcheckError(f"{path}: a config is a mapping of keys to values, not a {type(doc).__name__}")
    return doc


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` command-line overrides; values parsed as YAML (`roi_size=[64,64,64]`, `amp=false`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CellcheckError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise CellcheckError(f"override {item!r}: the value is not valid YAML") from None
    return out


def validate_config(raw: Mapping[str, Any], source: str = "config") -> tuple[dict[str, Any], list[Finding]]:
    """Defaults filled in, plus every problem at once: config-invalid and stale-config findings."""
    findings: list[Finding] = []
    cfg: dict[str, Any] = {}
    for name in raw:
        if name not in KEYS:
            close = difflib.get_close_matches(str(name), KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            findings.append(finding("config-invalid", None, source, f"unknown key '{name}'{hint}", key=name))
    for key in SCHEMA:
        if key.name not in raw:
            if key.default is _REQUIRED:
                findings.append(finding("config-invalid", None, source, f"missing key '{key.name}': {key.doc}", key=key.name))
            else:
                cfg[key.name] = key.default
            continue
        value = raw[key.name]
        if isinstance(value, bool) and bool not in key.types or not isinstance(value, key.types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in key.types)
            findings.append(finding("config-invalid", None, source, f"'{key.name}' must be {want}, got {value!r:.40}",
                                    key=key.name))
            continue
        if key.valid is not None and value is not None and not key.valid(value):
            findings.append(finding("config-invalid", None, source, f"'{key.name}' must be {key.rule}, got {value!r:.40}",
                                    key=key.name))
            continue
        cfg[key.name] = value
    epochs = cfg.get("num_epochs")
    if isinstance(epochs, int) and epochs < MIN_EPOCHS and not cfg.get("smoke_test"):
        findings.append(
            finding("stale-config", None, source,
                    f"num_epochs: {epochs} looks like a smoke-test value left in the config; set the real count "
                    "(or smoke_test: true if this run is meant to be short)", key="num_epochs", value=epochs)
        )
    return cfg, findings


def loss_masking(cfg: Mapping[str, Any], partial: bool, source: str = "config") -> list[Finding]:
    """loss-unmasked: an unmasked loss on a dataset where some cases annotate only some classes."""
    if partial and cfg.get("loss") != "partial":
        return [
            finding("loss-unmasked", None, source,
                    f"loss '{cfg.get('loss')}' is not masked but cases are annotated for only some classes: the model "
                    "learns 'unannotated = absent'; use loss: partial", loss=cfg.get("loss"))
        ]
    return []
