r"""A fixed number of ISTA steps with the soft threshold, as one autograd node.

.. math:: v_k = u_k M + c, \qquad u_{k+1} = T_t(v_k) = v_k - \operatorname{clamp}(v_k, -t, t), \qquad k = 0, \dots, n-1

with the gradient step written as an affine map of the codes (:meth:`DenseOperator.affine_step
<sparsecode.dictionaries.dense.DenseOperator.affine_step>`: :math:`M = I - G/L`, :math:`c = b/L`) and
:math:`t = \lambda/L`. The backward pass runs the steps in reverse with :math:`\bar v_k = \bar u_{k+1} \odot
\mathbb 1[u_{k+1} \ne 0]`:

.. math:: \bar u_k = \bar v_k M^\top, \qquad \bar M = \textstyle\sum_k u_k^\top \bar v_k, \qquad
          \bar c = \sum_k \bar v_k, \qquad \bar t = -\sum_k \bar v_k \odot \operatorname{sign}(u_{k+1})

— the same derivatives as autograd through the steps one by one, with :math:`\bar M` accumulated in one buffer by
multiply-adds (autograd forms a product per step and sums them), and no per-step threshold nodes.

:func:`unrolled_scaled_soft_ista` is the same iteration for :math:`M = I - TRT`, :math:`T = \operatorname{diag}(t)`
(a raw Gram matrix :math:`R` with the column scale over :math:`\sqrt L`, :meth:`DenseOperator.scaled_step
<sparsecode.dictionaries.dense.DenseOperator.scaled_step>`), applied as :math:`u + c - ((u \odot t) R) \odot t` so
that :math:`M` is neither formed nor kept for the backward pass (a Gram-sized buffer fewer; the VARS mixers'
dictionaries). Its backward accumulates :math:`A = \sum_k (u_k \odot t)^\top (\bar v_k \odot t)`, which gives
:math:`\bar R = -A` and :math:`\bar t_i = -\big(\sum_j (A \odot R)_{ij} + \sum_j (A \odot R)_{ji}\big)/t_i`.

When the backward pass is itself differentiated (``create_graph=True``), both nodes differentiate a replay of their
steps instead (:mod:`sparsecode._replay`), so higher-order derivatives are those of the loop.
"""
from __future__ import annotations

import torch

from .._replay import replay_backward
from ..thresholds import _sum_to_shape

__all__ = ["unrolled_soft_ista"]


