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
Sigmoid is recomputed from the saved logits (which the caller keeps alive anyway), so the only
logits-sized buffer the whole forward + backward allocates is the returned gradient.

Work is done chunk by chunk (``DEFAULT_BLOCK`` elements at a time on CPU) so that the sigmoid,
softplus and reductions of one chunk run while it is in cache; all arithmetic is fp32 (fp64 for
fp64 logits) whatever the logits dtype, and the sums are accumulated in fp64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

__all__ = ["DEFAULT_BLOCK", "LogitStats", "logit_stats"]

# Elements of logits handled per chunk on CPU (channels x voxels).  ~1 MiB of fp32 per buffer:
# large enough that per-op Python overhead is small, small enough to stay in L2/L3.
DEFAULT_BLOCK = 1 << 19


class LogitStats(NamedTuple):
    """Five (B, C) fp64 sums per sample and channel; see the module docstring."""

    sum_p: torch.Tensor
    sum_softplus: torch.Tensor
    sum_p_label: torch.Tensor
    sum_x_label: torch.Tensor
    count: torch.Tensor


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[start, stop) ranges of consecutive True entries; why: one 2D op per run of needed channels."""
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


def _softplus_sums(src: torch.Tensor, p: torch.Tensor, qbuf: torch.Tensor) -> torch.Tensor:
    """(k, n) logits, their sigmoid p, scratch of >= k*n -> (k,) sums of softplus; p is overwritten.

    softplus(x) = relu(x) - log(q) with q = sigmoid(|x|) = 0.5 + |p - 0.5| in [0.5, 1]; the logs
    are taken of products of ``_GROUP`` q values (one log per group), which is ~3x cheaper than
    softplus itself and accurate to ~1e-7 relative (q is exact to fp32 rounding of p).
    """
    k, n = p.shape
    q = qbuf[: k * n].view(k, n)
    torch.sub(p, 0.5, out=q)
    q.abs_().add_(0.5)
    relu_sum = torch.clamp(src, min=0, out=p).sum(1)
    n0 = n - n % _GROUP
    log_sum = q[:, :n0].view(k, _GROUP, n0 // _GROUP).prod(1).log_().sum(1)
    if n0 < n:
        log_sum += q[:, n0:].log().sum(1)
    return relu_sum - log_sum


class _Chunking(NamedTuple):
    """How the (C, S) slab of one sample is cut: ``width`` voxels per chunk."""

    width: int
    work_dtype: torch.dtype


def _chunking(x: torch.Tensor, block: int) -> _Chunking:
    """Chunk width in voxels: ``block`` elements over C channels on CPU, whole rows elsewhere."""
    _, c, s = x.shape
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.device.type != "cpu":
        return _Chunking(s, work_dtype)
    return _Chunking(max(1, min(s, block // max(1, c))), work_dtype)


def _label_chunk(
    x_chunk: torch.Tensor, lab_chunk: torch.Tensor, work_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(C, n) logits + (n,) int labels -> int64 label, int64 channel, logit and sigmoid at it (n,)."""
    lab64 = lab_chunk.long()
    chan = (lab64 - 1).clamp_(min=0)
    xg = x_chunk.gather(0, chan.unsqueeze(0)).squeeze(0).to(work_dtype)
    return lab64, chan, xg, torch.sigmoid(xg)


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
        width, work = _chunking(x, block)
        zeros = lambda: torch.zeros(b_size, c_size, dtype=torch.float64, device=dev)  # noqa: E731
        sum_p, sum_sp, sum_pl, sum_xl, count = zeros(), zeros(), zeros(), zeros(), zeros()
        need_rows = need.tolist()
        convert = x.dtype != work
        xbuf = torch.empty(c_size * width, dtype=work, device=dev) if convert else None
        pbuf = torch.empty(c_size * width, dtype=work, device=dev)
        qbuf = torch.empty(c_size * width, dtype=work, device=dev)
        f64 = torch.float64
        # sigmoid at the label channel, kept for backward: (B, S), 1/C of the logits' size.
        p_label = torch.zeros(b_size, s_size, dtype=work, device=dev)
        for b in range(b_size):
            runs = _runs(need_rows[b])
            if not runs:
                continue
            acc_p = torch.zeros(c_size, dtype=f64, device=dev)
            acc_sp = torch.zeros(c_size, dtype=f64, device=dev)
            acc_pl = torch.zeros(c_size + 1, dtype=f64, device=dev)
            acc_xl = torch.zeros(c_size + 1, dtype=f64, device=dev)
            acc_cnt = torch.zeros(c_size + 1, dtype=torch.int64, device=dev)
            for s0 in range(0, s_size, width):
                n = min(width, s_size - s0)
                x_chunk = x[b, :, s0 : s0 + n]
                lab64, _, xg, pg = _label_chunk(x_chunk, labels[b, s0 : s0 + n], work)
                p_label[b, s0 : s0 + n] = pg
                # bincount with fp64 weights: exact-enough sums per label value (bin 0 = background).
                acc_cnt += torch.bincount(lab64, minlength=c_size + 1)
                acc_pl += torch.bincount(lab64, weights=pg.to(f64), minlength=c_size + 1)
                acc_xl += torch.bincount(lab64, weights=xg.to(f64), minlength=c_size + 1)
                for c0, c1 in runs:
                    k = c1 - c0
                    src = x_chunk[c0:c1]
                    if xbuf is not None:
                        src = xbuf[: k * n].view(k, n).copy_(src)
                    p = torch.sigmoid(src, out=pbuf[: k * n].view(k, n))
                    acc_p[c0:c1] += p.sum(1)
                    acc_sp[c0:c1] += _softplus_sums(src, p, qbuf)
            row = torch.tensor(need_rows[b], device=dev)
            sum_p[b] = acc_p
            sum_sp[b] = acc_sp
            sum_pl[b] = torch.where(row, acc_pl[1:], 0.0)
            sum_xl[b] = torch.where(row, acc_xl[1:], 0.0)
            count[b] = torch.where(row, acc_cnt[1:].to(f64), 0.0)
        ctx.save_for_backward(x, labels, p_label)
        ctx.need_rows = need_rows
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
        x, labels, p_label = ctx.saved_tensors
        b_size, c_size, s_size = x.shape
        dev = x.device
        width, work = _chunking(x, ctx.block)
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        # A (b, c) takes part only if some incoming gradient is nonzero; others get exact zeros.
        dense = ((g_p != 0) | (g_sp != 0)).cpu()
        sparse = ((g_pl != 0) | (g_xl != 0)).cpu()
        dense_rows = dense.tolist()
        a_col = g_p.to(work)  # coefficient of p (1 - p)
        ab_col = (g_p + g_sp).to(work)
        neg_a_col = -a_col
        convert = x.dtype != work
        xbuf = torch.empty(c_size * width, dtype=work, device=dev) if convert else None
        pbuf = torch.empty(c_size * width, dtype=work, device=dev)
        for b in range(b_size):
            runs = _runs(dense_rows[b])
            for c0, c1 in _runs([not f for f in dense_rows[b]]):
                grad[b, c0:c1].zero_()
            has_sparse = bool(sparse[b].any())
            if not runs and not has_sparse:
                continue
            if has_sparse:
                g_lab = torch.zeros(c_size + 1, 2, dtype=work, device=dev)
                g_lab[1:, 0] = g_pl[b].to(work)
                g_lab[1:, 1] = g_xl[b].to(work)
            for s0 in range(0, s_size, width):
                n = min(width, s_size - s0)
                x_chunk = x[b, :, s0 : s0 + n]
                g_chunk = grad[b, :, s0 : s0 + n]
                for c0, c1 in runs:
                    k = c1 - c0
                    src = x_chunk[c0:c1]
                    if xbuf is not None:
                        src = xbuf[: k * n].view(k, n).copy_(src)
                    p = torch.sigmoid(src, out=pbuf[: k * n].view(k, n))
                    # grad = ((g_p + g_sp) - g_p * p) * p, built in place in the gradient itself
                    # (fp32/fp64 logits) or in the scratch that held the converted logits.
                    t = xbuf[: k * n].view(k, n) if xbuf is not None else g_chunk[c0:c1]
                    torch.addcmul(ab_col[b, c0:c1, None], p, neg_a_col[b, c0:c1, None], out=t)
                    t.mul_(p)
                    if xbuf is not None:
                        g_chunk[c0:c1].copy_(t)
                if has_sparse:
                    lab64 = labels[b, s0 : s0 + n].long()
                    chan = (lab64 - 1).clamp_(min=0)
                    pg = p_label[b, s0 : s0 + n]
                    coef = g_lab.index_select(0, lab64)  # (n, 2); zero rows for background
                    corr = torch.addcmul(coef[:, 1], coef[:, 0], pg * (1 - pg))
                    g_chunk.scatter_add_(0, chan.unsqueeze(0), corr.to(grad.dtype).unsqueeze(0))
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
