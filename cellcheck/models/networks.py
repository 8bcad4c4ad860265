"""The three MONAI networks we train (the Auto3DSeg templates' SegResNetDS, SwinUNETR and DiNTS), built one way.

All three map a (B, in_channels, Z, Y, X) float32 patch to per-class logits (sigmoid outputs, one
channel per class). SegResNetDS in train mode with deep supervision returns a list of logits, full
resolution first; `outputs_as_list` makes every output a list so callers need no isinstance checks.

DiNTS here is a *fixed* architecture, the one the Auto3DSeg DiNTS template trains when no search is
run (see `DINTS_CODE_A`); architecture search is not in scope. Its forward branches only on Python
lists, never on tensor values, so it runs under `torch._subclasses.fake_tensor.FakeTensorMode` (the
memory model) as SegResNetDS and SwinUNETR do.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.nets import SegResNetDS, SwinUNETR
from monai.networks.nets.dints import DiNTS, TopologyInstance
from torch import nn

from cellcheck.models.shapes import MODELS, check_roi, roi_multiple

__all__ = ["MODELS", "build_network", "check_roi", "dints_node_activation", "network_widths", "outputs_as_list",
           "roi_multiple"]

#: SegResNetDS as in the Auto3DSeg segresnet template (configs/hyper_parameters.yaml: init_filters 32,
#: blocks_down [1, 2, 2, 4, 4], dsdepth 4). The template asks for norm INSTANCE_NVFUSER (apex's fused
#: CUDA kernel); "instance" is the same arithmetic and also runs on a CPU.
SEGRESNET_BLOCKS_DOWN = (1, 2, 2, 4, 4)
SEGRESNET_INIT_FILTERS = 32
SEGRESNET_DSDEPTH = 4

#: SwinUNETR as in the Auto3DSeg swinunetr template (configs/network.yaml).
SWINUNETR_FEATURE_SIZE = 48

#: DiNTS search-space size as in the Auto3DSeg dints template (configs/network.yaml):
#: TopologyInstance(channel_mul=1, num_blocks=12, num_depths=4, use_downsample=True), so the four
#: resolutions of the space are 1/2, 1/4, 1/8 and 1/16 of the patch, with 64..512 channels.
DINTS_NUM_BLOCKS = 12
DINTS_NUM_DEPTHS = 4
DINTS_CHANNEL_MUL = 1.0

#: The architecture the Auto3DSeg dints template ships in scripts/arch_code.pth and trains when no
#: search is run (Project-MONAI/research-contributions, auto3dseg/algorithm_templates/dints, blob
#: 341ba1af). One string per block; character j is path j of MONAI's TopologyConstruction ordering
#: (arch_code2in = 0 1 0 1 2 1 2 3 2 3, arch_code2out = 0 0 1 1 1 2 2 2 3 3).
#: DINTS_CODE_A: 1 = the path is active. DINTS_CODE_C: the cell operation of the path, an index into
#: MONAI's Cell.OPS3D (0 skip_connect, 1 conv_3x3x3, 2 conv_3x3x1, 3 conv_3x1x3, 4 conv_1x3x3).
#: The node activation (`node_a` in MONAI) is derived from DINTS_CODE_A by `dints_node_activation`.
DINTS_CODE_A = (
    "1011111010", "1111011011", "1111111011", "1011111110", "1111011111", "1011111111",
    "1111010111", "1111110011", "1111011111", "1111011111", "1110011111", "1100000111",
)
DINTS_CODE_C = (
    "1313212011", "1031021243", "3002101210", "4221211013", "1140041111", "2000444111",
    "4300240103", "1100340413", "1002000011", "1423443031", "2023020032", "4400143021",
)

def dints_node_activation(code_a: Sequence[str], num_depths: int = DINTS_NUM_DEPTHS) -> list[list[bool]]:
    """(num_blocks + 1) x num_depths node activations from path codes; why: MONAI's `node_a`, without a search.

    Row 0: the stem's resolution d feeds an active path of block 0. Row b + 1: an active path of
    block b writes resolution d. This is how MONAI's TopologySearch.decode derives `node_a`.
    """
    path_in, path_out = _dints_path_nodes(num_depths)
    rows = [[c == "1" for c in row] for row in code_a]
    nodes = [[any(a and path_in[j] == d for j, a in enumerate(rows[0])) for d in range(num_depths)]]
    for row in rows:
        nodes.append([any(a and path_out[j] == d for j, a in enumerate(row)) for d in range(num_depths)])
    return nodes


def _dints_path_nodes(num_depths: int) -> tuple[list[int], list[int]]:
    """Input and output resolution of each path, in MONAI's TopologyConstruction order."""
    n_paths = 3 * num_depths - 2
    path_in = [(i + 1) // 3 - 1 + (i + 1) % 3 for i in range(n_paths)]
    path_out = [m for m in range(num_depths) for _ in range(3)][1:-1]
    return path_in, path_out


class StaticTopologyInstance(TopologyInstance):
    """MONAI's TopologyInstance whose forward loops over Python bools, not over tensor arch codes.

    Same modules and state-dict keys as TopologyInstance; a resolution no active path writes stays
    None instead of a 0-d zero tensor (adding that zero changed nothing).
    """

    def __init__(self, code_a: Sequence[str], code_c: Sequence[str], channel_mul: float, num_depths: int) -> None:
        arch_code = [
            np.array([[float(c) for c in row] for row in code_a]),
            np.array([[int(c) for c in row] for row in code_c]),
        ]
        with contextlib.redirect_stdout(io.StringIO()):  # TopologyConstruction prints a patch-size hint
            super().__init__(
                arch_code=arch_code, channel_mul=channel_mul, num_blocks=len(code_a), num_depths=num_depths,
                use_downsample=True, device="cpu",
            )
        self.active_paths = [[c == "1" for c in row] for row in code_a]
        self._check_connected()

    def _check_connected(self) -> None:
        """Every active path of block b > 0 must read a resolution some active path of block b - 1 writes."""
        for blk in range(1, self.num_blocks):
            written = {self.arch_code2out[j] for j, a in enumerate(self.active_paths[blk - 1]) if a}
            for j, a in enumerate(self.active_paths[blk]):
                if a and self.arch_code2in[j] not in written:
                    raise ValueError(
                        f"DiNTS architecture: block {blk} path {j} reads resolution {self.arch_code2in[j]}, "
                        f"which no active path of block {blk - 1} writes"
                    )

    def forward(self, x: list[torch.Tensor | None]) -> list[torch.Tensor | None]:  # type: ignore[override]
        """num_depths feature maps (None = inactive) -> num_depths feature maps after all blocks."""
        inputs = x
        for blk, row in enumerate(self.active_paths):
            outputs: list[torch.Tensor | None] = [None] * self.num_depths
            for j, active in enumerate(row):
                if not active:
                    continue
                src = inputs[self.arch_code2in[j]]
                if src is None:
                    raise ValueError(f"DiNTS block {blk} path {j} reads inactive resolution {self.arch_code2in[j]}")
                out = self.cell_tree[str((blk, j))](src, None)
                dst = self.arch_code2out[j]
                prev = outputs[dst]
                outputs[dst] = out if prev is None else prev + out
            inputs = outputs
        return inputs


class StaticDiNTS(DiNTS):
    """MONAI's DiNTS (downsampling stem) whose forward branches on Python bools only; why: FakeTensorMode.

    Same modules and state-dict keys as `DiNTS(StaticTopologyInstance(...), node_a=...)`, and the same
    logits. A stem whose resolution feeds no path of block 0 is skipped rather than replaced by zeros,
    and its parameters are frozen (requires_grad=False): they can never get a gradient, and leaving them
    trainable would make DistributedDataParallel fail on unused parameters.
    """

    def __init__(self, space: StaticTopologyInstance, in_channels: int, num_classes: int) -> None:
        code_a = ["".join("1" if a else "0" for a in row) for row in space.active_paths]
        nodes = dints_node_activation(code_a, space.num_depths)
        super().__init__(
            space, in_channels=in_channels, num_classes=num_classes, use_downsample=True,
            node_a=np.array(nodes, dtype=np.int64),
        )
        self.active_nodes = nodes
        for d, active in enumerate(nodes[0]):
            if not active:
                self.stem_down[str(d)].requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, Z, Y, X) -> (B, num_classes, Z, Y, X) logits."""
        inputs = [self.stem_down[str(d)](x) if a else None for d, a in enumerate(self.active_nodes[0])]
        outputs = self.dints_space(inputs)
        top: torch.Tensor | None = None
        for d in range(self.num_depths - 1, -1, -1):  # coarse to fine, starting at the coarsest written node
            if top is None:
                if self.active_nodes[-1][d]:
                    top = self.stem_up[str(d)](outputs[d])
            else:
                feat = outputs[d]
                top = self.stem_up[str(d)](top if feat is None else feat + top)
        if top is None:
            raise ValueError("DiNTS architecture: the last block writes no resolution")
        return self.stem_finals(top)


def network_widths(model: str, width: float = 1.0) -> dict[str, float | int]:
    """The constructor's width arguments at `width` times the template's; why: one rule for training and the memory model.

    SegResNetDS init_filters 32 x width; SwinUNETR feature_size 48 x width in steps of 12 (its rule);
    DiNTS channel_mul x width. Width 1 is the Auto3DSeg template network.
    """
    if width <= 0:
        raise ValueError(f"network width {width} must be positive")
    if model == "segresnet":
        return {"init_filters": max(1, round(SEGRESNET_INIT_FILTERS * width))}
    if model == "swinunetr":
        return {"feature_size": 12 * max(1, round(SWINUNETR_FEATURE_SIZE * width / 12))}
    return {"channel_mul": DINTS_CHANNEL_MUL * width}


def build_network(
    model: str,
    num_classes: int = 14,
    in_channels: int = 1,
    roi_size: Sequence[int] = (96, 96, 96),
    deep_supervision: bool = True,
    width: float = 1.0,
) -> nn.Module:
    """The Auto3DSeg template network `model` for our task; why: one place that fixes every constructor value.

    (B, in_channels, *roi) float32 -> (B, num_classes, *roi) float32 logits; SegResNetDS in train mode
    with deep_supervision returns a list of 4 logits, full resolution first (the others 1/2, 1/4, 1/8).
    `deep_supervision` only affects segresnet. `roi_size` is validated (`check_roi`), not stored.
    `width` scales the feature widths (`network_widths`): 1 is the template, 0.25 a smoke run's.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    check_roi(model, roi_size)
    widths = network_widths(model, width)
    if model == "segresnet":
        return SegResNetDS(
            spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
            blocks_down=SEGRESNET_BLOCKS_DOWN, norm="instance",
            dsdepth=SEGRESNET_DSDEPTH if deep_supervision else 1, **widths,
        )
    if model == "swinunetr":  # MONAI >= 1.5 takes no img_size; the ROI rule is checked above
        return SwinUNETR(
            in_channels=in_channels, out_channels=num_classes, use_checkpoint=False, spatial_dims=3, use_v2=False,
            **widths,
        )
    space = StaticTopologyInstance(DINTS_CODE_A, DINTS_CODE_C, float(widths["channel_mul"]), DINTS_NUM_DEPTHS)
    return StaticDiNTS(space, in_channels=in_channels, num_classes=num_classes)


def outputs_as_list(out: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A network output as a list of logits, full resolution first; why: one code path for 1 or many heads.

    (B, C, Z, Y, X) tensor or a list/tuple of (B, C, z_l, y_l, x_l) -> list of the same tensors.
    """
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    raise TypeError(f"expected a tensor or a non-empty list of tensors from the network, got {type(out).__name__}")
