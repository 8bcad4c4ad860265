"""Loading chains in bytes per voxel: what a sample holds after each transform, and what it allocates on the way.

A chain is followed one transform at a time over the arrays of one sample (image, label, and any
copies such as a crop label), each as bytes per voxel of the crop. Three chains are known:

- `template`: the field's measured pipeline (docs/INCIDENTS.md, incident 5): MONAI's `LoadImaged` defaults (float32
  image and label), an optional C-channel float32 one-hot, whole crops collated;
- `trainer`: cellcheck's own trainer (trainer/data.py): float32 image, uint8 label, patches out;
- `auto3dseg`: a generated DiNTS or SwinUNETR bundle's `transforms_train`, as the templates write it
  for a datalist whose classes are given by label value (`class_names` with `index`), read from the
  bundle (`cellcheck.memory.bundle`) or built from `cellcheck.memory.templates`.

For `auto3dseg` each MONAI transform has a rule (`RULES`), checked against MONAI 1.6.1 stage by stage
(tests/memory/test_chains.py measures a real chain in a fresh process). The two that decide the
host RAM of a CellMap job:

- the label expansion `Lambdad` of the templates, `sum` over `x == value` masks per output channel:
  Python's `sum` starts from the int 0 and promotes each bool mask to int64, so C int64 channels
  exist in a list and again in `torch.cat`'s result: 16 C bytes per voxel (224 for C = 14; incident
  17's ~107 GB for one 800^3 crop is 224 x 512M bytes = 106.8 GiB). The fixed form
  `(x == c[0]).to(x.dtype)` needs 2 C (uint8 list + result);
- `RandCropByLabelClassesd`: int64 indices of every voxel of every class (8 bytes per voxel once each
  voxel is in one channel), and a deep copy, per sample cut, of every array the dict holds besides
  its `keys` (the sigmoid chain's `crop_label`: C + 1 bytes per voxel, times `num_crops_per_image`).
  The patches are views of the crop, so the whole crop lives until the batch is collated.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cellcheck.errors import CellcheckError

_DTYPE_BYTES = {"bool": 1, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "float16": 2, "bfloat16": 2,
                "uint32": 4, "int32": 4, "float32": 4, "float": 4, "int64": 8, "long": 8, "float64": 8,
                "double": 8}

#: MONAI's LoadImage converts to float32 unless a dtype is given.
LOAD_DEFAULT_DTYPE = "float32"

#: Time of each transform per crop voxel (per channel where marked), measured once on the development
#: machine (2 shared cores, MONAI 1.6.1, torch 2.13 CPU, uint8 .nii.gz crops of 192^3, allocations
#: mmapped as for real crop sizes: MALLOC_MMAP_THRESHOLD_=65536); repeated runs varied up to 2.5x,
#: the int64 expansion most. Only the ratios are used: they say where a worker spends its time
#: (the int64 expansion: 60-75 % of a crop's chain), which is what the typical case draws from.
NS_PER_VOXEL = {"LoadImaged": 32.0, "ScaleIntensityRanged": 40.0, "NormalizeIntensityd": 40.0,  # LoadImaged: per key
                "CropForegroundd": 20.0, "Spacingd": 5.0, "CastToTyped": 3.0, "CopyItemsd": 20.0,
                "expand-sum": 45.0, "expand-cast": 11.0, "background-channel": 17.0,  # per channel
                "RandCropByLabelClassesd": 80.0, "copy-per-sample": 20.0, "one-hot": 8.0, "collate": 10.0}


def dtype_name(dtype: Any) -> str:
    """'uint8' for 'uint8', np.uint8, torch.uint8, '$np.uint8' or "$torch.uint8" (as bundles write them)."""
    text = str(dtype).strip().lstrip("$")
    for prefix in ("torch.", "np.", "numpy.", "<class 'numpy.", "dtype('"):
        text = text.replace(prefix, "")
    return text.rstrip("'>)").strip()


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a dtype name or numpy/torch dtype ('uint8' -> 1, torch.float32 -> 4)."""
    name = dtype_name(dtype)
    if name not in _DTYPE_BYTES:
        raise CellcheckError(f"unsupported voxel dtype {dtype!r}; expected one of {', '.join(_DTYPE_BYTES)}")
    return _DTYPE_BYTES[name]


