r"""A fixed number of ISTA steps with the soft threshold, as one autograd node.

.. math:: v_k = u_k M + c, \qquad u_{k+1} = T_\theta(v_k) = v_k - \operatorname{clamp}(v_k, -\theta, \theta),
          \qquad k = 0, \dots, n-1

with the gradient step written as an affine map of the codes (:meth:`DenseOperator.affine_step
<sparsecode.dictionaries.dense.DenseOperator.affine_step>`: :math:`M = I - G/L`, :math:`c = b/L`) and
:math:`\theta = \lambda/L`. The backward pass runs the steps in reverse with :math:`\bar v_k = \bar u_{k+1} \odot
\mathbb 1[u_{k+1} \ne 0]`:

.. math:: \bar u_k = \bar v_k M^\top, \qquad \bar M = \textstyle\sum_k u_k^\top \bar v_k, \qquad
          \bar c = \sum_k \bar v_k, \qquad \bar\theta = -\sum_k \bar v_k \odot \operatorname{sign}(u_{k+1})

— the same derivatives as autograd through the steps one by one, with :math:`\bar M` accumulated in one buffer by
multiply-adds (autograd forms a product per step and sums them), and no per-step threshold nodes.

:func:`unrolled_scaled_soft_ista` is the same iteration for :math:`M = I - TRT`, :math:`T = \operatorname{diag}(t)`
(a raw Gram matrix :math:`R` with the column scale over :math:`\sqrt L`, :meth:`DenseOperator.scaled_step
<sparsecode.dictionaries.dense.DenseOperator.scaled_step>`), applied as :math:`u + c - ((u \odot t) R) \odot t` so
that :math:`M` is neither formed nor kept for the backward pass (a Gram-sized buffer fewer; the VARS mixers'
dictionaries), and with :math:`c = b/L` formed inside (the backward keeps :math:`b`, often :math:`u_0` itself). Its backward accumulates :math:`A = \sum_k (u_k \odot t)^\top (\bar v_k \odot t)`, which gives
:math:`\bar R = -A` and :math:`\bar t_i = -\big(\sum_j (A \odot R)_{ij} + \sum_j (A \odot R)_{ji}\big)/t_i`
(:math:`-A` is accumulated directly).

:func:`unrolled_smooth_ista` is the M-form iteration with the smoothed soft threshold of the released VARS code,
:math:`u_{k+1} = \operatorname{sign}(v_k)\,\mathrm{GELU}(|v_k| - \theta)` (:class:`~sparsecode.LearnedISTA` in the
``original`` configuration); it keeps :math:`v_k` and :math:`u_k` for the backward pass, where the threshold's
derivative is :math:`\mathrm{GELU}'(|v_k| - \theta)`.

When the backward pass is itself differentiated (``create_graph=True``), the nodes differentiate a replay of their
steps instead (:mod:`sparsecode._replay`), so higher-order derivatives are those of the loop.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .._replay import replay_backward
from ..thresholds import _sum_to_shape

__all__ = ["unrolled_soft_ista", "unrolled_scaled_soft_ista", "unrolled_smooth_ista"]


def _affine(u: torch.Tensor, m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``u M + c`` as one multiply-add (``addmm`` for one matrix, ``baddbmm`` for a batch)."""
    return torch.addmm(c, u, m) if m.ndim == 2 else torch.baddbmm(c, u, m)


