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

Work is done chunk by chunk (see ``_plan``: whole batch, ~1/8 of the volume, at most
``DEFAULT_BLOCK`` elements) so that the sigmoid, softplus and reductions of a chunk run while it
is in cache.  All arithmetic is fp32 (fp64 for fp64 logits) whatever the logits dtype, and the
sums are accumulated in fp64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

__all__ = ["DEFAULT_BLOCK", "LogitStats", "logit_stats"]

# Largest chunk of logits handled at once (batch x channels x voxels): 16 MiB of fp32
# scratch.  See ``_plan`` for how the chunk size is chosen below that.
DEFAULT_BLOCK = 1 << 22
_MIN_BLOCK = 1 << 18
_TARGET_CHUNKS = 8


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
    """Chunk width in voxels and the work dtype; why: bound scratch memory *and* the number of ops.

    A chunk covers the whole batch and ``channels`` channels and holds about 1/8 of that work
    (so a call is ~8 chunks, a few hundred ops whatever the volume, which also keeps 2-core CPU
    runs tolerable when another process competes for a core), at least 2**18 and at most
    ``block`` elements: scratch memory stays bounded (on GPU too) and CPU chunks stay cache-sized.
    """
    b, _, s = x.shape
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    per_voxel = max(1, b * channels)
    elems = min(block, max(per_voxel * s // _TARGET_CHUNKS, _MIN_BLOCK))
    return max(1, min(s, elems // per_voxel)), work


def _scratch(x: torch.Tensor, width: int, channels: int, work: torch.dtype) -> torch.Tensor:
    """Flat work-dtype scratch for one chunk of ``channels`` channels."""
    return torch.empty(x.shape[0] * max(1, channels) * width, dtype=work, device=x.device)


def _chunk_view(buf: torch.Tensor, b: int, k: int, n: int) -> torch.Tensor:
    """(b, k, n) contiguous view on the front of a flat scratch buffer."""
    return buf[: b * k * n].view(b, k, n)


def _label_chunk(
    x_chunk: torch.Tensor, lab_chunk: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, n) logits + (B, n) int labels -> int64 labels (B, n), channel index (B, 1, n), logit there (B, n)."""
    lab64 = lab_chunk.long()
    chan = (lab64 - 1).clamp_(min=0).unsqueeze(1)
    return lab64, chan, x_chunk.gather(1, chan).squeeze(1)


def _bin_index(lab64: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(B, n) int64 labels + (B, 1) sample offsets -> (B, n) bin index b * (C + 1) + label.

    In place when ``lab64`` is a converted copy; int64 labels are the caller's own memory.
    """
    return lab64 + offsets if labels.dtype == torch.int64 else lab64.add_(offsets)


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
        acc_p = torch.zeros(b_size, c_size, dtype=f64, device=dev)
        acc_sp = torch.zeros(b_size, c_size, dtype=f64, device=dev)
        acc_pl = torch.zeros(b_size * bins, dtype=f64, device=dev)
        acc_xl = torch.zeros(b_size * bins, dtype=f64, device=dev)
        # Voxels per (sample, label value): one bincount per sample on the raw labels.
        acc_cnt = torch.stack([torch.bincount(labels[b], minlength=bins)[:bins] for b in range(b_size)])
        width, work = _plan(x, max((c1 - c0 for c0, c1 in runs), default=1), block)
        # p (1 - p) at the label channel, kept for backward: (B, S), 1/C of the logits' size.
        dp_label = torch.zeros(b_size, s_size, dtype=work, device=dev)
        if runs:
            k_max = max(c1 - c0 for c0, c1 in runs)
            xbuf = _scratch(x, width, k_max, work) if x.dtype != work else None
            pbuf = _scratch(x, width, k_max, work)
            offsets = torch.arange(0, b_size * bins, bins, device=dev).unsqueeze(1)  # (B, 1)
            for s0 in range(0, s_size, width):
                n = min(width, s_size - s0)
                x_chunk = x[:, :, s0 : s0 + n]
                lab64, _, xg = _label_chunk(x_chunk, labels[:, s0 : s0 + n])
                xg = xg.to(work)
                pg = torch.sigmoid(xg)
                torch.addcmul(pg, pg, pg, value=-1, out=dp_label[:, s0 : s0 + n])
                # Sums per (sample, label value) in fp64; bin 0 (background) is dropped below.
                idx = _bin_index(lab64, labels, offsets).view(-1)
                acc_pl.index_add_(0, idx, pg.view(-1).to(f64))
                acc_xl.index_add_(0, idx, xg.reshape(-1).to(f64))
                for c0, c1 in runs:
                    k = c1 - c0
                    src = x_chunk[:, c0:c1]
                    if xbuf is not None:
                        src = _chunk_view(xbuf, b_size, k, n).copy_(src)
                    p = torch.sigmoid(src, out=_chunk_view(pbuf, b_size, k, n))
                    acc_p[:, c0:c1] += p.sum(2)
                    acc_sp[:, c0:c1] += _softplus_sums(src, p)
        zero = torch.zeros((), dtype=f64, device=dev)
        need_dev = need.to(dev)
        sum_p = torch.where(need_dev, acc_p, zero)
        sum_sp = torch.where(need_dev, acc_sp, zero)
        sum_pl = torch.where(need_dev, acc_pl.view(b_size, bins)[:, 1:], zero)
        sum_xl = torch.where(need_dev, acc_xl.view(b_size, bins)[:, 1:], zero)
        count = torch.where(need_dev, acc_cnt[:, 1:].to(f64), zero)
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
        width, work = _plan(x, max((c1 - c0 for c0, c1 in runs), default=1), ctx.block)
        ab = (g_p + g_sp).to(work).unsqueeze(2)  # (B, C, 1)
        neg_a = (-g_p).to(work).unsqueeze(2)
        k_max = max((c1 - c0 for c0, c1 in runs), default=1)
        convert = x.dtype != work
        xbuf = _scratch(x, width, k_max, work) if convert else None
        pbuf = _scratch(x, width, k_max, work)
        if has_sparse:
            # Per (sample, label value) coefficients of p(1-p) and of 1; row 0 (background) is zero.
            table = torch.zeros(b_size, bins, 2, dtype=work, device=dev)
            table[:, 1:, 0] = g_pl.to(work)
            table[:, 1:, 1] = g_xl.to(work)
            table = table.view(b_size * bins, 2)
            offsets = torch.arange(0, b_size * bins, bins, device=dev).unsqueeze(1)
        for s0 in range(0, s_size, width):
            n = min(width, s_size - s0)
            x_chunk = x[:, :, s0 : s0 + n]
            g_chunk = grad[:, :, s0 : s0 + n]
            for c0, c1 in runs:
                k = c1 - c0
                src = x_chunk[:, c0:c1]
                if xbuf is not None:
                    src = _chunk_view(xbuf, b_size, k, n).copy_(src)
                p = torch.sigmoid(src, out=_chunk_view(pbuf, b_size, k, n))
                # grad = ((g_p + g_sp) - g_p * p) * p, built in place in the gradient itself
                # (fp32/fp64 logits) or in the scratch that held the converted logits.
                t = _chunk_view(xbuf, b_size, k, n) if xbuf is not None else g_chunk[:, c0:c1]
                torch.addcmul(ab[:, c0:c1], p, neg_a[:, c0:c1], out=t)
                t.mul_(p)
                if xbuf is not None:
                    g_chunk[:, c0:c1].copy_(t)
            if has_sparse:
                lab64 = labels[:, s0 : s0 + n].long()
                chan = (lab64 - 1).clamp_(min=0).unsqueeze(1)
                coef = table.index_select(0, _bin_index(lab64, labels, offsets).view(-1)).view(b_size, n, 2)
                corr = torch.addcmul(coef[..., 1], coef[..., 0], dp_label[:, s0 : s0 + n])
                g_chunk.scatter_add_(1, chan, corr.to(grad.dtype).unsqueeze(1))
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
