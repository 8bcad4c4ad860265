"""Peak GPU memory of one training step, computed on a CPU: fake tensors for what PyTorch allocates, a model for what only CUDA adds.

What is *tracked* (exact for the tensors, no GPU needed): the real MONAI network is built with fake
parameters and one step runs under `FakeTensorMode` (shapes and dtypes propagate, no storage is
allocated) inside `MemTracker`, which follows every storage created - parameters, activations saved
for backward, temporaries, gradients, optimizer state - and records the peak:

    forward (optionally under bf16/fp16 autocast) -> the trainer's own loss (cellcheck.models.losses: the
    masked sigmoid Dice + BCE from uint8 labels, every deep-supervision output) -> backward ->
    optimizer step (AdamW or SGD with momentum, `foreach=True` as on CUDA) -> zero_grad(set_to_none=True)

What is *modelled* (a CPU build of torch cannot fake a `cuda` device): the CUDA context, the cuDNN
workspace, the caching allocator's rounding and fragmentation and, with several GPUs, DDP's gradient
buckets. Each constant below says where it comes from; none is calibrated on a GPU yet (docs/MEMORY.md).

Units: bytes everywhere; GiB = 2**30 bytes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from cellcheck.errors import CellcheckError
from cellcheck.memory.gpus import GiB, MiB, GpuProfile
from cellcheck.models.shapes import MODELS, check_roi

#: The optimizer each Auto3DSeg template uses (configs/hyper_parameters.yaml): SegResNet and SwinUNETR
#: AdamW, DiNTS SGD with momentum 0.9.
TEMPLATE_OPTIMIZER = {"segresnet": "adamw", "swinunetr": "adamw", "dints": "sgd"}

# --- modelled CUDA-only costs (not calibrated on a GPU yet) -------------------------------------------

#: CUDA context of one process: driver state, kernel images of torch/cuDNN/cuBLAS loaded lazily
#: (CUDA_MODULE_LOADING=LAZY, the default since CUDA 11.7). PyTorch's FAQ and forum measurements put it
#: at roughly 300-1000 MiB depending on the card and CUDA version; 500 MiB is the mid value we assume.
CUDA_CONTEXT_BYTES = 500 * MiB

#: cuDNN convolution workspace (cudnn.benchmark picks algorithms that may ask for scratch the size of a
#: conv's input or output) plus cuBLAS's workspace (CUBLAS_WORKSPACE_CONFIG default :4096:8 = 32 MiB).
#: Modelled as the larger of this floor and the largest single tensor of the step.
CUDNN_WORKSPACE_FLOOR_BYTES = 256 * MiB

#: CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp): every block is rounded up to kMinBlockSize
#: = 512 bytes; requests up to kSmallSize = 1 MiB come from 2 MiB segments, larger ones from segments
#: rounded up to kRoundLarge = 2 MiB (20 MiB kLargeBuffer segments for 1-10 MiB requests, shared).
ALLOCATOR_BLOCK_BYTES = 512
ALLOCATOR_SMALL_BYTES = 1 * MiB
ALLOCATOR_SEGMENT_BYTES = 2 * MiB

#: Reserved-but-unusable memory of the caching allocator after warm-up (free blocks split off segments
#: whose size no later request matches), as a fraction of the segment-rounded peak. 10 % is a rule of
#: thumb from `torch.cuda.memory_reserved()` vs `max_memory_allocated()` on conv nets; calibrate it.
FRAGMENTATION_FRACTION = 0.10

_AMP_DTYPES = ("bf16", "fp16")


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def block_bytes(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request of `nbytes` (rounded up to 512 B)."""
    return 0 if nbytes <= 0 else _round_up(nbytes, ALLOCATOR_BLOCK_BYTES)


def segment_bytes(nbytes: int) -> int:
    """Bytes of device memory a request pins in cudaMalloc'd segments (large requests round to 2 MiB)."""
    b = block_bytes(nbytes)
    return b if b <= ALLOCATOR_SMALL_BYTES else _round_up(b, ALLOCATOR_SEGMENT_BYTES)


# --- networks ---------------------------------------------------------------------------------------------


def network_spec(model: str, out_channels: int = 14, in_channels: int = 1, width: float = 1.0) -> dict[str, Any]:
    """The constructor arguments of the network we model (the Auto3DSeg template's at `width` 1), for reports."""
    from cellcheck.models import networks as nets

    if model not in MODELS:
        raise CellcheckError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    spec: dict[str, Any] = {"segresnet": {"class": "SegResNetDS", "blocks_down": list(nets.SEGRESNET_BLOCKS_DOWN),
                                          "dsdepth": nets.SEGRESNET_DSDEPTH},
                            "swinunetr": {"class": "SwinUNETR", "use_checkpoint": False, "use_v2": False},
                            "dints": {"class": "DiNTS", "space": "TopologyInstance", "num_blocks": nets.DINTS_NUM_BLOCKS,
                                      "num_depths": nets.DINTS_NUM_DEPTHS, "use_downsample": True,
                                      "topology": "the Auto3DSeg dints template's shipped arch_code"}}[model]
    return {**spec, **nets.network_widths(model, width), "width": width, "in_channels": in_channels,
            "out_channels": out_channels}