def _bounds(t: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-t, t)`` with the last dimension materialised (``t`` broadcast against codes of ``shape``): a clamp whose
    bounds broadcast along the last dimension takes a slow path (about 2.5 times the time)."""
    t = t.reshape((1,) * (len(shape) - t.ndim) + tuple(t.shape))
    upper = t.expand(tuple(t.shape[:-1]) + (shape[-1],)).contiguous()
    return upper.neg(), upper


def _active(code: torch.Tensor) -> torch.Tensor:
    """``1[code != 0]`` as a float tensor, written directly (a bool mask and its conversion take four times as long);
    the derivative of the soft threshold at its output ``code``."""
    return torch.ne(code, 0, out=torch.empty_like(code))


def _forward_steps(u0: torch.Tensor, thr: torch.Tensor, n_steps: int, shape: torch.Size,
                   affine: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    r"""The codes :math:`u_0, \dots, u_n` of :math:`u_{k+1} = T_\theta(\mathrm{affine}(u_k))`, the threshold applied in
    the codes' own ``shape`` (``thr`` broadcasts against it) and in place on the fresh affine output."""
    lower, upper = _bounds(thr, shape)
    codes = [u0]
    for _ in range(n_steps):
        v = affine(codes[-1])
        v_shaped = v.reshape(shape)
        codes.append(v_shaped.sub_(torch.clamp(v_shaped, lower, upper)).reshape(v.shape))
    return codes


def _reverse_steps(grad: torch.Tensor, codes: list[torch.Tensor], shape: torch.Size, thr: torch.Tensor,
                   needs: tuple[bool, bool, bool],
                   step_back: Callable[[int, torch.Tensor, bool], torch.Tensor | None]):
    r"""The backward pass shared by both nodes: the steps in reverse, each with the threshold's mask
    :math:`\bar v_k = \bar u_{k+1} \odot \mathbb 1[u_{k+1} \ne 0]` and the sums :math:`\bar c = \sum_k \bar v_k`,
    :math:`\bar\theta = -\sum_k \bar v_k \odot \operatorname{sign}(u_{k+1})`. ``step_back(k, v̄_k, wanted)``
    accumulates the node's matrix derivative and returns :math:`\bar u_k` when ``wanted``.

    Args:
        needs: whether the derivatives in ``u0``, ``c`` and ``thr`` are wanted.

    Returns:
        ``(ū_0, c̄, θ̄)``, ``None`` where not wanted.
    """
    need_u0, need_c, need_thr = needs
    grad_c = grad_thr = None
    g = grad
    for k in reversed(range(len(codes) - 1)):
        out = codes[k + 1]
        g_v = _active(out).mul_(g)
        if need_thr:
            step_thr = -(g_v * torch.sign(out))
            grad_thr = step_thr if grad_thr is None else grad_thr + step_thr
        g = step_back(k, g_v, k > 0 or need_u0)
        if need_c:  # after g_v's last use: the first g_v becomes the running sum
            grad_c = g_v if grad_c is None else grad_c.add_(g_v)
    if grad_thr is not None:
        grad_thr = _sum_to_shape(grad_thr.reshape(shape), thr.shape)
    return (g if need_u0 else None), grad_c, grad_thr


