r"""Implicit differentiation of the sparse code through the fixed-point condition of proximal gradient.

The minimiser :math:`u^\star` is a fixed point of the one-step map

.. math:: T(u; x, \lambda, P) = \operatorname{prox}_{\lambda R / L}\big(u - (P^\top P u - P^\top x)/L\big),

so for a loss :math:`\ell(u^\star)` with :math:`g = \partial\ell/\partial u^\star` the implicit function theorem gives

.. math:: \frac{d\ell}{d\theta} = w^\top \frac{\partial T}{\partial\theta}(u^\star),\qquad
          (I - J_u T(u^\star))^\top w = g,

for :math:`\theta \in \{x, \lambda, P\}`. :func:`implicit_code` solves for :math:`w` by conjugate gradients on an
equivalent symmetric system (default) or by the fixed-point iteration :math:`w \leftarrow g + J_u T^\top w`
(vector–Jacobian products of :math:`T` at :math:`u^\star`, for every threshold; it converges like ISTA on the active
set), then backpropagates :math:`w` through one application of :math:`T`.
Memory is that of one iteration, whatever the number of forward iterations. It assumes the solver reached a fixed
point of :math:`T` with the same :math:`L`: true for the convex thresholds (soft, non-negative), a local minimiser for
the hard threshold; the GELU-smoothed threshold is discontinuous at 0 and its iteration can end in a cycle instead.
"""
from __future__ import annotations

import torch

from ._reductions import per_sample_dot
from .dictionaries.base import Operator
from .thresholds import Threshold

__all__ = ["proximal_gradient_map", "implicit_code", "BACKWARD_METHODS"]


def proximal_gradient_map(op: Operator, x: torch.Tensor, threshold: Threshold, u: torch.Tensor,
                          L: torch.Tensor) -> torch.Tensor:
    r""":math:`T(u) = \operatorname{prox}_{\lambda R/L}(u - (P^\top P u - P^\top x)/L)`, one ISTA step.

    Args:
        op: a bound dictionary.
        x: signals.
        threshold: the prox of :math:`\lambda R`.
        u: codes.
        L: the step-size bound (broadcastable to codes).
    """
    return threshold.prox(_gradient_point(op, x, u, L), 1.0 / L)