def _build(model: str, out_channels: int, in_channels: int, width: float = 1.0) -> Any:
    """The network the trainer trains (cellcheck.models.networks), with placeholder parameters.

    Built on the meta device where MONAI allows it; SwinUNETR calls .item() on a linspace while
    building, which neither meta nor fake tensors allow, so it is built for real (62 M parameters,
    ~1 s, ~250 MB of host RAM, replaced by fake tensors right after).
    """
    import contextlib
    import io

    import torch

    from cellcheck.models.networks import build_network

    if model == "swinunetr":
        net = build_network(model, out_channels, in_channels, width=width)
    else:
        with torch.device("meta"), contextlib.redirect_stdout(io.StringIO()):  # DiNTS' space prints a hint
            net = build_network(model, out_channels, in_channels, width=width)
    # MemTracker hooks the gradient of every parameter; DiNTS freezes the stem no path uses (3.55 M
    # parameters, never called), so unfreeze it here: counted with grads and AdamW state, ~57 MB too many.
    return net.requires_grad_(True)


def _fakeify(module: Any, fake_mode: Any) -> None:
    """Replace every parameter and buffer by a fake tensor of the same shape and dtype (no storage)."""
    import torch

    with fake_mode:
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if p is not None:
                    sub._parameters[name] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype),
                                                               requires_grad=p.requires_grad)
            for name, b in list(sub._buffers.items()):
                if b is not None:
                    sub._buffers[name] = torch.empty(b.shape, dtype=b.dtype)


# --- the tracked step -------------------------------------------------------------------------------------


@dataclass
class StepMemory:
    """What one fake training step allocated, in bytes (512 B block-rounded as on CUDA)."""

    model: str
    roi: tuple[int, int, int]
    batch: int
    amp: str | None
    optimizer: str
    n_params: int
    peak_bytes: int  # tracked tensors at the step's peak
    phase_at_peak: str  # forward, loss, backward or optimizer (optimizer includes zero_grad)
    phase_peaks: dict[str, int]  # peak of each phase
    breakdown_at_peak: dict[str, int]  # Parameter, Gradient, Activation, Temp, Optstate, Other at the peak
    before_optimizer: dict[str, int]  # the same categories after backward, before optimizer.step()
    after_step: dict[str, int]  # the same categories once the step is over (parameters + optimizer state)
    segment_peak_bytes: int  # peak of the same tensors rounded to allocator segments (2 MiB for large ones)
    largest_tensor_bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["roi"] = list(self.roi)
        return out


def _tracker_class() -> type:
    """MemTracker with CUDA's 512 B rounding, a segment-rounded peak, per-phase peaks and no per-module peaks.

    MemTracker updates every module's peak after every op (quadratic in the number of modules: DiNTS
    took 100 s for one step); we only need the global peak, so `_update_peak_stats` is replaced.
    """
    from torch.distributed._tools import mem_tracker as mt

    class StepTracker(mt.MemTracker):
        def __init__(self) -> None:
            super().__init__()
            self.segment_current = 0
            self.segment_peak = 0
            self.largest_tensor = 0
            self.phase = "forward"  # set by the step as it goes: forward, loss, backward, optimizer
            self.phase_peaks: dict[str, int] = {}
            self.phase_at_peak = "forward"

        def _update_snap(self, u_type: Any, winfo: Any, old_mem_consumed: int | None = None,
                         old_reftype: Any = None) -> None:
            kind = u_type.name
            if kind in ("ADD", "SIZE"):
                raw = winfo.size * winfo.element_size
                winfo.mem_consumed = block_bytes(raw)
                self.largest_tensor = max(self.largest_tensor, winfo.mem_consumed)
            if kind == "ADD":
                self.segment_current += segment_bytes(winfo.mem_consumed)
            elif kind == "DEL":
                self.segment_current -= segment_bytes(winfo.mem_consumed)
            elif kind == "SIZE":
                self.segment_current += segment_bytes(winfo.mem_consumed) - segment_bytes(old_mem_consumed or 0)
            self.segment_peak = max(self.segment_peak, self.segment_current)
            super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)

        def _update_peak_stats(self, peak_state: Any) -> None:
            phase = self.phase
            for dev, snap in self._curr_mem_snap.items():
                total = snap[mt._TOTAL_KEY]
                if total > self.phase_peaks.get(phase, 0):
                    self.phase_peaks[phase] = total
                if self._peak_mem.get(dev, 0) < total:
                    self._peak_mem[dev] = total
                    self._peak_mem_snap[dev] = dict(snap)
                    self.phase_at_peak = phase

    return StepTracker