def _add_outer(total: torch.Tensor | None, u: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar M \mathrel{+}= u_k^\top \bar v_k` in one buffer (the first product allocates it; one matrix or a
    batch)."""
    u_t = u.transpose(-1, -2)
    if total is None:
        return u_t @ g_v
    return total.baddbmm_(u_t, g_v) if total.ndim == 3 else total.addmm_(u_t, g_v)


class _UnrolledSoftISTA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, thr: torch.Tensor, n_steps: int,
                shape: torch.Size) -> torch.Tensor:
        codes = _forward_steps(u0, thr, n_steps, shape, lambda u: _affine(u, m, c))
        ctx.save_for_backward(m, c, thr, *codes)
        ctx.n_steps, ctx.shape = n_steps, shape
        return codes[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        m, c, thr, *codes = ctx.saved_tensors
        n, shape = ctx.n_steps, ctx.shape
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the replayed steps
            return replay_backward(_affine_steps, (codes[0], m, c, thr), ctx.needs_input_grad[:4], grad, n,
                                  shape) + (None, None)
        need_u0, need_m, need_c, need_thr = ctx.needs_input_grad[:4]
        m_t = m.transpose(-1, -2)
        grad_m = None

        def step_back(k: int, g_v: torch.Tensor, wanted: bool) -> torch.Tensor | None:
            nonlocal grad_m
            if need_m:
                grad_m = _add_outer(grad_m, codes[k], g_v)
            return g_v @ m_t if wanted else None

        grad_u0, grad_c, grad_thr = _reverse_steps(grad, codes, shape, thr, (need_u0, need_c, need_thr), step_back)
        return grad_u0, grad_m, grad_c, grad_thr, None, None


def _affine_steps(u, m, c, thr, n_steps, shape):
    """The steps of :class:`_UnrolledSoftISTA` as plain differentiable operations."""
    for _ in range(n_steps):
        v = _affine(u, m, c).reshape(shape)
        u = (v - torch.clamp(v, -thr, thr)).reshape(c.shape)
    return u


def unrolled_soft_ista(u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, thr: torch.Tensor,
                       n_steps: int) -> torch.Tensor:
    r"""``n_steps`` steps :math:`u \leftarrow T_\theta(u M + c)` from ``u0`` (see the module docstring).

    Args:
        u0: the start, ``(B, m)`` for a single ``M`` ``(m, m)``, else any shape with ``K·S·m`` elements for ``M``
            ``(K, m, m)`` and ``c`` ``(K, S, m)``.
        m: the step matrix.
        c: the step offset, ``(B, m)`` or ``(K, S, m)``.
        thr: the threshold :math:`\theta`, broadcastable against ``u0`` in its own shape.
        n_steps: the number of steps (>= 1).

    Returns:
        the codes after the last step, shaped like ``u0``.
    """
    shape = u0.shape
    out = _UnrolledSoftISTA.apply(u0.reshape(c.shape), m, c, thr, n_steps, shape)
    return out.reshape(shape)


class _UnrolledSmoothISTA(torch.autograd.Function):
    r"""The steps :math:`u \leftarrow \operatorname{sign}(v)\,\mathrm{GELU}(|v| - \theta)`, :math:`v = u M + c`
    (the smoothed soft threshold of the released VARS code, :class:`~sparsecode.thresholds.SmoothSoftThreshold`).
    Backward per step, with :math:`s = \operatorname{sign}(v)` and :math:`z = |v| - \theta`:
    :math:`\bar z = \mathrm{GELU}'(z)\,(\bar u \odot s)`, :math:`\bar v = \bar z \odot s`,
    :math:`\bar\theta = -\sum \bar z` — what autograd computes through the threshold's operations — and the
    affine step's derivatives as in :class:`_UnrolledSoftISTA`."""

    @staticmethod
    def forward(ctx, u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, thr: torch.Tensor, n_steps: int,
                shape: torch.Size) -> torch.Tensor:
        codes, pre = [u0], []
        neg_thr = thr.neg()
        for _ in range(n_steps):
            v = _affine(codes[-1], m, c)
            v_shaped = v.reshape(shape)
            # sign(v) · GELU(|v| + (-θ)), the threshold's own operations in its order (the same rounding)
            u = torch.sign(v_shaped).mul_(F.gelu(v_shaped.abs().add_(neg_thr)))
            pre.append(v)
            codes.append(u.reshape(v.shape))
        ctx.save_for_backward(m, c, thr, *codes[:-1], *pre)
        ctx.n_steps, ctx.shape = n_steps, shape
        return codes[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        m, c, thr, *saved = ctx.saved_tensors
        n, shape = ctx.n_steps, ctx.shape
        codes, pre = saved[:n], saved[n:]
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the replayed steps
            return replay_backward(_smooth_steps, (codes[0], m, c, thr), ctx.needs_input_grad[:4], grad, n,
                                   shape) + (None, None)
        need_u0, need_m, need_c, need_thr = ctx.needs_input_grad[:4]
        m_t = m.transpose(-1, -2)
        neg_thr = thr.neg()
        grad_m = grad_c = grad_thr = None
        g = grad
        for k in reversed(range(n)):
            v = pre[k].reshape(shape)
            sign = torch.sign(v)
            z = v.abs().add_(neg_thr)
            grad_z = torch.ops.aten.gelu_backward(g.reshape(shape) * sign, z)
            if need_thr:
                grad_thr = grad_z.neg() if grad_thr is None else grad_thr.sub_(grad_z)
            g_v = grad_z.mul_(sign).reshape(pre[k].shape)
            if need_m:
                grad_m = _add_outer(grad_m, codes[k], g_v)
            if k > 0 or need_u0:
                g = g_v @ m_t
            if need_c:  # after g_v's last use: the first g_v becomes the running sum
                grad_c = g_v if grad_c is None else grad_c.add_(g_v)
        if grad_thr is not None:
            grad_thr = _sum_to_shape(grad_thr, thr.shape)
        return (g if need_u0 else None), grad_m, grad_c, grad_thr, None, None


def _smooth_steps(u, m, c, thr, n_steps, shape):
    """The steps of :class:`_UnrolledSmoothISTA` as plain differentiable operations."""
    for _ in range(n_steps):
        v = _affine(u, m, c).reshape(shape)
        u = (torch.sign(v).detach() * F.gelu(v.abs() + thr.neg())).reshape(c.shape)
    return u


def unrolled_smooth_ista(u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, thr: torch.Tensor,
                         n_steps: int) -> torch.Tensor:
    r"""``n_steps`` steps :math:`u \leftarrow \operatorname{sign}(v)\,\mathrm{GELU}(|v| - \theta)` with
    :math:`v = u M + c` from ``u0`` (the update of the released VARS-D code with :class:`~sparsecode.LearnedISTA`),
    as one autograd node; the arguments are those of :func:`unrolled_soft_ista`."""
    shape = u0.shape
    out = _UnrolledSmoothISTA.apply(u0.reshape(c.shape), m, c, thr, n_steps, shape)
    return out.reshape(shape)


#: bytes of the product buffer of :func:`_product_row_col_sums` (a few matrices, so that it stays in cache; not so
#: few that the loop's dispatches cost more than the memory it spares)
_CHUNK_BYTES = 1 << 20


def _product_row_col_sums(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_j (A \odot R)_{ij} + \sum_j (A \odot R)_{ji}` for matrices ``(K, m, m)``, ``(K, m)``: the product
    is formed a few matrices at a time in one reused buffer, not as a full-size temporary."""
    k, m = a.shape[0], a.shape[-1]
    per_chunk = max(1, _CHUNK_BYTES // max(1, m * m * a.element_size()))
    out = a.new_empty(a.shape[:-1])
    buffer = a.new_empty((min(per_chunk, k), m, m))
    for start in range(0, k, per_chunk):
        stop = min(start + per_chunk, k)
        e = torch.mul(a[start:stop], r[start:stop], out=buffer[:stop - start])
        torch.add(e.sum(dim=-1), e.sum(dim=-2), out=out[start:stop])
    return out


class _UnrolledScaledSoftISTA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0: torch.Tensor, r: torch.Tensor, t: torch.Tensor, b: torch.Tensor, step: torch.Tensor,
                thr: torch.Tensor, n_steps: int, shape: torch.Size) -> torch.Tensor:
        tv = t.unsqueeze(-2)
        c = b * step  # a temporary: the backward pass needs b (often the start u0 itself), not c
        # v = c - ((u ⊙ t) R) ⊙ t + u, in two passes after the product
        codes = _forward_steps(u0, thr, n_steps, shape,
                               lambda u: torch.addcmul(c, torch.bmm(u * tv, r), tv, value=-1).add_(u))
        ctx.save_for_backward(r, t, b, step, thr, *codes)
        ctx.n_steps, ctx.shape = n_steps, shape
        return codes[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        r, t, b, step, thr, *codes = ctx.saved_tensors
        n, shape = ctx.n_steps, ctx.shape
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the replayed steps
            return replay_backward(_scaled_steps, (codes[0], r, t, b, step, thr), ctx.needs_input_grad[:6], grad, n,
                                   shape) + (None, None)
        need_u0, need_r, need_t, need_b, need_step, need_thr = ctx.needs_input_grad[:6]
        if need_step:
            raise RuntimeError("unrolled_scaled_soft_ista: step must not require a gradient")
        tv = t.unsqueeze(-2)
        neg_tv = tv.neg()
        r_t = r.transpose(-1, -2)
        # a = Σ_k (u_k ⊙ t)ᵀ (-v̄_k ⊙ t) is ∂R, and the derivative in t is read off a ⊙ R at the end
        a = None
        # -v̄_k ⊙ t and u_k ⊙ t go into two buffers reused by every step, and ū_k is formed in place on its product
        h = torch.empty_like(codes[0])
        w = torch.empty_like(codes[0]) if need_r or need_t else None

        def step_back(k: int, g_v: torch.Tensor, wanted: bool) -> torch.Tensor | None:
            nonlocal a
            torch.mul(g_v, neg_tv, out=h)
            if w is not None:
                w_t = torch.mul(codes[k], tv, out=w).transpose(-1, -2)
                if a is None:
                    a = torch.bmm(w_t, h)
                else:
                    a.baddbmm_(w_t, h)
            if not wanted:
                return None
            product = torch.bmm(h, r_t)
            return torch.addcmul(g_v, product, tv, out=product)

        grad_u0, grad_c, grad_thr = _reverse_steps(grad, codes, shape, thr, (need_u0, need_b, need_thr), step_back)
        grad_t = None
        if need_t:
            # ∂t_i = (Σ_j (a ⊙ R)_ij + Σ_j (a ⊙ R)_ji) / t_i  (a carries the factor t_i t_j of M = I - T R T)
            grad_t = _product_row_col_sums(a, r).div_(t)
        grad_b = grad_c.mul_(step) if need_b else None  # c = step·b (grad_c is this pass's own buffer)
        return grad_u0, a if need_r else None, grad_t, grad_b, None, grad_thr, None, None


def _scaled_steps(u, r, t, b, step, thr, n_steps, shape):
    """The steps of :class:`_UnrolledScaledSoftISTA` as plain differentiable operations."""
    tv = t.unsqueeze(-2)
    c = b * step
    for _ in range(n_steps):
        v = (u + c - torch.bmm(u * tv, r) * tv).reshape(shape)
        u = (v - torch.clamp(v, -thr, thr)).reshape(c.shape)
    return u


def unrolled_scaled_soft_ista(u0: torch.Tensor, r: torch.Tensor, t: torch.Tensor, b: torch.Tensor, step: torch.Tensor,
                              thr: torch.Tensor, n_steps: int) -> torch.Tensor:
    r"""``n_steps`` steps :math:`u \leftarrow T_\theta(u M + c)` with :math:`M = I - \operatorname{diag}(t)\, R\,
    \operatorname{diag}(t)` applied as :math:`u + c - ((u \odot t) R) \odot t`, without forming :math:`M`, and
    :math:`c = \mathrm{step}\cdot b` formed for the forward pass only (the backward pass keeps :math:`b`, which is
    often the start :math:`u_0` itself, rather than :math:`c`).

    Args:
        u0: the start, any shape with ``K·S·m`` elements.
        r: the matrices :math:`R`, ``(K, m, m)`` (a raw Gram matrix).
        t: the scales, ``(K, m)`` (column scale over :math:`\sqrt L`).
        b: :math:`P^\top x`, ``(K, S, m)``.
        step: :math:`1/L`, a constant (no gradient) broadcastable against ``b``, e.g. ``(K, 1, 1)``.
        thr: the threshold :math:`\theta`, broadcastable against ``u0`` in its own shape.
        n_steps: the number of steps (>= 1).
    """
    shape = u0.shape
    out = _UnrolledScaledSoftISTA.apply(u0.reshape(b.shape), r, t, b, step, thr, n_steps, shape)
    return out.reshape(shape)