def _gradient_point(op: Operator, x: torch.Tensor, u: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    # v = u - (PᵀP u - Pᵀx)/L, the point the prox is applied to
    return u - (op.gram(u) - op.encode(x)) / L


def _per_sample_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # shaped to broadcast against a
    return per_sample_dot(a, b).reshape((-1,) + (1,) * (a.ndim - 1))


def _solve_fixed_point(vjp, g: torch.Tensor, max_iter: int, tol: float, check_every: int) -> torch.Tensor:
    # w <- g + J_u T(u*)^T w
    w = g
    scale = float(g.abs().max()) if g.numel() else 0.0
    for k in range(max_iter):
        w_new = g + vjp(w)
        if (k + 1) % check_every == 0 and float((w_new - w).abs().max()) <= tol * max(scale, 1e-300):
            return w_new
        w = w_new
    return w


def _solve_cg(op: Operator, d: torch.Tensor, L: torch.Tensor, g: torch.Tensor, max_iter: int, tol: float,
              check_every: int) -> torch.Tensor:
    # J_u T^T = (I - G/L) D with D = diag(d) the prox's derivative. With y = D^{1/2} w the system becomes the
    # symmetric positive definite (I - S) y = D^{1/2} g, S = D^{1/2}(I - G/L)D^{1/2}; then w = g + (I - G/L) D^{1/2} y.
    root = d.clamp_min(0).sqrt()

    def smooth(v: torch.Tensor) -> torch.Tensor:  # (I - G/L) v
        return v - op.gram(v) / L

    def system(v: torch.Tensor) -> torch.Tensor:  # (I - S) v
        return v - root * smooth(root * v)

    rhs = root * g
    y = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = _per_sample_dot(r, r)
    target = (tol ** 2) * rs.clamp_min(torch.finfo(rs.dtype).tiny)
    for k in range(max_iter):
        ap = system(p)
        pap = _per_sample_dot(p, ap)
        alpha = torch.where(pap > 0, rs / torch.where(pap > 0, pap, torch.ones_like(pap)), torch.zeros_like(pap))
        y = y + alpha * p
        r = r - alpha * ap
        rs_new = _per_sample_dot(r, r)
        if (k + 1) % check_every == 0 and bool((rs_new <= target).all()):
            break
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + beta * p
        rs = rs_new
    return g + smooth(root * y)


#: how the backward linear system is solved
BACKWARD_METHODS = ("cg", "fixed_point")


def implicit_code(op: Operator, x: torch.Tensor, threshold: Threshold, code: torch.Tensor, L: torch.Tensor, *,
                  method: str = "cg", max_iter: int = 1000, tol: float = 1e-10,
                  check_every: int = 10) -> torch.Tensor:
    r"""Re-attach a converged code :math:`u^\star` to the autograd graph through the implicit function theorem.

    Returns :math:`T(u^\star)` (equal to :math:`u^\star` at a fixed point) whose backward pass solves
    :math:`(I - J_uT)^\top w = g` and sends :math:`w` through :math:`T`'s dependence on ``x``, :math:`\lambda` and the
    dictionary's parameters. With :math:`D` the (diagonal) derivative of the elementwise prox at
    :math:`v^\star = u^\star - \nabla f(u^\star)/L`, :math:`J_uT^\top = (I - P^\top P/L)\,D`.

    Args:
        op: the bound dictionary the code was computed with.
        x: signals.
        threshold: the threshold used in the solve.
        code: the converged code :math:`u^\star` (detached here).
        L: the step-size bound of :math:`T` (detached; must bound :math:`\|P^\top P\|_2`).
        method: ``"cg"`` (default: conjugate gradients on the equivalent symmetric system
            :math:`(I - D^{1/2}(I - P^\top P/L)D^{1/2})\,y = D^{1/2} g`, :math:`w = g + (I - P^\top P/L) D^{1/2} y`;
            needs :math:`0 \le D \le 1`, true for the soft, non-negative and hard thresholds, and :math:`L` constant
            on every block of coupled code entries, true for every dictionary here) or ``"fixed_point"``
            (:math:`w \leftarrow g + J_uT^\top w` by vector–Jacobian products, any threshold, converges like ISTA on
            the active set).
        max_iter: the most iterations of the backward solve.
        tol: relative tolerance of the backward solve (residual for CG, step for the fixed point).
        check_every: test the tolerance (a host synchronisation) every this many iterations.
    """
    if method not in BACKWARD_METHODS:
        raise ValueError(f"method must be one of {BACKWARD_METHODS}, got {method!r}")
    u_star = code.detach()
    L = L.detach()
    point = _gradient_point(op, x, u_star, L)
    out = threshold.prox(point, 1.0 / L)  # T(u*), differentiable in x, λ and P
    if not out.requires_grad:
        return out
    with torch.enable_grad():  # the prox alone, differentiable in its input: gives D and the products D w
        v = point.detach().requires_grad_(True)
        prox_v = threshold.prox(v, 1.0 / L)

    def backward_hook(grad: torch.Tensor | None) -> torch.Tensor | None:
        if grad is None:  # an undefined incoming gradient stays undefined
            return grad
        with torch.no_grad():
            if method == "cg":
                (d,) = torch.autograd.grad(prox_v, v, torch.ones_like(prox_v), retain_graph=True)
                return _solve_cg(op, d, L, grad, max_iter, tol, check_every)

        def vjp(w: torch.Tensor) -> torch.Tensor:
            (dw,) = torch.autograd.grad(prox_v, v, w, retain_graph=True)
            with torch.no_grad():
                return dw - op.gram(dw) / L

        return _solve_fixed_point(vjp, grad, max_iter, tol, check_every)

    out.register_hook(backward_hook)
    return out
