"""A converted case against the CellMap crop it came from: extent, spacing, origin and every voxel.

The field's converter (docs/INCIDENTS.md, incident 19) paired label s0 with raw s0 whatever their voxel sizes and
wrote an 8 nm header on everything: no error anywhere, and the content checks pass wherever the wrong
read was not blank. Here the crop is converted again at the voxel size the header declares (the
converter's own plan and renderer), and the entry must match it: its box, its origin, the raw voxels
and the label composed from the class arrays. When it does not, the entry's first voxels are looked
up in the raw pyramid and the crop's levels to say how far off it really is.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from cellcheck.cellmap.locate import PROBE, Found, locate_image, locate_label, probe_at
from cellcheck.cellmap.plan import CropPlan, PlanOptions, Refused, plan_crop
from cellcheck.cellmap.render import Renderer
from cellcheck.cellmap.stores import ClassArray, Crop, Store
from cellcheck.classes import ClassMap
from cellcheck.findings import Finding, Severity, finding
from cellcheck.grid import format_scale, same_scale
from cellcheck.readers.volume import Block, ReadError, Volume
from cellcheck.readers.zarr_volume import ZarrVolume

#: Voxels that may differ before content is called different (a correct conversion differs in none).
MAX_IMAGE_MISMATCH = 0.001  # of the voxels
MAX_LABEL_MISMATCH = 0.01  # of the voxels labelled in the entry or the source


def against_source(case: str, shown: dict[str, str], image: Volume, label: Volume, names: Sequence[str] | None,
                   store: Store, crop: Crop, provenance: dict[str, Any] | None, classes: ClassMap,
                   max_bytes: int) -> list[Finding]:
    """source-geometry, source-annotation and source-content findings of one entry.

    `names`: the classes the entry says are annotated (None: all of the class map).
    """
    out: list[Finding] = []
    hdr = image.header
    spacing = tuple(float(s) for s in hdr.spacing[:3])
    declared = tuple(provenance.get("raw_scale", ())) if provenance else ()
    if declared and not same_scale(declared, spacing):
        out.append(finding(
            "source-geometry", case, shown["image"],
            f"header voxel size {format_scale(spacing)}, but {crop.id} was converted at {format_scale(declared)} "
            "(the datalist's provenance); the spacing was lost or rewritten",
            header_spacing=list(spacing), converted_spacing=list(declared)))
    try:
        plan = plan_crop(case, store, crop, PlanOptions(spacing, classes, upsample=True))
    except Refused as exc:
        where, found = _diagnose(image, label, crop, store, None, tuple(names or ()), classes, max_bytes, spacing)
        out.append(finding(
            "source-geometry", case, shown["image"],
            f"{crop.id} of {store.name} does not convert at {format_scale(spacing)}, the header's voxel size: "
            f"{exc.finding.message}" + (f" Found instead: {where}" if where else ""),
            header_spacing=list(spacing), reason=exc.finding.check))
        return out + list(_voxel_sizes(case, shown, image, label, found))
    out += _geometry(case, shown, hdr, plan, crop)
    write = tuple(n for n in (names if names is not None else classes.names) if n in plan.classes)
    missing = [n for n in (names or ()) if n not in plan.classes]
    if missing:
        out.append(finding(
            "source-annotation", case, shown["label"],
            f"annotated_classes lists {', '.join(missing)}, which {crop.id} does not annotate: the model learns "
            "them as absent here; drop them from annotated_classes", classes=missing))
    renderer = Renderer(plan, store, crop, classes, max_bytes)
    try:
        image_diff = _compare(image, plan, lambda lo, hi: renderer.image(lo, hi))
        label_diff = _compare(label, plan, lambda lo, hi: renderer.label(lo, hi, write), labels=True)
    except Refused as exc:
        out.append(exc.finding)
        return out
    counts = renderer.totals.counts
    unknown = [n for n in write if counts.get(n) and counts[n].unknown]
    if unknown:
        parts = [f"{n} ({counts[n].unknown} of {counts[n].voxels} voxels)" for n in unknown]
        out.append(finding(
            "source-annotation", case, shown["label"],
            f"annotated_classes lists {', '.join(parts)} although the crop marks those voxels unknown: they train "
            "as background; leave such classes out of annotated_classes", classes=unknown,
            unknown={n: counts[n].unknown for n in unknown}))
    if image_diff > MAX_IMAGE_MISMATCH or label_diff > MAX_LABEL_MISMATCH:
        where, found = _diagnose(image, label, crop, store, plan, write, classes, max_bytes, spacing)
        out += _voxel_sizes(case, shown, image, label, found)
        out.append(finding(
            "source-content", case, shown["image" if image_diff > MAX_IMAGE_MISMATCH else "label"],
            f"differs from {crop.id} at {format_scale(spacing)}: image in {100 * image_diff:.1f} % of its voxels, label in "
            f"{100 * label_diff:.1f} % of the labelled ones" + (f"; {where}" if where else "; no shifted or rescaled copy of the crop found "
                                           "near it") + ". Re-convert it (cellcheck convert)",
            image_mismatch=round(image_diff, 4), label_mismatch=round(label_diff, 4)))
    return out


def _geometry(case: str, shown: dict[str, str], hdr, plan: CropPlan, crop: Crop) -> Iterator[Finding]:
    """Extent and origin of the entry against the crop's box at its resolution."""
    shape = tuple(int(n) for n in hdr.shape[:3])
    if shape != plan.shape:
        ratio = np.asarray(shape) / np.asarray(plan.shape)
        times = f" ({'x'.join(f'{r:.3g}' for r in ratio)} its extent)" if not np.allclose(ratio, 1) else ""
        full = tuple(b - a for a, b in zip(plan.crop_start, plan.crop_stop))
        if plan.clipped and shape == full:
            times += ": the crop's whole box, though it runs past the raw volume; that part was padded, not clipped"
        yield finding(
            "source-geometry", case, shown["image"],
            f"image is {'x'.join(map(str, shape))} voxels where {crop.id} spans {'x'.join(map(str, plan.shape))} at "
            f"{format_scale(plan.spacing)}{times}", shape=list(shape), expected_shape=list(plan.shape))
    delta = np.asarray(hdr.origin[:3], dtype=float) - np.asarray(plan.origin)
    voxels = delta / np.asarray(plan.spacing)
    if (np.abs(voxels) > 1e-3).any():
        yield finding(
            "source-geometry", case, shown["image"],
            f"origin {np.round(hdr.origin[:3], 3).tolist()} nm is {np.round(delta, 3).tolist()} nm "
            f"({np.round(voxels, 3).tolist()} voxels, z y x) from {crop.id}'s first voxel "
            f"{np.round(plan.origin, 3).tolist()}: the header places the crop elsewhere",
            origin=list(hdr.origin[:3]), expected_origin=list(plan.origin), offset_nm=np.round(delta, 4).tolist())


