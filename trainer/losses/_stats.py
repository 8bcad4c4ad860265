"""Sufficient statistics of per-channel sigmoid Dice + BCE, straight from integer labels.

Every term of the partial-annotation loss is a function of five (B, C) sums per sample b and
channel c, with p = sigmoid(x) and y = [label == c + 1]:

    sum_p[b, c]        = sum_v p               (Dice denominator, prediction part)
    sum_softplus[b, c] = sum_v softplus(x)     (BCE-with-logits = softplus(x) - x * y)
    sum_p_label[b, c]  = sum_{v: y=1} p        (Dice intersection)
    sum_x_label[b, c]  = sum_{v: y=1} x        (BCE target part)
    count[b, c]        = #{v: y = 1}           (Dice denominator, target part; no gradient)

``logit_stats`` computes them in one chunked pass over the logits, never building a one-hot or any
other (B, C, *spatial) target; the label-channel terms use a gather at ``label - 1``.  Its backward
is hand-written: with g_* the incoming gradients of the sums,

    dL/dx[b, c, v] = g_p * p (1 - p) + g_sp * p                        (every voxel)
                   + [y = 1] * (g_pl * p (1 - p) + g_xl)              (label channel only)

= p * ((g_p + g_sp) - g_p * p) plus a sparse correction added by scatter_add at the label channel.
Sigmoid is recomputed from the saved logits (which the caller keeps alive anyway) instead of
being stored; forward keeps only p (1 - p) at the label channel, a (B, *spatial) tensor (1/C of
the logits).  So the only logits-sized buffer of the whole forward + backward is the returned
gradient; everything else is that 1/C tensor plus chunk-sized scratch.

Work is done chunk by chunk (see ``_plan``: whole batch, ~1/16 of the volume, at most
``DEFAULT_BLOCK`` elements) so that the sigmoid, softplus and reductions of a chunk run while it
is in cache; on CPU the chunks go to single-threaded worker threads (``_workers``: no OpenMP
barrier per op, which made the loss collapse on a busy 2-core machine).  All arithmetic is
fp32 (fp64 for fp64 logits) whatever the logits dtype, and the sums are accumulated in fp64.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from ._workers import map_chunks, worker_count

__all__ = ["DEFAULT_BLOCK", "LogitStats", "logit_stats"]

# Largest chunk of logits handled at once (batch x channels x voxels): 8 MiB of fp32 scratch
# per worker thread (see ``_workers``); ``_plan`` picks the chunk size below that.
DEFAULT_BLOCK = 1 << 21
_MIN_BLOCK = 1 << 16
_TARGET_CHUNKS = 16


class LogitStats(NamedTuple):
    """Five (B, C) fp64 sums per sample and channel; see the module docstring."""

    sum_p: torch.Tensor
    sum_softplus: torch.Tensor
    sum_p_label: torch.Tensor
    sum_x_label: torch.Tensor
    count: torch.Tensor


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive True entries; why: one strided op per run of needed channels."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


# Voxels per product group in ``_softplus_sums``: q >= 0.5, so a product of 64 stays >= 2**-64,
# far from fp32 underflow (~1e-38), while cutting the number of log() calls 64-fold.
_GROUP = 64


def _softplus_sums(src: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(B, k, n) logits and their sigmoid p (a scratch view) -> (B, k) sums of softplus; p is overwritten.

    softplus(x) = relu(x) - log(q) with q = sigmoid(|x|) = 0.5 + |p - 0.5| in [0.5, 1]; the logs
    are taken of products of ``_GROUP`` q values (one log per group), which is ~3x cheaper than
    softplus itself; the error is ~1e-7 per voxel (fp32 rounding of p and of the products).  q and
    then relu(x) reuse p's memory, so this needs no scratch of its own.
    """
    b, k, n = p.shape
    q = p.sub_(0.5).abs_().add_(0.5)
    n0 = n - n % _GROUP
    log_sum = q[:, :, :n0].view(b, k, _GROUP, n0 // _GROUP).prod(2).log_().sum(2)
    if n0 < n:
        log_sum += q[:, :, n0:].log().sum(2)
    return torch.clamp(src, min=0, out=p).sum(2) - log_sum


def _plan(x: torch.Tensor, channels: int, block: int) -> tuple[int, torch.dtype]:
    """Chunk width in voxels and the work dtype; why: bound scratch memory, keep chunks in cache.

    A chunk covers the whole batch and ``channels`` channels and holds about 1/16 of that work
    (at least 8 chunks per worker thread: balance, and the per-thread scratch stays ~1/16 of the
    logits), at least 2**16 and at most ``block`` elements, so scratch memory stays bounded (on
    GPU too) and CPU chunks stay cache-sized.
    """
    b, _, s = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    per_voxel = max(1, b * channels)
    target = max(_TARGET_CHUNKS, 8 * worker_count())
    elems = min(block, max(per_voxel * s // target, _MIN_BLOCK))
    width = elems // per_voxel
    if width > _GROUP:
        width -= width % _GROUP  # full chunks need no softplus tail (see _softplus_sums)
    return max(1, min(s, width)), work


class _Views:
    """Named groups of views carved from one thread's scratch for one chunk width, made once.

    Why: carving costs three torch calls per view, and a chunk needs a dozen; the chunks of a
    call share their width, so each thread carves once and reuses the views chunk after chunk.
    """

    def __init__(self, raw: torch.Tensor) -> None:
        self.raw = raw
        self._groups: dict[str, list[torch.Tensor]] = {}

    def group(self, name: str, specs: list[tuple[tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
        """Views of (shape, dtype) laid out from byte 0, 8-byte aligned; groups may overlap."""
        views = self._groups.get(name)
        if views is None:
            views, offset = [], 0
            for shape, dtype in specs:
                start = (offset + 7) // 8 * 8
                offset = start + math.prod(shape) * dtype.itemsize
                if offset > self.raw.numel():
                    raise RuntimeError(f"internal: chunk scratch too small ({offset} > {self.raw.numel()} bytes)")
                views.append(self.raw[start:offset].view(dtype).view(shape))
            self._groups[name] = views
        return views


class _Scratch:
    """One byte buffer per thread for the duration of one call; why: no allocation per chunk.

    Every temporary of a chunk (sigmoid, converted logits, int64 labels, channel index, gathered
    values, coefficients) is a view into it, so the only memory beyond the gradient and
    ``dp_label`` is one chunk-sized buffer per worker thread, freed when the call returns.
    """

    def __init__(self, nbytes: int, device: torch.device) -> None:
        self.nbytes, self.device = nbytes, device
        self._views: dict[tuple[int, int], _Views] = {}
        self._raw: dict[int, torch.Tensor] = {}

    def views(self, width: int) -> _Views:
        """The calling thread's views for chunks of ``width`` voxels (buffer made on first use)."""
        thread = threading.get_ident()
        views = self._views.get((thread, width))
        if views is None:
            raw = self._raw.get(thread)
            if raw is None:
                # 8-byte words viewed as bytes: it is scratch, not an element-wise tensor.
                words = torch.empty((self.nbytes + 7) // 8, dtype=torch.float64, device=self.device)
                raw = self._raw[thread] = words.view(torch.uint8)
            views = self._views[(thread, width)] = _Views(raw)
        return views


def _scratch_bytes(b: int, k: int, n: int, work: torch.dtype, convert: bool) -> int:
    """Bytes of one chunk's scratch: the dense stage's (B, k, n) sigmoid (+ converted logits), or
    the label stage's ~48 bytes per (sample, voxel), whichever is larger (+ alignment slack)."""
    item = work.itemsize
    dense = b * k * n * item * (2 if convert else 1)
    return max(dense, b * n * 56) + 64


class _LogitStatsFunction(torch.autograd.Function):
    """Autograd wrapper: forward = chunked sums, backward = fused closed-form gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        labels: torch.Tensor,
        need: torch.Tensor,
        block: int,
    ) -> tuple[torch.Tensor, ...]:
        """(B, C, S) float logits, (B, S) int labels, (B, C) bool CPU -> five (B, C) fp64 sums."""
        b_size, c_size, s_size = x.shape
        dev = x.device
        f64 = torch.float64
        bins = c_size + 1
        # Dense work runs over the channels some sample needs; the rest of that chunk is wasted
        # only where masks differ between samples, and every op covers the whole batch.
        runs = _runs(need.any(0).tolist())
        k_max = max((c1 - c0 for c0, c1 in runs), default=1)
        width, work = _plan(x, k_max, block)
        # p (1 - p) at the label channel, kept for backward: (B, S), 1/C of the logits' size.
        dp_label = torch.zeros(b_size, s_size, dtype=work, device=dev)
        # Voxels per (sample, label value): one bincount per sample on the raw labels.
        count_all = torch.stack([torch.bincount(labels[b], minlength=bins)[:bins] for b in range(b_size)])
        convert = x.dtype != work
        scratch = _Scratch(_scratch_bytes(b_size, k_max, width, work, convert), dev)
        offsets = torch.arange(0, b_size * bins, bins, device=dev).unsqueeze(1)  # (B, 1)

        def chunk(s0: int) -> tuple[torch.Tensor, ...]:
            n = min(width, s_size - s0)
            x_chunk = x[:, :, s0 : s0 + n]
            views = scratch.views(n)
            # Label stage: logit and sigmoid at the label channel, sums per (sample, label value).
            lab64, chan, xg, xw, pg, weights = views.group(
                "label",
                [
                    ((b_size, n), torch.int64),
                    ((b_size, 1, n), torch.int64),
                    ((b_size, 1, n), x.dtype),
                    ((b_size, n), work),
                    ((b_size, n), work),
                    ((b_size * n,), f64),
                ],
            )
            lab64.copy_(labels[:, s0 : s0 + n])
            torch.sub(lab64.unsqueeze(1), 1, out=chan).clamp_(min=0)
            torch.gather(x_chunk, 1, chan, out=xg)
            xg = xw.copy_(xg.view(b_size, n)) if convert else xg.view(b_size, n)
            torch.sigmoid(xg, out=pg)
            torch.addcmul(pg, pg, pg, value=-1, out=dp_label[:, s0 : s0 + n])
            idx = lab64.add_(offsets).view(-1)  # bin b * (C + 1) + label; bin 0 = background
            part_pl = torch.zeros(b_size * bins, dtype=f64, device=dev).index_add_(0, idx, weights.copy_(pg.view(-1)))
            part_xl = torch.zeros(b_size * bins, dtype=f64, device=dev).index_add_(0, idx, weights.copy_(xg.view(-1)))
            # Dense stage: sum of sigmoid and of softplus per (sample, channel).
            part_p = torch.zeros(b_size, c_size, dtype=work, device=dev)
            part_sp = torch.zeros(b_size, c_size, dtype=work, device=dev)
            for c0, c1 in runs:
                bufs = views.group(f"dense{c1 - c0}", [((b_size, c1 - c0, n), work)] * (2 if convert else 1))
                src = bufs[1].copy_(x_chunk[:, c0:c1]) if convert else x_chunk[:, c0:c1]
                p = torch.sigmoid(src, out=bufs[0])
                part_p[:, c0:c1] = p.sum(2)
                part_sp[:, c0:c1] = _softplus_sums(src, p)
            return part_p, part_sp, part_pl, part_xl

        parts = map_chunks(chunk, range(0, s_size, width) if runs else [], dev)
        zero = torch.zeros((), dtype=f64, device=dev)
        need_dev = need.to(dev)

        def total(i: int, shape: tuple[int, ...]) -> torch.Tensor:
            if not parts:
                return torch.zeros(shape, dtype=f64, device=dev)
            return torch.stack([part[i] for part in parts]).sum(0, dtype=f64)

        sum_p = torch.where(need_dev, total(0, (b_size, c_size)), zero)
        sum_sp = torch.where(need_dev, total(1, (b_size, c_size)), zero)
        sum_pl = torch.where(need_dev, total(2, (b_size * bins,)).view(b_size, bins)[:, 1:], zero)
        sum_xl = torch.where(need_dev, total(3, (b_size * bins,)).view(b_size, bins)[:, 1:], zero)
        count = torch.where(need_dev, count_all[:, 1:].to(f64), zero)
        ctx.save_for_backward(x, labels, dp_label)
        ctx.block = block
        ctx.mark_non_differentiable(count)
        return sum_p, sum_sp, sum_pl, sum_xl, count

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        g_p: torch.Tensor,
        g_sp: torch.Tensor,
        g_pl: torch.Tensor,
        g_xl: torch.Tensor,
        _g_count: torch.Tensor,
    ) -> tuple[torch.Tensor | None, None, None, None]:
        """Five (B, C) gradients -> (B, C, S) gradient of the logits in their dtype."""
        x, labels, dp_label = ctx.saved_tensors
        b_size, c_size, s_size = x.shape
        dev = x.device
        bins = c_size + 1
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        # Channels whose dense coefficients are zero for every sample get exact zeros; within the
        # others, a sample with zero coefficients computes (0 - 0 * p) * p = 0 exactly.
        dense = ((g_p != 0) | (g_sp != 0)).any(0).tolist()
        runs = _runs(dense)
        for c0, c1 in _runs([not f for f in dense]):
            grad[:, c0:c1].zero_()
        has_sparse = bool(((g_pl != 0) | (g_xl != 0)).any())
        if not runs and not has_sparse:
            return grad, None, None, None
        k_max = max((c1 - c0 for c0, c1 in runs), default=1)
        width, work = _plan(x, k_max, ctx.block)
        ab = (g_p + g_sp).to(work).unsqueeze(2)  # (B, C, 1)
        neg_a = (-g_p).to(work).unsqueeze(2)
        convert = x.dtype != work
        scratch = _Scratch(_scratch_bytes(b_size, k_max, width, work, convert), dev)
        # Per (sample, label value) coefficients of p(1-p) and of 1; row 0 (background) is zero.
        table = torch.zeros(b_size, bins, 2, dtype=work, device=dev)
        table[:, 1:, 0] = g_pl.to(work)
        table[:, 1:, 1] = g_xl.to(work)
        table = table.view(b_size * bins, 2)
        offsets = torch.arange(0, b_size * bins, bins, device=dev).unsqueeze(1)

        def chunk(s0: int) -> None:
            n = min(width, s_size - s0)
            x_chunk = x[:, :, s0 : s0 + n]
            g_chunk = grad[:, :, s0 : s0 + n]
            views = scratch.views(n)
            for c0, c1 in runs:
                bufs = views.group(f"dense{c1 - c0}", [((b_size, c1 - c0, n), work)] * (2 if convert else 1))
                src = bufs[1].copy_(x_chunk[:, c0:c1]) if convert else x_chunk[:, c0:c1]
                p = torch.sigmoid(src, out=bufs[0])
                # grad = ((g_p + g_sp) - g_p * p) * p, built in place in the gradient itself
                # (fp32/fp64 logits) or in the scratch that held the converted logits.
                t = src if convert else g_chunk[:, c0:c1]
                torch.addcmul(ab[:, c0:c1], p, neg_a[:, c0:c1], out=t)
                t.mul_(p)
                if convert:
                    g_chunk[:, c0:c1].copy_(t)
            if has_sparse:
                lab64, chan, coef, corr, corr_g = views.group(
                    "sparse",
                    [
                        ((b_size, n), torch.int64),
                        ((b_size, 1, n), torch.int64),
                        ((b_size * n, 2), work),
                        ((b_size, n), work),
                        ((b_size, 1, n), grad.dtype),
                    ],
                )
                lab64.copy_(labels[:, s0 : s0 + n])
                torch.sub(lab64.unsqueeze(1), 1, out=chan).clamp_(min=0)
                torch.index_select(table, 0, lab64.add_(offsets).view(-1), out=coef)
                coef3 = coef.view(b_size, n, 2)
                torch.addcmul(coef3[..., 1], coef3[..., 0], dp_label[:, s0 : s0 + n], out=corr)
                corr = corr.unsqueeze(1) if grad.dtype == work else corr_g.copy_(corr.unsqueeze(1))
                g_chunk.scatter_add_(1, chan, corr)

        map_chunks(chunk, range(0, s_size, width), dev)
        return grad, None, None, None


def logit_stats(
    logits: torch.Tensor, labels: torch.Tensor, need: torch.Tensor, block: int | None = None
) -> LogitStats:
    """(B, C, S) float logits, (B, S) int labels in 0..C, (B, C) bool need -> LogitStats of (B, C) fp64.

    Entries whose ``need`` is False are 0 and get no gradient; why: unannotated channels cost nothing.
    Inputs are assumed validated (see ``PartialAnnotationLoss``).
    """
    out = _LogitStatsFunction.apply(
        logits, labels, need.detach().to("cpu", torch.bool), DEFAULT_BLOCK if block is None else block
    )
    return LogitStats(*out)