@dataclass(frozen=True)
class Stage:
    """One step of the chain: bytes per crop voxel held after it, at its own peak, and its time per voxel.

    `ns_per_voxel` weighs where a worker spends its time (the typical case draws a moment of the chain
    by it); only the ratios between stages matter.
    """

    name: str
    held: float
    peak: float
    note: str
    ns_per_voxel: float = 1.0


@dataclass(frozen=True)
class Chain:
    """A loading chain in bytes: what a sample holds until collate, its own peak, what it hands over.

    `out` is per crop voxel for a chain that collates whole crops, or per patch voxel when
    `patch_voxels` is set (the voxels of all patches cut from one crop).
    """

    name: str
    stages: list[Stage]
    held: float  # per crop voxel, from load to collate (the collate copy is made while it is held)
    load_peak: float  # per crop voxel, the highest point of the chain before collate
    out: float
    patch_voxels: float | None = None
    notes: list[str] = field(default_factory=list)

    def sample_out_bytes(self, voxels: float) -> float:
        """Bytes of one finished sample (after collate) from a crop of `voxels`."""
        return self.out * (self.patch_voxels if self.patch_voxels is not None else voxels)

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(share of the time, bytes per voxel entering, bytes per voxel at the peak) of each stage of one crop.

        A stage's memory ramps from what the previous one held to its own peak while it runs; a worker
        caught at a random moment of building is in stage k with probability `share[k]`.
        """
        weights = np.array([max(s.ns_per_voxel, 1e-3) for s in self.stages])
        start = np.array([0.0] + [s.held for s in self.stages[:-1]])
        peak = np.array([s.peak for s in self.stages])
        return weights / weights.sum(), start, np.maximum(peak, start)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "held_bytes_per_voxel": self.held, "peak_bytes_per_voxel": self.load_peak,
                "out_bytes_per_voxel": self.out, "patch_voxels": self.patch_voxels,
                "stages": [vars(s) for s in self.stages], "notes": list(self.notes)}


# --- the field's measured chain and cellcheck's trainer -------------------------------------------------------


def transform_stages(image_dtype: str = "uint8", label_dtype: str = "uint8", one_hot_channels: int = 0,
                     load_dtype: str = LOAD_DEFAULT_DTYPE) -> list[Stage]:
    """LoadImaged -> [one-hot] -> collate with MONAI's defaults, in bytes per voxel of the loaded crop."""
    raw_l, f = dtype_bytes(label_dtype), dtype_bytes(load_dtype)
    stages = [Stage("LoadImaged", 2 * f, f + raw_l + f,
                    f"image and label converted to {load_dtype} (MONAI LoadImage's default dtype); the raw "
                    f"{image_dtype}/{label_dtype} arrays are transient", 2 * NS_PER_VOXEL["LoadImaged"])]
    held = 2 * f
    if one_hot_channels:
        c = one_hot_channels
        stages.append(Stage("one-hot", f + c * f, held + 8 + c * f,
                            f"{c} {load_dtype} channels scattered from an int64 copy of the label; the "
                            f"{load_dtype} label is dropped afterwards", NS_PER_VOXEL["one-hot"] * c))
        held = f + c * f
    stages.append(Stage("collate", held, 2 * held, "default_collate stacks into shared memory while the "
                                                   "sample is still referenced", NS_PER_VOXEL["collate"]))
    return stages


def template_chain(image_dtype: str = "uint8", label_dtype: str = "uint8", one_hot_channels: int = 0) -> Chain:
    """The field's measured pipeline (docs/INCIDENTS.md, incident 5): whole crops loaded as float32 (and one-hot), collated whole."""
    stages = transform_stages(image_dtype, label_dtype, one_hot_channels)
    held = stages[-1].held
    return Chain("template", stages, held, max(s.peak for s in stages if s.name != "collate"), held)