def _compare(volume: Volume, plan: CropPlan, expected, labels: bool = False) -> float:
    """Share of voxels that differ from `expected(lo, hi)` over the part the entry and the crop's box share.

    For labels the share is of the voxels labelled in either (a sparse class misplaced is not 99 % right).
    """
    common = tuple(min(a, b) for a, b in zip(volume.header.shape[:3], plan.shape))
    if min(common) <= 0:
        return 1.0
    differ = total = 0
    for block in volume.blocks(_block_bytes(common)):
        lo = tuple(int(s) for s in block.start[:3])
        hi = tuple(min(s + n, c) for s, n, c in zip(lo, block.shape[:3], common))
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        want = expected(lo, hi)
        have = _data(block, lo, hi)
        differ += int(np.count_nonzero(have != want))
        total += int(np.count_nonzero((have != 0) | (want != 0))) if labels else want.size
    return differ / total if total else float(differ > 0)


def _block_bytes(common: tuple[int, ...]) -> int:
    """Whole planes of the last axis, a few at a time (the reader's slabs)."""
    return max(16 * 2**20, common[0] * common[1] * 8)


def _data(block: Block, lo, hi) -> np.ndarray:
    shape = tuple(h - l for l, h in zip(lo, hi))
    if block.data is None:
        return np.full(shape, block.fill)
    data = block.data.reshape(block.shape)
    while data.ndim > 3:
        data = data[..., 0]
    start = block.start[:3]
    return data[tuple(slice(l - s, h - s) for l, h, s in zip(lo, hi, start))]


def _voxel_sizes(case: str, shown: dict[str, str], image: Volume, label: Volume,
                 found: dict[str, Found]) -> Iterator[Finding]:
    """header-voxel-size: the image's (or label's) voxels found at a level of another voxel size than its header's."""
    for role, volume in (("image", image), ("label", label)):
        where = found.get(role)
        header = tuple(float(s) for s in volume.header.spacing[:3])
        if where is None or same_scale(where.scale, header):
            continue
        yield finding(
            "header-voxel-size", case, shown[role],
            f"the {role}'s header says {format_scale(header)} but its voxels are {where.describe()}: every size and "
            f"distance read from it is off by {'x'.join(f'{h / w:.3g}' for h, w in zip(header, where.scale))}; "
            f"write {format_scale(where.scale)} in its header, or re-convert it (cellcheck convert)",
            header_spacing=list(header), data_spacing=list(where.scale), level=where.what)