def _times(u: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return u @ m if m.ndim == 2 else torch.bmm(u, m)


def _outer(u: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return u.transpose(-1, -2) @ g


class _UnrolledSoftISTA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, t: torch.Tensor, n_steps: int,
                shape: torch.Size) -> torch.Tensor:
        u, inputs, outputs = u0, [], []
        for _ in range(n_steps):
            v = torch.addmm(c, u, m) if m.ndim == 2 else torch.baddbmm(c, u, m)
            # the threshold in the codes' own shape (t broadcasts against it), the products in the flat one
            v_shaped = v.reshape(shape)
            u_new = (v_shaped - torch.clamp(v_shaped, -t, t)).reshape(v.shape)
            inputs.append(u)
            outputs.append(u_new)
            u = u_new
        ctx.save_for_backward(m, c, t, *inputs, *outputs)
        ctx.n_steps, ctx.shape = n_steps, shape
        return u

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        m, c, t, *saved = ctx.saved_tensors
        n, shape = ctx.n_steps, ctx.shape
        inputs, outputs = saved[:n], saved[n:]
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the replayed steps
            return replay_backward(_affine_steps, (inputs[0], m, c, t), ctx.needs_input_grad[:4], grad, n,
                                  shape) + (
                None, None)
        need_u0, need_m, need_c, need_t = ctx.needs_input_grad[:4]
        m_t = m.transpose(-1, -2)
        grad_m = grad_c = grad_t = None
        g = grad
        for k in reversed(range(n)):
            out = outputs[k]
            g_v = g * (out != 0).to(g.dtype)
            if need_m:
                if grad_m is None:
                    grad_m = _outer(inputs[k], g_v)
                elif m.ndim == 3:
                    grad_m.baddbmm_(inputs[k].transpose(-1, -2), g_v)
                else:
                    grad_m.addmm_(inputs[k].transpose(-1, -2), g_v)
            if need_c:
                grad_c = g_v if grad_c is None else grad_c + g_v
            if need_t:
                step_t = -(g_v * torch.sign(out))
                grad_t = step_t if grad_t is None else grad_t + step_t
            if k > 0 or need_u0:
                g = _times(g_v, m_t)
        if grad_t is not None:
            grad_t = _sum_to_shape(grad_t.reshape(shape), t.shape)
        return g if need_u0 else None, grad_m, grad_c, grad_t, None, None


def _affine_steps(u, m, c, t, n_steps, shape):
    """The steps of :class:`_UnrolledSoftISTA` as plain differentiable operations."""
    for _ in range(n_steps):
        v = (torch.addmm(c, u, m) if m.ndim == 2 else torch.baddbmm(c, u, m)).reshape(shape)
        u = (v - torch.clamp(v, -t, t)).reshape(c.shape)
    return u


def unrolled_soft_ista(u0: torch.Tensor, m: torch.Tensor, c: torch.Tensor, t: torch.Tensor,
                       n_steps: int) -> torch.Tensor:
    r"""``n_steps`` steps :math:`u \leftarrow T_t(u M + c)` from ``u0`` (see the module docstring).

    Args:
        u0: the start, ``(B, m)`` for a single ``M`` ``(m, m)``, else any shape with ``K·S·m`` elements for ``M``
            ``(K, m, m)`` and ``c`` ``(K, S, m)``.
        m: the step matrix.
        c: the step offset, ``(B, m)`` or ``(K, S, m)``.
        t: the threshold, broadcastable against ``u0`` in its own shape.
        n_steps: the number of steps (>= 1).

    Returns:
        the codes after the last step, shaped like ``u0``.
    """
    shape = u0.shape
    out = _UnrolledSoftISTA.apply(u0.reshape(c.shape), m, c, t, n_steps, shape)
    return out.reshape(shape)


#: bytes of the product buffer of :func:`_product_row_col_sums` (a few matrices, so that it stays in cache)
_CHUNK_BYTES = 1 << 18


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
    def forward(ctx, u0: torch.Tensor, r: torch.Tensor, t: torch.Tensor, c: torch.Tensor, thr: torch.Tensor,
                n_steps: int, shape: torch.Size) -> torch.Tensor:
        tv = t.unsqueeze(-2)
        u, codes = u0, [u0]
        for _ in range(n_steps):
            z = torch.bmm(u * tv, r).mul_(tv)
            v = (u + c).sub_(z)
            v_shaped = v.reshape(shape)
            u = v_shaped.sub_(torch.clamp(v_shaped, -thr, thr)).reshape(v.shape)
            codes.append(u)
        ctx.save_for_backward(r, t, c, thr, *codes)
        ctx.n_steps, ctx.shape = n_steps, shape
        return u

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        r, t, c, thr, *codes = ctx.saved_tensors
        n, shape = ctx.n_steps, ctx.shape
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the replayed steps
            return replay_backward(_scaled_steps, (codes[0], r, t, c, thr), ctx.needs_input_grad[:5], grad, n,
                                  shape) + (
                None, None)
        need_u0, need_r, need_t, need_c, need_thr = ctx.needs_input_grad[:5]
        tv = t.unsqueeze(-2)
        r_t = r.transpose(-1, -2)
        # a = Σ_k (u_k ⊙ t)ᵀ (v̄_k ⊙ t): ∂R = -a, and the derivative in t is read off a ⊙ R at the end
        a = grad_c = grad_thr = None
        g = grad
        for k in reversed(range(n)):
            out = codes[k + 1]
            g_v = g * (out != 0).to(g.dtype)
            h = g_v * tv
            if need_r or need_t:
                w_t = (codes[k] * tv).transpose(-1, -2)
                if a is None:
                    a = torch.bmm(w_t, h)
                else:
                    a.baddbmm_(w_t, h)
            if need_c:
                grad_c = g_v if grad_c is None else grad_c + g_v
            if need_thr:
                step_thr = -(g_v * torch.sign(out))
                grad_thr = step_thr if grad_thr is None else grad_thr + step_thr
            if k > 0 or need_u0:
                g = g_v - torch.bmm(h, r_t) * tv
        grad_t = grad_r = None
        if need_t:
            # ∂t_i = -(Σ_j (a ⊙ R)_ij + Σ_j (a ⊙ R)_ji) / t_i  (a carries the factor t_i t_j of M = I - T R T)
            grad_t = -_product_row_col_sums(a, r) / t
        if need_r:
            grad_r = a.neg_()
        if grad_thr is not None:
            grad_thr = _sum_to_shape(grad_thr.reshape(shape), thr.shape)
        return g if need_u0 else None, grad_r, grad_t, grad_c, grad_thr, None, None


def _scaled_steps(u, r, t, c, thr, n_steps, shape):
    """The steps of :class:`_UnrolledScaledSoftISTA` as plain differentiable operations."""
    tv = t.unsqueeze(-2)
    for _ in range(n_steps):
        v = (u + c - torch.bmm(u * tv, r) * tv).reshape(shape)
        u = (v - torch.clamp(v, -thr, thr)).reshape(c.shape)
    return u


def unrolled_scaled_soft_ista(u0: torch.Tensor, r: torch.Tensor, t: torch.Tensor, c: torch.Tensor, thr: torch.Tensor,
                              n_steps: int) -> torch.Tensor:
    r"""``n_steps`` steps :math:`u \leftarrow T_\theta(u M + c)` with :math:`M = I - \operatorname{diag}(t)\, R\,
    \operatorname{diag}(t)` applied as :math:`u + c - ((u \odot t) R) \odot t`, without forming :math:`M`.

    Args:
        u0: the start, any shape with ``K·S·m`` elements.
        r: the matrices :math:`R`, ``(K, m, m)`` (a raw Gram matrix).
        t: the scales, ``(K, m)`` (column scale over :math:`\sqrt L`).
        c: the step offset, ``(K, S, m)``.
        thr: the threshold :math:`\theta`, broadcastable against ``u0`` in its own shape.
        n_steps: the number of steps (>= 1).
    """
    shape = u0.shape
    out = _UnrolledScaledSoftISTA.apply(u0.reshape(c.shape), r, t, c, thr, n_steps, shape)
    return out.reshape(shape)