def trainer_chain(image_dtype: str = "uint8", patch_voxels: float | None = None) -> Chain:
    """cellcheck's trainer (trainer/data.py `train_transforms`, stage for stage: a test holds them equal).

    LoadCased reads the stored image and maps it to float32 by the run's intensity rule (whatever the
    stored dtype) and keeps the label uint8. SpatialPadd copies only crops smaller than the ROI (the RAM
    model counts such a crop at the padded size). RandCropByPosNegLabeld without precomputed indices
    builds a bool foreground mask, its negation and int64 indices of every voxel (foreground +
    background) on each call; the patches it cuts are views of the crop, so the crop lives until its
    batch is collated. RandFlipd copies a patch, not the crop. Measured on a 192^3 crop in a fresh
    process: 6.5 B/voxel held after loading, 16.9 at the crop's peak (both include ~1.5 B/voxel that
    glibc kept from the loading transients; the model leaves that to the headroom).
    """
    raw = dtype_bytes(image_dtype)
    held = 4 + 1  # float32 image, uint8 label
    flip = Stage("RandFlipd", held, held, "flips a patch (a patch-sized copy), not the crop", 1.0)
    stages = [
        Stage("LoadCased", held, raw + held, f"{image_dtype} image to float32 by the intensity rule (numpy reuses "
                                             "the astype temporary), label kept uint8", 2 * NS_PER_VOXEL["LoadImaged"]),
        Stage("SpatialPadd", held, held, "a copy only of a crop smaller than the ROI (counted at the padded size)",
              1.0),
        Stage("RandCropByPosNegLabeld", held, held + 1 + 1 + 8, "bool mask of label > 0 and its negation, "
                                                               "int64 indices of every voxel; patches are views",
              NS_PER_VOXEL["RandCropByLabelClassesd"]),
        flip, flip, flip,
    ]
    return Chain("trainer", stages, held, max(s.peak for s in stages), held, patch_voxels)


# --- Auto3DSeg's transforms, one rule per MONAI transform ----------------------------------------------------


@dataclass
class ChainContext:
    """What a chain needs besides its transforms: on-disk dtypes, and the values `@key` references resolve to."""

    image_dtype: str = "uint8"
    label_dtype: str = "uint8"
    image_key: str = "image"
    label_key: str = "label"
    resolve: Callable[[str], Any] = lambda ref: None  # "@training#roi_size" -> [96, 96, 96]


@dataclass
class _State:
    """The sample's whole-crop arrays (bytes per crop voxel) while the chain runs, and what it handed over."""

    arrays: dict[str, float]
    channels: dict[str, int]
    dtypes: dict[str, str]
    patch_voxels: float | None = None
    out: float | None = None  # bytes per patch voxel of the cut keys, once cut
    per_patch: dict[str, float] = field(default_factory=dict)  # whole-crop copies held by each patch

    @property
    def held(self) -> float:
        return sum(self.arrays.values()) + sum(self.per_patch.values())


#: A transform's rule: updates the state, returns (peak bytes per voxel, note[, ns per voxel]).
Rule = Callable[[_State, Mapping[str, Any], ChainContext], tuple[Any, ...]]
RULES: dict[str, Rule] = {}


def _rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for name in names:
            RULES[name.lower()] = fn
        return fn
    return register


def _keys(spec: Mapping[str, Any], ctx: ChainContext, name: str = "keys") -> list[str]:
    value = spec.get(name, [])
    items = value if isinstance(value, (list, tuple)) else [value]
    return [_key(str(k), ctx) for k in items if k is not None]


def _key(ref: str, ctx: ChainContext) -> str:
    if ref in ("@image_key", "image_key"):
        return ctx.image_key
    if ref in ("@label_key", "label_key"):
        return ctx.label_key
    if ref.startswith("@"):
        value = ctx.resolve(ref)
        return str(value) if value is not None else ref
    return ref


def _value(value: Any, ctx: ChainContext) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ctx.resolve(value)
    return value


def _per_key(value: Any, keys: Sequence[str]) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) and len(value) == len(keys) else [value] * len(keys)


def _set(state: _State, key: str, dtype: str, channels: int | None = None) -> float:
    """Convert `key` to `dtype` (and `channels`); returns the bytes per voxel of the new array."""
    c = state.channels.get(key, 1) if channels is None else channels
    state.channels[key], state.dtypes[key] = c, dtype
    state.arrays[key] = c * dtype_bytes(dtype)
    return state.arrays[key]