def _diagnose(image: Volume, label: Volume, crop: Crop, store: Store, plan: CropPlan | None, write: tuple[str, ...],
              classes: ClassMap, max_bytes: int, spacing: tuple[float, ...]) -> tuple[str, dict[str, Found]]:
    """Where the entry's image and label really come from, and how far apart that puts them (one sentence)."""
    arrays = [crop.classes[n] for n in classes.names if n in crop.classes]
    if not arrays:
        return "", {}
    ref: ClassArray = arrays[0]
    corner = np.asarray(ref.finest.translation) - np.asarray(ref.finest.scale) / 2
    try:
        image_corner, label_corner = first_corner(image), first_corner(label)
    except ReadError:
        return "", {}
    at = probe_at(label_corner)
    box = tuple(slice(a, a + PROBE) for a in at)
    names = tuple(a.name for a in arrays)
    img = locate_image(image_corner[box], at, store.raw, corner, max_bytes) if store.raw else None
    lab = locate_label(label_corner[box], at, crop, names, write or names, classes, max_bytes,
                       tuple(int(n) for n in label.header.shape[:3]))
    shape = np.asarray(image.header.shape[:3])
    truth = Found("the crop", spacing, tuple(plan.origin) if plan else tuple(corner + np.asarray(spacing) / 2))
    parts = []
    for role, found in (("image", img), ("label", lab)):
        if found is None:
            continue
        first = (found.at(np.zeros(3)) - truth.at(np.zeros(3))) / np.asarray(spacing)
        scale_note = "" if same_scale(found.scale, spacing) else f" under the header's {format_scale(spacing)}"
        parts.append(f"the {role} holds {found.describe()}{scale_note}, its first voxel "
                     f"{_fmt(first)} voxels from the crop's")
    if img is not None and lab is not None:
        ends = [np.zeros(3), shape - 1]
        apart = [np.abs(img.at(i) - lab.at(i)) / np.asarray(spacing) for i in ends]
        parts.append(f"label and image are {apart[0].max():.2f} voxels apart at the first voxel and "
                     f"{apart[1].max():.2f} at the far edge")
    return "; ".join(parts), {k: v for k, v in (("image", img), ("label", lab)) if v is not None}


def _fmt(v: np.ndarray) -> list[float]:
    return [round(float(x), 2) + 0.0 for x in v]


def first_corner(volume: Volume) -> np.ndarray:
    """The entry's first corner (a few probes per side): a region read for zarr, the first slabs of a NIfTI."""
    shape = tuple(int(n) for n in volume.header.shape[:3])
    box = tuple(min(n, k * PROBE) for n, k in zip(shape, (4, 4, 2)))
    if isinstance(volume, ZarrVolume):
        return ZarrVolume(volume.array, volume.header.path, region=tuple((0, b) for b in box)).read()
    out = np.zeros(box, dtype=volume.header.dtype)
    for block in volume.blocks(_block_bytes(shape)):  # NIfTI: slabs in order of the last axis
        lo = tuple(int(s) for s in block.start[:3])
        if lo[-1] >= box[-1]:
            break
        hi = tuple(min(s + n, c) for s, n, c in zip(lo, block.shape[:3], box))
        if all(h > l for l, h in zip(lo, hi)):
            out[tuple(slice(l, h) for l, h in zip(lo, hi))] = _data(block, lo, hi)
    return out


def unchecked_voxel_sizes(path: object, spacings: Sequence[tuple[float, ...]]) -> list[Finding]:
    """header-voxel-size (info): without the stores a header's voxel size cannot be checked against its voxels.

    One line for the datalist, with the voxel sizes the headers declare: a converter that wrote one voxel size
    on every case (incident 19) gives headers that agree with each other and are all wrong.
    """
    if not spacings:
        return []
    counts: dict[str, int] = {}
    for s in spacings:
        counts[format_scale(s)] = counts.get(format_scale(s), 0) + 1
    declared = ", ".join(f"{n} at {k}" for k, n in sorted(counts.items(), key=lambda t: -t[1]))
    return [finding(
        "header-voxel-size", None, path,
        f"voxel sizes not checked against the data (no --source): the headers declare {declared}; a converter that "
        "writes one voxel size on every case would look the same. Pass --source with the stores they came from",
        severity=Severity.INFO, declared=counts)]
