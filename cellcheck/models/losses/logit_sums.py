"""Sufficient statistics of per-channel sigmoid Dice + BCE, straight from integer labels.

Every term of the partial-annotation loss is a function of a few (B, C) sums per sample b and
channel c, with p = sigmoid(x) and y = [label == c + 1]:

    sum_p[b, c]        = sum_v p               (Dice denominator, prediction part)
    sum_p2[b, c]       = sum_v p^2             (the same with squared_pred; zeros otherwise)
    sum_softplus[b, c] = sum_v softplus(x)     (BCE-with-logits = softplus(x) - x * y)
    sum_p_label[b, c]  = sum_{v: y=1} p        (Dice intersection)
    sum_x_label[b, c]  = sum_{v: y=1} x        (BCE target part)
    count[b, c]        = #{v: y = 1}           (Dice denominator, target part; no gradient)

``logit_stats`` computes them in a handful of whole-tensor ops and never builds a one-hot or any
other (B, C, *spatial) target: the dense sums reduce sigmoid / softplus of the logits over the
voxels; the label terms gather the logit at channel ``label - 1`` ((B, S), 1/C of the logits) and
add it into bins per (sample, label value) with one ``scatter_add`` per term.  Voxel v goes to
bin ``(label, v % LANES)``: LANES partial sums per label value spread a GPU's atomic adds over
LANES * (C + 1) addresses instead of C + 1, and keep each fp32 partial sum short.  Static shapes,
no host sync, no data-dependent control flow: it compiles without graph breaks and runs under
``FakeTensorMode``.

The backward is written by hand (why one autograd Function: memory).  With g_* the incoming
gradients of the sums,

    dL/dx = p (a + p (b + p c)),  a = g_p + g_sp,  b = 2 g_p2 - g_p,  c = -2 g_p2   (every voxel)
          + [y = 1] (g_pl p (1 - p) + g_xl)                                        (label channel)

Sigmoid is recomputed from the saved logits (which the caller keeps alive anyway) instead of
being stored, so forward + backward never hold more than two logits-sized buffers at once: p and
the gradient being built (p and p^2 in a squared_pred forward).  Element-wise work runs in the
logits' dtype (bf16 logits: bf16 buffers, so the bound holds in bytes of the logits); every sum
accumulates in fp32 (fp64 for fp64 logits), and the label terms are computed in that dtype too.
Compiled, the element-wise work fuses into the reductions and no logits-sized buffer is left but
the gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["LANES", "LogitStats", "accumulation_dtype", "known_logit_stats", "logit_stats"]

#: Partial sums per (sample, label value) in the label-term scatter (see the module docstring).
LANES = 128
#: Voxels per product in the softplus sums (see ``_softplus_sums``): q >= 0.5, so 64 of them >= 2**-64.
GROUP = 64


class LogitStats(NamedTuple):
    """Six (B, C) sums per sample and channel in the accumulation dtype; see the module docstring."""

    sum_p: torch.Tensor
    sum_p2: torch.Tensor
    sum_softplus: torch.Tensor
    sum_p_label: torch.Tensor
    sum_x_label: torch.Tensor
    count: torch.Tensor


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 for fp64 logits, fp32 for every other float dtype; why: sums of ~1e6 voxels need fp32 at least."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _label_terms(x: torch.Tensor, labels: torch.Tensor, acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, S) logits, (B, S) int64 labels -> channel index (B, 1, S) int64, x and p there (B, S) in ``acc``.

    Background voxels (label 0) read channel 0; every use of these values masks them out.
    """
    chan = (labels - 1).clamp_(min=0).unsqueeze(1)
    xl = x.gather(1, chan).squeeze(1).to(acc)
    return chan, xl, torch.sigmoid(xl)