@_rule("LoadImaged", "LoadImage")
def _load(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    keys = _keys(spec, ctx)
    dtypes = _per_key(spec.get("dtype", LOAD_DEFAULT_DTYPE), keys)
    peak, notes = state.held, []
    for key, dtype in zip(keys, dtypes):
        raw = ctx.label_dtype if key == ctx.label_key else ctx.image_dtype
        dtype = raw if dtype is None else dtype_name(dtype)
        # the decompressed file, its array, and the conversion when the dtype changes (measured)
        peak = max(peak, state.held + 2 * dtype_bytes(raw) + (dtype_bytes(dtype) if dtype != raw else 0))
        _set(state, key, dtype, 1)
        notes.append(f"{key} {raw} -> {dtype}")
    return peak, "read as stored, converted: " + ", ".join(notes), NS_PER_VOXEL["LoadImaged"] * len(keys)


@_rule("EnsureChannelFirstd", "EnsureTyped", "IdentityD", "Identityd", "ToTensord", "EnsureSameShaped",
       "SpatialPadd", "Orientationd")
def _in_place(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    return state.held, "no copy (Orientationd: the crop already in RAS; SpatialPadd: crop at least the ROI)"


@_rule("ScaleIntensityRanged", "ScaleIntensityd", "NormalizeIntensityd")
def _intensity(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    peak = state.held
    for key in _keys(spec, ctx):
        before = state.arrays.get(key, 0.0)
        after = _set(state, key, "float32")
        peak = max(peak, state.held + before + 2 * after)  # measured: the input and two float32 temporaries
    return peak, "float32 result; the input and two float32 temporaries on the way"


@_rule("CropForegroundd")
def _crop_foreground(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    return state.held + 2, "bool mask of the source and its reduction over channels; the crop is a view"


@_rule("Spacingd")
def _spacing(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    peak = state.held
    for key in _keys(spec, ctx):
        before, changed = state.arrays.get(key, 0.0), state.dtypes.get(key) != "float32"
        _set(state, key, "float32")
        if changed:
            peak = max(peak, state.held + before)  # old and new arrays at once
    return peak, ("arrays come back float32 (measured with the crop already at pixdim: no resampling; a crop "
                  "that is resampled changes size, which this model does not follow)")


@_rule("CastToTyped")
def _cast(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    keys = _keys(spec, ctx)
    peak = state.held
    for key, dtype in zip(keys, _per_key(spec.get("dtype", "float32"), keys)):
        before, changed = state.arrays.get(key, 0.0), state.dtypes.get(key) != dtype_name(dtype)
        _set(state, key, dtype_name(dtype))
        if changed:
            peak = max(peak, state.held + before)
    return peak, "old and new array at once where the dtype changes"


@_rule("CopyItemsd")
def _copy(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    keys = _keys(spec, ctx)
    names = _keys(spec, ctx, "names") or [f"{k}_0" for k in keys]
    times = int(_value(spec.get("times", 1), ctx) or 1)
    for key, name in zip(keys * times, names):
        state.arrays[name], state.channels[name] = state.arrays.get(key, 0.0), state.channels.get(key, 1)
        state.dtypes[name] = state.dtypes.get(key, "uint8")
    return state.held, "a full copy"


@_rule("Lambdad")
def _lambda(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    kind, channels = (spec["kind"], int(spec.get("channels", 0))) if "kind" in spec else lambda_kind(
        str(spec.get("func", "")))
    peak, note = state.held, "no keys"
    for key in _keys(spec, ctx):
        dtype = state.dtypes.get(key, "uint8")
        before = state.arrays.get(key, 0.0)
        if kind == "expand-sum":
            peak = max(peak, state.held + 2 * channels * 8)
            _set(state, key, dtype, channels)
            note = (f"label expanded to {channels} channels by sum() of bool masks: each channel int64 "
                    f"(Python's sum starts at 0), in a list and again in torch.cat: 16 x {channels} B/voxel, "
                    f"then cast back to {dtype}")
        elif kind == "expand-cast":
            peak = max(peak, state.held + 2 * channels * dtype_bytes(dtype))
            _set(state, key, dtype, channels)
            note = f"label expanded to {channels} {dtype} channels (list + torch.cat), no int64"
        elif kind == "background-channel":
            c = channels = state.channels.get(key, 1)
            peak = max(peak, state.held + 8 * c + 8)  # torch.sum over channels casts all of them to int64 first
            _set(state, key, dtype, c + 1)
            peak = max(peak, state.held + before + 1)
            note = (f"background channel prepended: torch.sum of {c} {dtype} channels runs in int64 "
                    f"(8 x {c} + 8 B/voxel)")
        elif kind == "drop":
            state.arrays.pop(key, None)
            state.per_patch.pop(key, None)
            note = f"{key} replaced by 0 (its copies freed)"
        else:
            note = f"unrecognised function, assumed in place: {str(spec.get('func'))[:80]}"
    return peak, note, max(1.0, NS_PER_VOXEL.get(kind, 0.0) * channels)


def lambda_kind(func: str) -> tuple[str, int]:
    """What a template Lambdad does to memory, and to how many channels.

    ('expand-sum' | 'expand-cast' | 'background-channel' | 'drop' | 'unknown', channels)
    """
    text = func.replace(" ", "")
    if re.search(r"lambdax:0$", text.lstrip("$")):
        return "drop", 0
    if "torch.sum(x" in text and "<1" in text:
        return "background-channel", 0
    groups = _class_index(func)
    if "sum([x==" in text or "sum(x==" in text:
        return "expand-sum", len(groups)
    if "(x==c[0]).to(" in text:
        return "expand-cast", len(groups)
    return "unknown", 0


def _class_index(func: str) -> list[Any]:
    """The literal class-index list a template writes into its expansion lambda ('for c in [[1], [2, 3]]')."""
    m = re.search(r"for\s+c\s+in\s+(\[.*\])\s*\]", func)
    if not m:
        return []
    try:
        value = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return []
    return value if isinstance(value, list) else []


@_rule("RandCropByLabelClassesd", "RandCropByPosNegLabeld")
def _rand_crop(state: _State, spec: Mapping[str, Any], ctx: ChainContext) -> tuple[float, str]:
    keys = set(_keys(spec, ctx))
    samples = int(_value(spec.get("num_samples", 1), ctx) or 1)
    size = _value(spec.get("spatial_size"), ctx)
    # indices of every voxel of every class (each voxel in one channel), int64, and a bool mask per channel
    peak = state.held + 8 + 1
    others = {k: v for k, v in state.arrays.items() if k not in keys}
    copies = samples * sum(others.values())
    peak = max(peak, state.held + copies)  # every other array of the dict deep-copied into each sample
    for k, v in others.items():
        state.arrays.pop(k)
        state.per_patch[k] = samples * v
    if isinstance(size, (list, tuple)) and size and all(isinstance(s, (int, float)) and s > 0 for s in size):
        state.patch_voxels = samples * math.prod(float(s) for s in size)
    state.out = sum(state.arrays[k] for k in keys if k in state.arrays)
    note = f"int64 indices of every voxel; {samples} patches, views of the crop (which lives until collate)"
    if copies:
        note += f"; {', '.join(others)} deep-copied into each of the {samples} samples"
    ns = NS_PER_VOXEL["RandCropByLabelClassesd"] + (NS_PER_VOXEL["copy-per-sample"] * samples if copies else 0.0)
    return peak, note, ns


def interpret(transforms: Sequence[Mapping[str, Any]], ctx: ChainContext, name: str = "auto3dseg") -> Chain:
    """Follow a MONAI transform list (bundle form: dicts with `_target_`; nested Compose flattened) dtype by dtype."""
    state = _State(arrays={}, channels={}, dtypes={})
    stages: list[Stage] = []
    notes: list[str] = []
    for spec in flatten(transforms):
        target = str(spec.get("_target_", "?")).split(".")[-1]
        rule = RULES.get(target.lower())
        if rule is None:
            if state.out is None:
                notes.append(f"{target}: no rule, assumed to keep the crop's arrays as they are")
            continue  # after the random crop: patch-sized augmentations
        if state.out is not None and rule is not _lambda:
            continue
        peak, note, *ns = rule(state, spec, ctx)
        stages.append(Stage(target, state.held, max(peak, state.held), note,
                            ns[0] if ns else NS_PER_VOXEL.get(target, 1.0)))
    if not stages or stages[0].name not in ("LoadImaged", "LoadImage"):
        raise CellcheckError("the transform chain does not start with LoadImaged; cannot follow it")
    whole = sum(state.arrays.values())
    if state.out is None:  # no random crop: whole crops are collated
        return Chain(name, stages, whole, max(s.peak for s in stages), whole, None, notes)
    if state.patch_voxels is None:
        raise CellcheckError("the random crop has no spatial_size; pass --roi")
    return Chain(name, stages, whole, max(s.peak for s in stages), state.out, state.patch_voxels, notes)


def flatten(transforms: Any) -> list[Mapping[str, Any]]:
    """The transforms of a (nested) Compose in order; placeholders and non-dicts are skipped."""
    if isinstance(transforms, Mapping):
        if str(transforms.get("_target_", "")).split(".")[-1] == "Compose":
            return flatten(transforms.get("transforms", []))
        return [transforms]
    out: list[Mapping[str, Any]] = []
    for item in transforms if isinstance(transforms, (list, tuple)) else []:
        out += flatten(item)
    return out
