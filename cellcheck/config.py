"""The training config: one YAML file, validated on load into a typed object, with every default in one place.

Shared by `cellcheck gate`, `cellcheck submit` and the trainer, so all refuse the same configs. Every key
acts on the run or is rejected: unknown keys, missing keys (docs/INCIDENTS.md, incident 12), wrong
types and values are `config-invalid` findings, all at once; smoke-test leftovers such as
`num_epochs: 2` (6) are `stale-config`, an unmasked loss on partially annotated data (1)
`loss-unmasked`. The schema is a strict pydantic model (no coercion: "1e-4" is not a number, `true`
is not an int). Paths are resolved against the config file's folder and the class map is loaded once,
here: the rest of cellcheck reads `config.datalist`, `config.output_dir` and `config.classes` as they are.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_serializer, field_validator

from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap, load_class_map
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.grid import parse_resolution
from cellcheck.units import parse_size

#: Fewer epochs than this, without `smoke_test: true`, is a smoke-test value left in the config.
MIN_EPOCHS = 10

Positive = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class TrainConfig(BaseModel):
    """Every key of a training config, its type, default and meaning (the description)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True)

    model: Literal["segresnet", "swinunetr", "dints"] = Field(description="network")
    datalist: Path = Field(description="MONAI datalist JSON (or a folder of CellMap zarr stores), relative to this file")
    dataroot: Path | None = Field(None, description="folder datalist paths are relative to (default: the datalist's)")
    resolution: tuple[float, float, float] | None = Field(
        None, validate_default=True, description="training voxel size in nm, one number or [z, y, x]: required when "
        "datalist is a folder of CellMap stores (crops are paired with raw levels there, as the audit pairs them)")
    datasplit: Path | None = Field(None, description="stores only: a csc make-datasplit CSV (its usage column and "
                                   "class lists); default: folds assigned as cellcheck convert assigns them")
    exclude_crops: list[str] = Field(default_factory=list, description="stores only: crops left out, by name "
                                     "(crop100, or <store>_crop100 where ids repeat)")
    resample: bool = Field(False, description="stores only: train a crop without a label level at the resolution "
                           "from a finer (most frequent value) or coarser (nearest) one; recorded in the run folder")
    output_dir: Path = Field(description="run folder: checkpoints, metrics.jsonl, progress.png, memory.jsonl, gate "
                                        "report; one run per folder (continue it with --resume)")
    fold: Annotated[int, Field(ge=0)] = Field(0, description="validation fold for datafold_read")
    classes: ClassMap = Field(DEFAULT_CLASS_MAP, validate_default=True,
                              description="class map: a list of CellMap class names, or a YAML list or CSV of them "
                              "relative to this file (default: the field's 14); sets num_classes and the channel order")
    num_classes: Positive | None = Field(None, validate_default=True,
                                         description="sigmoid output channels: the class map's size (may be omitted)")
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
    deep_supervision: bool | None = Field(None, validate_default=True,
                                          description="SegResNetDS deep supervision (segresnet only; default on)")
    network_width: Annotated[float, Field(gt=0, le=4)] = Field(
        1.0, description="feature widths of the Auto3DSeg template network times this: 1 trains the template "
        "(SegResNetDS 32 filters, 87 M parameters); 0.25 is a smoke run's (8 filters, seconds per step on a CPU)")
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

    @field_validator("resolution", mode="before")
    @classmethod
    def _voxel_size(cls, value: Any, info: ValidationInfo) -> Any:
        datalist = info.data.get("datalist")
        if value is None:
            if isinstance(datalist, Path) and datalist.is_dir():
                raise ValueError(f"required: {datalist} is a folder of CellMap stores; give the voxel size to train "
                                 "at in nm, e.g. resolution: 8 (or [5.24, 4, 4])")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, list)):
            raise ValueError("must be a voxel size in nm: a number or [z, y, x]")
        try:
            return parse_resolution(value)
        except CellcheckError:
            raise ValueError("must be a positive voxel size in nm: a number or [z, y, x]") from None

    @field_validator("datalist", "dataroot", "output_dir", "datasplit", mode="before")
    @classmethod
    def _relative_to_the_config(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError("must be a path (a string)")
        path = Path(value)
        return path if path.is_absolute() else _base(info) / path

    @field_validator("classes", mode="before")
    @classmethod
    def _class_map(cls, value: Any, info: ValidationInfo) -> ClassMap:
        if isinstance(value, ClassMap):
            return value
        try:
            if value is None:
                return DEFAULT_CLASS_MAP
            if isinstance(value, str):
                path = Path(value)
                return load_class_map(path if path.is_absolute() else _base(info) / path)
            if isinstance(value, list) and all(isinstance(n, str) for n in value):
                return ClassMap(tuple(value), source="the config's classes list")
        except CellcheckError as exc:
            raise ValueError(str(exc)) from None
        raise ValueError("must be a class map file or a list of CellMap class names")

    @field_validator("num_classes")
    @classmethod
    def _the_map_sets_it(cls, value: int | None, info: ValidationInfo) -> int | None:
        classes = info.data.get("classes")
        if classes is None:
            return value  # the class map itself is invalid: reported there
        if value is not None and value != len(classes):
            raise ValueError(f"{value} but the class map {classes.source} lists {len(classes)} classes; drop "
                             "num_classes (the map sets it)")
        return len(classes)

    @field_validator("deep_supervision")
    @classmethod
    def _segresnet_only(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        model = info.data.get("model", "segresnet")
        if value is None:
            return model == "segresnet"
        if value and model != "segresnet":
            raise ValueError("applies to segresnet only; remove it")
        return value

    @field_validator("class_weights")
    @classmethod
    def _one_per_class(cls, value: Any, info: ValidationInfo) -> Any:
        n = info.data.get("num_classes")
        if isinstance(value, list) and n is not None and len(value) != n:
            raise ValueError(f"needs one weight per class ({n}), not {len(value)}")
        return value

    @field_validator("mem")
    @classmethod
    def _with_its_unit(cls, value: str | None) -> str | None:
        """A size SLURM and cellcheck read alike: '512G'; a bare '5' (MB to SLURM) is refused."""
        if value is not None:
            parse_size(value)  # ValueError: the key's finding says why
        return value

    @field_serializer("classes")
    def _names(self, classes: ClassMap) -> list[str]:
        return list(classes.names)

    @field_serializer("datalist", "dataroot", "output_dir", "datasplit")
    def _path(self, path: Path | None) -> str | None:
        return None if path is None else str(path)

    def to_json(self) -> dict[str, Any]:
        """Every key with its value (paths absolute, classes as names): what a run records and a checkpoint keeps."""
        return self.model_dump(mode="json")

    @property
    def from_stores(self) -> bool:
        """Whether the run trains straight from a folder of CellMap stores (not a datalist)."""
        return self.datalist.is_dir()


KEYS = TrainConfig.model_fields


@dataclass(frozen=True)
class _Context:
    """What a validator reads of its ValidationInfo, for validating one key outside the model."""

    base: Path | None

    @property
    def context(self) -> dict[str, Any]:
        return {"base": self.base or Path(".")}


def _base(info: ValidationInfo) -> Path:
    """The folder config paths are relative to: the config file's (validation context), else the working folder."""
    return Path((info.context or {}).get("base", "."))


@dataclass
class LoadedConfig:
    """A config as read: the typed config when every key is valid, and every finding about it.

    `usable` holds the keys that are valid (with defaults for the others): what the gate can still
    check and plan from when some key is not.
    """

    source: str
    config: TrainConfig | None
    findings: list[Finding] = field(default_factory=list)
    usable: dict[str, Any] = field(default_factory=dict)


def load_config(path: Path, overrides: Mapping[str, Any] | None = None) -> LoadedConfig:
    """Read, override (`--set`) and validate the config file at `path`. Raises CellcheckError if it cannot be read."""
    path = Path(path)
    return validate_config({**read_config(path), **(overrides or {})}, str(path), base=path.parent)


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


def validate_config(raw: Mapping[str, Any], source: str = "config", base: Path | None = None) -> LoadedConfig:
    """Defaults filled in, plus every problem at once: config-invalid and stale-config findings.

    Relative paths are resolved against `base` (the config file's folder; default: the working folder).
    """
    loaded = LoadedConfig(source, None)
    try:
        loaded.config = TrainConfig.model_validate(dict(raw), context={"base": base or Path(".")})
        loaded.usable = dict(loaded.config)
    except ValidationError as exc:
        errors: dict[str, list[Mapping[str, Any]]] = {}
        for err in exc.errors(include_url=False):
            errors.setdefault(str(err["loc"][0]) if err["loc"] else "", []).append(err)
        loaded.findings += [finding("config-invalid", None, source, _message(key, errs), key=key)
                            for key, errs in errors.items()]
        loaded.usable = {name: raw[name] if name in raw else f.default for name, f in KEYS.items()
                         if name not in errors and (name in raw or not f.is_required())}
        context = _Context(base)  # resolve what the valid keys point to, as the model does
        for key in ("datalist", "dataroot", "output_dir", "datasplit"):
            if key in loaded.usable:
                loaded.usable[key] = TrainConfig._relative_to_the_config(loaded.usable[key], context)
        if "classes" not in errors:
            classes = TrainConfig._class_map(raw.get("classes"), context)
            loaded.usable.update(classes=classes, num_classes=len(classes))
    epochs = loaded.usable.get("num_epochs")
    if isinstance(epochs, int) and epochs < MIN_EPOCHS and not loaded.usable.get("smoke_test"):
        loaded.findings.append(
            finding("stale-config", None, source,
                    f"num_epochs: {epochs} looks like a smoke-test value left in the config; set the real count "
                    "(or smoke_test: true if this run is meant to be short)", key="num_epochs", value=epochs)
        )
    return loaded


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
    got = "" if errors[0]["input"] is None else f", got {errors[0]['input']!r:.40}"
    return f"'{key}{items}' {what}{got}"


def loss_masking(loss: str | None, partial: bool, source: str = "config") -> list[Finding]:
    """loss-unmasked: an unmasked loss (or none valid) on a dataset where some cases annotate only some classes."""
    if partial and loss != "partial":
        return [
            finding("loss-unmasked", None, source,
                    f"loss '{loss}' is not masked but cases are annotated for only some classes: the model "
                    "learns 'unannotated = absent'; use loss: partial", loss=loss)
        ]
    return []