def _softplus_sums(x: torch.Tensor, scratch: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """(B, C, S) logits -> (B, C) sums of softplus(x) in ``acc``; ``scratch`` (x's shape and dtype) is overwritten.

    softplus(x) = relu(x) - log(q) with q = sigmoid(|x|) in [0.5, 1].  The logs are taken of
    products of GROUP q's (each product >= 2**-64, accumulated in ``acc``): one log per GROUP
    voxels instead of one exp and one log per voxel, which is most of softplus's cost on a CPU.
    """
    q = torch.sigmoid(torch.abs(x, out=scratch), out=scratch)
    s0 = q.shape[2] - q.shape[2] % GROUP
    log_q = q[..., :s0].unflatten(2, (-1, GROUP)).prod(3, dtype=acc).log().sum(2)
    log_q = log_q + q[..., s0:].to(acc).log().sum(2)
    return torch.clamp(x, min=0, out=scratch).sum(2, dtype=acc) - log_q


def _label_sums(x: torch.Tensor, labels: torch.Tensor, acc: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums of p and x at the label channel and label counts, each (B, C) in ``acc``: one scatter_add per term.

    Voxel v = i * lanes + j adds into bin (label value, lane j): viewing (B, S) as (B, S / lanes,
    lanes) and scattering along dim 1 puts every lane in its own column, no index arithmetic.
    """
    b_size, c_size, s_size = x.shape
    xl, pl = _label_terms(x, labels, acc)[1:]
    lanes = math.gcd(s_size, LANES)  # static; all the patches we train on are multiples of 128 voxels
    index = labels.reshape(b_size, -1, lanes)
    out = []
    for values in (pl, xl, torch.ones((), dtype=acc, device=x.device).expand(b_size, s_size)):
        sums = torch.zeros(b_size, c_size + 1, lanes, dtype=acc, device=x.device)
        sums.scatter_add_(1, index, values.reshape(b_size, -1, lanes))
        out.append(sums.sum(2)[:, 1:])  # bin 0 = background
    return out[0], out[1], out[2]


class _LogitStatsFunction(torch.autograd.Function):
    """Forward: the six sums in whole-tensor ops; backward: the closed-form gradient of the logits."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, labels: torch.Tensor,
                squared: bool) -> tuple[torch.Tensor, ...]:
        """(B, C, S) float logits, (B, S) int labels in 0..C -> six (B, C) sums in the accumulation dtype."""
        acc = accumulation_dtype(x.dtype)
        p = torch.sigmoid(x)  # the forward's one logits-sized buffer, reused below
        sum_p = p.sum(2, dtype=acc)
        sum_p2 = p.square_().sum(2, dtype=acc) if squared else torch.zeros_like(sum_p)
        sum_sp = _softplus_sums(x, p, acc)
        del p
        sum_pl, sum_xl, count = _label_sums(x, labels.long(), acc)
        ctx.save_for_backward(x, labels)
        ctx.squared = squared
        ctx.mark_non_differentiable(count)
        return sum_p, sum_p2, sum_sp, sum_pl, sum_xl, count

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g_p: torch.Tensor, g_p2: torch.Tensor,
                 g_sp: torch.Tensor, g_pl: torch.Tensor, g_xl: torch.Tensor,
                 _g_count: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        """Six (B, C) gradients -> (B, C, S) gradient of the logits, in their dtype."""
        x, labels = ctx.saved_tensors
        b_size = x.shape[0]
        acc = accumulation_dtype(x.dtype)
        a = (g_p + g_sp).to(acc).unsqueeze(2)
        p = torch.sigmoid(x)
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        if ctx.squared:  # p (a + p (b + p c))
            torch.addcmul((2.0 * g_p2 - g_p).to(acc).unsqueeze(2), p, (-2.0 * g_p2).to(acc).unsqueeze(2), out=grad)
            grad.mul_(p).add_(a)
        else:  # p (a - g_p p)
            torch.addcmul(a, p, (-g_p).to(acc).unsqueeze(2), out=grad)
        grad.mul_(p)
        del p
        # Label channel: g_xl + g_pl p (1 - p), the coefficients looked up per (sample, label value).
        # In place where possible: beside the gradient, only ~20 bytes per voxel (not per logit).
        lab = labels.to(torch.int64, copy=True)  # modified in place below
        zero = torch.zeros(b_size, 1, dtype=acc, device=x.device)
        coef = torch.cat([zero, g_pl.to(acc)], 1).gather(1, lab)
        correction = torch.cat([zero, g_xl.to(acc)], 1).gather(1, lab)
        chan = lab.sub_(1).clamp_(min=0).unsqueeze(1)
        pl = x.gather(1, chan).squeeze(1).to(acc).sigmoid_()
        coef.mul_(pl).mul_(pl.neg_().add_(1))
        del pl
        correction.add_(coef)
        del coef
        grad.scatter_add_(1, chan, correction.unsqueeze(1).to(grad.dtype))
        return grad, None, None


def logit_stats(logits: torch.Tensor, labels: torch.Tensor, squared: bool = False) -> LogitStats:
    """(B, C, S) float logits, (B, S) int labels in 0..C -> LogitStats of (B, C) sums.

    Sums are in fp32 (fp64 for fp64 logits); ``sum_p2`` is zeros unless ``squared``.  Inputs are
    assumed validated (see ``PartialAnnotationLoss``): a label outside 0..C is an index error.
    """
    return LogitStats(*_LogitStatsFunction.apply(logits, labels, squared))


# --- per-class targets with unknown voxels (the CellMap store loader) -----------------------------------------


class _KnownLogitStatsFunction(torch.autograd.Function):
    """The six sums over each class's known voxels, plus the known counts, from packed bit masks.

    One class at a time (a static loop over C): every temporary is (B, S), 1/C of the logits, so
    forward and backward never hold more than the gradient being built and a few class-sized buffers.
    With m = known and y = present bits of class c, p = sigmoid(x[:, c]):

        dL/dx[:, c] = m * (p (1 - p) (g_p + 2 g_p2 p + y g_pl) + g_sp p + y g_xl)
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, present: torch.Tensor,
                known: torch.Tensor, squared: bool) -> tuple[torch.Tensor, ...]:
        """(B, C, S) logits, (B, nbytes, S) uint8 masks -> six (B, C) sums and (B, C) known counts."""
        from .targets import channel_bits

        acc = accumulation_dtype(x.dtype)
        sums: list[list[torch.Tensor]] = [[] for _ in range(7)]
        for c in range(x.shape[1]):
            m = channel_bits(known, c).to(acc)
            y = channel_bits(present, c).to(acc).mul_(m)
            xc = x[:, c].to(acc)
            p = torch.sigmoid(xc)
            sp = torch.nn.functional.softplus(xc)
            dot = lambda a, b: torch.einsum("bs,bs->b", a, b)  # noqa: E731 - a reduction without a product buffer
            mp = dot(m, p)
            values = (mp, dot(m, p * p) if squared else torch.zeros_like(mp), dot(m, sp), dot(y, p), dot(y, xc),
                      y.sum(1), m.sum(1))
            for out, value in zip(sums, values):
                out.append(value)
        ctx.save_for_backward(x, present, known)
        ctx.squared = squared
        stacked = tuple(torch.stack(s, 1) for s in sums)
        ctx.mark_non_differentiable(stacked[5], stacked[6])
        return stacked

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g_p: torch.Tensor, g_p2: torch.Tensor,
                 g_sp: torch.Tensor, g_pl: torch.Tensor, g_xl: torch.Tensor, _g_count: torch.Tensor,
                 _g_known: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        """Six (B, C) gradients -> (B, C, S) gradient of the logits, in their dtype, class by class."""
        from .targets import channel_bits

        x, present, known = ctx.saved_tensors
        acc = accumulation_dtype(x.dtype)
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        for c in range(x.shape[1]):  # in place where it can: beside the gradient, a few (B, S) buffers
            col = slice(c, c + 1)
            y = channel_bits(present, c).to(acc)
            p = torch.sigmoid(x[:, c].to(acc))
            inner = torch.addcmul(g_p[:, col].to(acc), y, g_pl[:, col].to(acc))
            if ctx.squared:
                inner.addcmul_(p, 2.0 * g_p2[:, col].to(acc))
            g = torch.sub(1.0, p).mul_(p).mul_(inner)
            del inner
            g.addcmul_(p, g_sp[:, col].to(acc)).addcmul_(y, g_xl[:, col].to(acc))
            del p, y
            g.mul_(channel_bits(known, c).to(acc))
            grad[:, c] = g
        return grad, None, None, None


def known_logit_stats(logits: torch.Tensor, present: torch.Tensor, known: torch.Tensor,
                      squared: bool = False) -> tuple[LogitStats, torch.Tensor]:
    """(B, C, S) float logits, (B, ceil(C/8), S) uint8 packed present / known -> (LogitStats, (B, C) known counts).

    Every sum runs over the voxels where its class is known; a voxel unknown for class c adds nothing
    to any of c's sums (the present bit there is ignored).
    """
    *sums, n_known = _KnownLogitStatsFunction.apply(logits, present, known, squared)
    return LogitStats(*sums), n_known