def _categories(snapshot: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for dev_snap in snapshot.values():
        for key, value in dev_snap.items():
            name = getattr(key, "value", str(key))
            out[name] = out.get(name, 0) + int(value)
    return out


def _autocast(amp: str | None) -> Any:
    import torch

    if amp is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cpu", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def build_optimizer(name: str, params: Any) -> Any:
    """The optimizer the model tracks ("adamw" or "sgd", `foreach` as on CUDA); the GPU check builds the same."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-5, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.2, momentum=0.9, weight_decay=4e-5, foreach=True)
    raise CellcheckError(f"unknown optimizer {name!r}; choose adamw or sgd")


def _check_roi(model: str, roi: Sequence[int]) -> tuple[int, int, int]:
    """The networks' ROI rule (cellcheck.models.shapes.check_roi) as a one-line user error."""
    if len(roi) != 3 or any(int(r) < 1 for r in roi):
        raise CellcheckError(f"ROI {list(roi)} must be three positive sizes in voxels, e.g. 96,96,96")
    try:
        return check_roi(model, roi)
    except ValueError as exc:
        raise CellcheckError(f"{exc}; round it") from None


def _warm_up(net: Any, opt: Any) -> None:
    """Create the optimizer state as after a first step (fake zeros as gradients, then drop them)."""
    import torch

    for p in net.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)


