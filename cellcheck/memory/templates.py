"""The training transforms of Auto3DSeg's DiNTS and SwinUNETR templates, as they are generated for CellMap.

Read from the templates (research-contributions, `auto3dseg/algorithm_templates/{dints,swinunetr}`:
`configs/transforms_train.yaml` and what `scripts/algo.py` fills in) and written here in the bundle's
own form (dicts with `_target_`), so that `cellcheck.memory.chains.interpret` follows the same list
whether it comes from here or from a generated bundle (`cellcheck.memory.bundle`). What a CellMap
datalist makes `algo.py` write:

- `class_names` with `index` (each output channel by its label values) -> `CastToTyped` to float32 /
  uint8, then a label-expansion `Lambdad` (`expansion="int64"`: the template as shipped, `sum` of bool
  masks, int64 per channel on the way; `"uint8"`: the field's fix `(x == c[0]).to(x.dtype)`; `"none"`:
  a datalist without `class_names`, the label stays one channel);
- `sigmoid: true` -> a `crop_label` copy with a background channel drives `RandCropByLabelClassesd`
  and is dropped afterwards;
- modality CT (the field's: `CropForegroundd` crashed on constant crops, docs/INCIDENTS.md, incident 9) ->
  `ScaleIntensityRanged` + `CropForegroundd`; MR -> `NormalizeIntensityd`.

DiNTS loads the image as float32 and the label as uint8; SwinUNETR loads both with MONAI's default
(float32). Both cut `num_crops_per_image` patches of the ROI per crop inside the DataLoader worker.

The expansion came with research-contributions 03fe864 (2023-06-06), whose training `CastToTyped`
made the label float32, so the expanded channels were float32 too (4 bytes each: the team's "15 float32
channels", docs/INCIDENTS.md, incident 16); 9abc902 (2023-06-23) casts it to uint8, as today (`label_cast`).
"""

from __future__ import annotations

from typing import Any, Sequence

from cellcheck.errors import CellcheckError

#: Templates whose transform chain is modelled; SegResNet builds its chain in code (scripts/segmenter.py).
MODELLED = ("dints", "swinunetr")

#: Label expansions: the template's `sum` of masks (int64 on the way), the field's cast (uint8), none.
EXPANSIONS = {"int64": "expand-sum", "uint8": "expand-cast", "none": None}

#: The label's dtype after the template's CastToTyped: uint8 since 2023-06-23, float32 in the first
#: template with the label expansion (2023-06-06).
LABEL_CASTS = ("uint8", "float32")

#: DataLoader defaults of the templates' hyper_parameters.yaml (both): num_workers 8, num_images_per_batch 2,
#: num_workers_validation 2; prefetch_factor is not set, so PyTorch's 2 applies.
LOADER_DEFAULTS = {"num_workers": 8, "num_images_per_batch": 2, "prefetch_factor": 2, "num_workers_validation": 2}


def train_transforms(model: str, channels: int, roi: Sequence[int], crops_per_image: int, expansion: str = "int64",
                     sigmoid: bool = False, modality: str = "ct", label_cast: str = "uint8") -> list[dict[str, Any]]:
    """The template's `transforms_train` for a CellMap datalist with `channels` classes given by label value."""
    if model not in MODELLED:
        raise CellcheckError(f"the {model} template builds its transforms in code; cellcheck models the "
                             f"chains of {', '.join(MODELLED)} (use --chain template for {model})")
    if label_cast not in LABEL_CASTS:
        raise CellcheckError(f"unknown label cast {label_cast!r}; expected one of {', '.join(LABEL_CASTS)}")
    if expansion not in EXPANSIONS:
        raise CellcheckError(f"unknown label expansion {expansion!r}; expected one of {', '.join(EXPANSIONS)}")
    both = ["image", "label"]
    if model == "dints":
        load = [{"_target_": "LoadImaged", "keys": "image", "dtype": "float32"},
                {"_target_": "LoadImaged", "keys": "label", "dtype": "uint8"}]
    else:
        load = [{"_target_": "LoadImaged", "keys": both}]
    if modality.lower().startswith("ct"):
        intensity = [{"_target_": "ScaleIntensityRanged", "keys": "image"},
                     {"_target_": "CropForegroundd", "keys": both, "source_key": "image"}]
    else:
        intensity = [{"_target_": "NormalizeIntensityd", "keys": "image"}]
    chain = [*load, {"_target_": "EnsureChannelFirstd", "keys": both}, *intensity,
             {"_target_": "Orientationd", "keys": both}, {"_target_": "Spacingd", "keys": both},
             {"_target_": "CastToTyped", "keys": both, "dtype": ["float32", label_cast]}]
    if expansion != "none":
        chain.append({"_target_": "Lambdad", "keys": "label", "kind": EXPANSIONS[expansion], "channels": channels})
    chain += [{"_target_": "EnsureTyped", "keys": both}, {"_target_": "SpatialPadd", "keys": both}]
    crop = {"_target_": "RandCropByLabelClassesd", "keys": both, "label_key": "label",
            "num_samples": crops_per_image, "spatial_size": list(roi)}
    if sigmoid and expansion != "none":
        chain += [{"_target_": "CopyItemsd", "keys": "label", "names": "crop_label"},
                  {"_target_": "Lambdad", "keys": "crop_label", "kind": "background-channel"},
                  {**crop, "label_key": "crop_label"},
                  {"_target_": "Lambdad", "keys": "crop_label", "kind": "drop"}]
    else:
        chain.append(crop)
    return chain + [{"_target_": "RandFlipd", "keys": both}]
