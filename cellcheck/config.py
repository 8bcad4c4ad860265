"""The training config: one YAML file, validated on load, with every default in one visible place.

Shared by `cellcheck gate` and the trainer, so both refuse the same configs. Every key acts on the
run or is rejected: unknown keys, missing keys (docs/INCIDENTS.md, incident 12), wrong types and values are
`config-invalid` findings, all at once; smoke-test leftovers such as `num_epochs: 2` (6) are
`stale-config`, an unmasked loss on partially annotated data (1) `loss-unmasked`. The schema is a
strict pydantic model (no coercion: "1e-4" is not a number, `true` is not an int).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cellcheck.classes import DEFAULT_CLASS_MAP, NUM_CLASSES, ClassMap, load_class_map
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding

MODELS = ("segresnet", "swinunetr", "dints")
#: Losses the trainer knows: "partial" masks unannotated channels; "dice_bce" is the unmasked
#: baseline (every channel supervised, unannotated voxels scored as background), for comparison.
LOSSES = ("partial", "dice_bce")
#: Fewer epochs than this, without `smoke_test: true`, is a smoke-test value left in the config.
MIN_EPOCHS = 10

Positive = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class TrainConfig(BaseModel):
    """Every key of a training config, its type, default and meaning (the description)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model: Literal["segresnet", "swinunetr", "dints"] = Field(description="network")
    datalist: str = Field(description="MONAI datalist JSON (or a folder of CellMap zarr stores)")
    dataroot: str | None = Field(None, description="folder datalist paths are relative to (default: the datalist's)")
    output_dir: str = Field(description="run folder: checkpoints, metrics.jsonl, progress.png, memory.jsonl, gate "
                                        "report; one run per folder (continue it with --resume)")
    fold: Annotated[int, Field(ge=0)] = Field(0, description="validation fold for datafold_read")
    classes: str | None = Field(None, description="class map: a YAML list or CSV of CellMap class names, relative "
                                "to this file (default: the field's 14); sets num_classes and the channel order")
    num_classes: Positive = Field(NUM_CLASSES, description="sigmoid output channels (default: the class map's size)")
    roi_size: Annotated[list[Positive], Field(min_length=3, max_length=3)] = Field(
        description="patch size in voxels (z, y, x)")
    batch_size: Positive = Field(description="patches per GPU step")
    num_patches_per_image: Positive = Field(description="patches drawn from each loaded crop")
    num_epochs: Positive = Field(description="epochs")
    num_epochs_per_validation: Positive = Field(1, description="validate every N epochs")
    early_stopping_patience: Positive = Field(10, description="validations without improvement before stopping")
    learning_rate: Annotated[float, Field(gt=0)] = Field(2e-4, description="AdamW learning rate")
    weight_decay: NonNegative = Field(1e-5, description="AdamW weight decay")
    num_workers: Annotated[int, Field(ge=0)] = Field(4, description="DataLoader workers per rank")
    prefetch_factor: Positive = Field(2, description="batches each worker prepares ahead")
    amp: bool = Field(True, description="mixed precision on CUDA (bf16 where supported)")
    compile: bool = Field(False, description="torch.compile the network and the loss")
    deep_supervision: bool | None = Field(None, description="SegResNetDS deep supervision (segresnet only; default on)")
    loss: Literal["partial", "dice_bce"] = Field(
        "partial", description="partial (masked sigmoid Dice+BCE) or dice_bce (the unmasked baseline)")
    lambda_dice: NonNegative = Field(1.0, description="Dice weight")
    lambda_bce: NonNegative = Field(1.0, description="BCE weight")
    squared_pred: bool = Field(False, description="Dice denominator with p^2 (MONAI's squared_pred)")
    batch_dice: bool = Field(False, description="Dice over the whole batch per class, not per sample")
    class_weights: Literal["inverse_frequency"] | list[NonNegative] | None = Field(
        None, description="per-class loss weights: a list of num_classes numbers or inverse_frequency")
    foreground_ratio: Fraction = Field(0.7, description="share of patches centred on annotated foreground")
    max_nan_steps: Positive = Field(5, description="stop after this many non-finite losses in a row")
    ddp_timeout_s: Positive | None = Field(None, description="process-group timeout (default: torch's)")
    gpu: str = Field("l40s", description="target GPU profile for the memory plan")
    gpus: Positive = Field(1, description="GPUs (DDP ranks) per job")
    mem: str | None = Field(None, description="host memory of the job, as SLURM's --mem (e.g. 512G)")
    seed: int = Field(0, description="random seed")
    smoke_test: bool = Field(False, description="a deliberately short run: allows few epochs")
    max_steps_per_epoch: Positive | None = Field(None, description="cap on steps per epoch (tests, smoke runs)")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to OUTPUT_DIR/tensorboard "
                                                 "(needs pip install 'cellcheck[tensorboard]')")

    @field_validator("deep_supervision")
    @classmethod
    def _segresnet_only(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is not None and info.data.get("model", "segresnet") != "segresnet":
            raise ValueError("applies to segresnet only; remove it")
        return value

    @field_validator("class_weights")
    @classmethod
    def _one_per_class(cls, value: Any, info: ValidationInfo) -> Any:
        n = info.data.get("num_classes")
        if isinstance(value, list) and n is not None and len(value) != n:
            raise ValueError(f"needs one weight per class ({n}), not {len(value)}")
        return value


KEYS = TrainConfig.model_fields


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
    """Defaults filled in, plus every problem at once: config-invalid and stale-config findings.

    The config holds every key whose value is valid (defaults for the rest), so the gate can still
    plan from a config with errors.
    """
    findings: list[Finding] = []
    errors: dict[str, list[Mapping[str, Any]]] = {}
    try:
        cfg = TrainConfig.model_validate(dict(raw)).model_dump()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            errors.setdefault(str(err["loc"][0]) if err["loc"] else "", []).append(err)
        findings += [finding("config-invalid", None, source, _message(key, errs), key=key) for key, errs in errors.items()]
        cfg = {name: raw[name] if name in raw else field.default for name, field in KEYS.items()
               if name not in errors and (name in raw or not field.is_required())}
    if cfg.get("classes") and "classes" not in errors:
        try:
            classes = class_map_of(cfg, source)
        except CellcheckError as exc:
            findings.append(finding("config-invalid", None, source, f"classes: {exc}", key="classes"))
        else:
            if "num_classes" not in raw:
                cfg["num_classes"] = len(classes)
            elif cfg.get("num_classes") != len(classes):
                findings.append(finding(
                    "config-invalid", None, source, f"num_classes: {cfg.get('num_classes')} but the class map "
                    f"{classes.source} lists {len(classes)} classes; drop num_classes (the map sets it)",
                    key="num_classes"))
    if cfg.get("deep_supervision") is None and "deep_supervision" not in errors:
        cfg["deep_supervision"] = cfg.get("model") == "segresnet"
    epochs = cfg.get("num_epochs")
    if isinstance(epochs, int) and epochs < MIN_EPOCHS and not cfg.get("smoke_test"):
        findings.append(
            finding("stale-config", None, source,
                    f"num_epochs: {epochs} looks like a smoke-test value left in the config; set the real count "
                    "(or smoke_test: true if this run is meant to be short)", key="num_epochs", value=epochs)
        )
    return cfg, findings


def class_map_of(cfg: Mapping[str, Any], config: Path | str) -> ClassMap:
    """The classes a config trains: its `classes` file (relative to the config), else the field's 14."""
    if not cfg.get("classes"):
        return DEFAULT_CLASS_MAP
    path = Path(cfg["classes"])
    return load_class_map(path if path.is_absolute() else Path(config).parent / path)


def _message(key: str, errors: list[Mapping[str, Any]]) -> str:
    """One line for a key's errors: what it must be (each alternative of a union), what it got, or a close key."""
    if errors[0]["type"] == "missing":
        return f"missing key '{key}': {KEYS[key].description}"
    if errors[0]["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, KEYS, n=1)
        return f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    items = "".join(f"[{i}]" for i in errors[0]["loc"][1:] if isinstance(i, int))  # roi_size[1]
    wants = []
    for err in errors:
        want = str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
        wants.append(want.replace("List should have", "must have"))
    what = " or ".join(dict.fromkeys(wants)).replace(" or must be ", " or ")
    return f"'{key}{items}' {what}, got {errors[0]['input']!r:.40}"


def loss_masking(cfg: Mapping[str, Any], partial: bool, source: str = "config") -> list[Finding]:
    """loss-unmasked: an unmasked loss on a dataset where some cases annotate only some classes."""
    if partial and cfg.get("loss") != "partial":
        return [
            finding("loss-unmasked", None, source,
                    f"loss '{cfg.get('loss')}' is not masked but cases are annotated for only some classes: the model "
                    "learns 'unannotated = absent'; use loss: partial", loss=cfg.get("loss"))
        ]
    return []