def track_step(model: str, roi: Sequence[int], batch: int = 1, amp: str | None = "bf16",
               optimizer: str | None = None, out_channels: int = 14, in_channels: int = 1,
               width: float = 1.0) -> StepMemory:
    """Run one training step of the template network with fake tensors and return what it allocated.

    `roi` is the patch size in voxels, `batch` the patches per step, `amp` "bf16", "fp16" or None
    (fp32), `optimizer` "adamw" or "sgd" (default: the template's), `width` the network's (1: the
    template's). Costs seconds, not GPU memory.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss
    from cellcheck.models.networks import outputs_as_list

    if model not in MODELS:
        raise CellcheckError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if amp is not None and amp not in _AMP_DTYPES:
        raise CellcheckError(f"unknown AMP dtype {amp!r}; choose bf16, fp16 or none")
    if batch < 1:
        raise CellcheckError(f"batch size {batch} must be at least 1")
    roi3 = _check_roi(model, roi)
    opt_name = optimizer or TEMPLATE_OPTIMIZER[model]
    start = time.perf_counter()

    net = _build(model, out_channels, in_channels, width)
    fake_mode = FakeTensorMode()
    _fakeify(net, fake_mode)
    net.train()
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    tracker = _tracker_class()()
    loss_fn = DeepSupervisionPartialLoss(PartialAnnotationLoss(out_channels))
    with fake_mode:
        opt = build_optimizer(opt_name, net.parameters())
        image = torch.empty((batch, in_channels, *roi3), dtype=torch.float32)
        labels = torch.empty((batch, 1, *roi3), dtype=torch.uint8)  # integer labels 0..C, as loaded
        annotated = torch.ones((batch, out_channels), dtype=torch.bool)
        _warm_up(net, opt)  # steady state: optimizer state exists before the step, as from step 2 on
        tracker.track_external(net, opt, image, labels, annotated)
        with tracker:
            with _autocast(amp):
                outputs = net(image)
            tracker.phase = "loss"
            loss = loss_fn(outputs_as_list(outputs), labels, annotated)  # what the trainer computes
            tracker.phase = "backward"
            loss.backward()
            tracker.phase = "optimizer"
            at_step = _categories(tracker.get_tracker_snapshot("current"))
            opt.step()
            opt.zero_grad(set_to_none=True)
        peak = _categories(tracker.get_tracker_snapshot("peak"))
        after = _categories(tracker.get_tracker_snapshot("current"))
    return StepMemory(
        model=model, roi=roi3, batch=batch, amp=amp, optimizer=opt_name, n_params=n_params,
        peak_bytes=peak.pop("Total", 0), phase_at_peak=tracker.phase_at_peak, phase_peaks=dict(tracker.phase_peaks),
        breakdown_at_peak=peak, before_optimizer={k: v for k, v in at_step.items() if k != "Total"},
        after_step={k: v for k, v in after.items() if k != "Total"},
        segment_peak_bytes=tracker.segment_peak, largest_tensor_bytes=tracker.largest_tensor,
        seconds=round(time.perf_counter() - start, 2),
    )


# --- from tracked tensors to the card ---------------------------------------------------------------------


@dataclass
class VramEstimate:
    """Predicted peak device memory of one training process on one GPU, with what it is made of (bytes)."""

    peak_bytes: int
    fits: bool
    total_bytes: int
    breakdown: dict[str, int]
    step: StepMemory

    def to_json(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "fits": self.fits, "breakdown": dict(self.breakdown),
                "tracked": self.step.to_json()}


def card_bytes(step: StepMemory, gpus: int = 1) -> dict[str, int]:
    """The modelled device-memory bill of a tracked step: tensors, allocator overheads, CUDA-only costs."""
    rounding = max(0, step.segment_peak_bytes - step.peak_bytes)
    ddp = 0
    if gpus > 1:  # DDP keeps flat gradient buckets beside .grad (gradient_as_bucket_view=False by default)
        ddp = block_bytes(4 * step.n_params)
    return {
        "tensors_peak": step.peak_bytes,
        "allocator_segments": rounding,
        "fragmentation": int(FRAGMENTATION_FRACTION * (step.segment_peak_bytes + ddp)),
        "ddp_buckets": ddp,
        "cudnn_workspace": max(CUDNN_WORKSPACE_FLOOR_BYTES, step.largest_tensor_bytes),
        "cuda_context": CUDA_CONTEXT_BYTES,
    }


def estimate(step: StepMemory, gpu: GpuProfile, gpus: int = 1) -> VramEstimate:
    """Turn a tracked step into a prediction for one card of `gpu` (DDP over `gpus` cards)."""
    bill = card_bytes(step, gpus)
    total = sum(bill.values())
    return VramEstimate(peak_bytes=total, fits=total <= gpu.total_bytes, total_bytes=gpu.total_bytes,
                        breakdown=bill, step=step)


@dataclass
class BatchSearch:
    """The largest batch whose predicted peak fits the card, with the fake runs that decided it."""

    max_batch_size: int
    estimates: dict[int, VramEstimate] = field(default_factory=dict)

    def at(self, batch: int) -> VramEstimate | None:
        return self.estimates.get(batch)


def max_batch_size(model: str, roi: Sequence[int], gpu: GpuProfile, gpus: int = 1, amp: str | None = "bf16",
                   optimizer: str | None = None, out_channels: int = 14, in_channels: int = 1,
                   limit: int = 512, known: dict[int, VramEstimate] | None = None, width: float = 1.0) -> BatchSearch:
    """Largest batch (patches per step) that fits: a line through batches 1 and 2, then checked by fake runs.

    Activation memory grows linearly with the batch; parameters, gradients and optimizer state do not.
    The forward/backward peak and the optimizer-step peak are fitted separately (the step's peak moves
    from the optimizer to the backward pass as the batch grows). Returns 0 when batch 1 does not fit.
    """
    runs: dict[int, VramEstimate] = dict(known or {})

    def run(b: int) -> VramEstimate:
        if b not in runs:
            runs[b] = estimate(track_step(model, roi, b, amp, optimizer, out_channels, in_channels, width), gpu, gpus)
        return runs[b]

    one = run(1)
    if not one.fits:
        return BatchSearch(0, runs)
    two = run(2)
    if not two.fits:
        return BatchSearch(1, runs)
    guess = _linear_guess(one, two, gpu.total_bytes, limit)
    b = max(2, guess)
    if run(b).fits:
        while b < limit and run(b + 1).fits:
            b += 1
    else:
        while b > 2 and not run(b - 1).fits:
            b -= 1
        b -= 1
    return BatchSearch(b, runs)


def _linear_guess(one: VramEstimate, two: VramEstimate, budget: int, limit: int) -> int:
    """Largest b with max(fwd/bwd line, optimizer line) + overheads <= budget, from runs at b = 1 and 2."""
    best = limit
    overhead_1 = one.peak_bytes - one.step.peak_bytes
    overhead_2 = two.peak_bytes - two.step.peak_bytes
    for phases in (("forward", "loss", "backward"), ("optimizer",)):
        p1 = max((one.step.phase_peaks.get(p, 0) for p in phases), default=0) + overhead_1
        p2 = max((two.step.phase_peaks.get(p, 0) for p in phases), default=0) + overhead_2
        slope = p2 - p1
        if slope <= 0:
            continue
        best = min(best, 1 + math.floor((budget - p1) / slope))
    return max(1, best)


def gib(nbytes: float) -> float:
    """Bytes in GiB (2**30), rounded to 2 decimals, for tables."""
    return round(nbytes / GiB, 2)
