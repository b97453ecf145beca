r"""ISTA: proximal gradient descent (paper Eq. 12).

.. math:: u_{k+1} = T_{\lambda/L}\big(u_k - \tfrac1L (P^\top P u_k - P^\top x)\big)

The objective never increases when :math:`L \ge \|P^\top P\|_2`. The optimality measure is the proximal-gradient
mapping :math:`L\,\|u_k - u_{k+1}\|_\infty`, zero exactly at a minimiser (convex penalties).

A fixed number of steps (no ``tol``, trace, ``grad_steps`` or ``compile_step``) with the soft threshold,
differentiated through every step outside autocast, on an operator whose gradient step is an affine map of the codes
(:meth:`DenseOperator.affine_step <sparsecode.dictionaries.dense.DenseOperator.affine_step>` and
:meth:`~sparsecode.dictionaries.dense.DenseOperator.scaled_step`: a dense dictionary, or the stacked dictionaries of
the VARS mixers) runs as one autograd node (:mod:`sparsecode.solvers._unrolled`): the same iterates and derivatives
(higher-order ones included), with fewer full-size temporaries and saved tensors.
"""
from __future__ import annotations

import torch

from ..result import SolveResult
from ..thresholds import SoftThreshold
from ._unrolled import unrolled_scaled_soft_ista, unrolled_soft_ista
from .base import Solver, State, _gradient_step, _max_abs_times

__all__ = ["ISTA"]


class ISTA(Solver):
    r"""Iterative shrinkage-thresholding: :math:`u \leftarrow T_{\lambda/L}(u - (P^\top P u - P^\top x)/L)`.

    Args: see :class:`~sparsecode.solvers.base.Solver`.
    """

    _rows_independent = True
    _optimal_zero_start_is_fixed = True

    def init_state(self, op, x, b, threshold, L, u0) -> State:
        return {"u": u0}

    def step(self, op, x, b, threshold, L, state, need_measure):
        u = state["u"]
        u_new = threshold.prox(_gradient_step(op, u, b, L), 1.0 / L)
        measure = _max_abs_times(u - u_new, L) if need_measure else None
        return {"u": u_new}, measure

    def _fused_unrolled_solve(self, op, x, b, threshold, L, u0) -> SolveResult | None:
        # the iteration must be this class's, with the soft threshold and a detached L, outside autocast (which
        # would pick the products' dtype step by step)
        if (type(threshold) is not SoftThreshold or type(self).step is not ISTA.step
                or type(self).init_state is not ISTA.init_state or type(self).code is not Solver.code or L.requires_grad
                or torch.is_autocast_enabled(b.device.type) or not callable(getattr(op, "affine_step", None))):
            return None
        t = threshold._lam_like(b) * (1.0 / L)  # as prox(v, 1/L) forms it
        if t.ndim > b.ndim or t.dtype != b.dtype:
            return None
        scaled = op.scaled_step(u0, b, L) if callable(getattr(op, "scaled_step", None)) else None
        if scaled is not None:
            r, scale, b_flat, step = scaled
            if not any(v.requires_grad for v in (u0, r, scale, b_flat, t)):
                return None
            code = unrolled_scaled_soft_ista(u0, r, scale, b_flat, step, t, self.max_iter)
        else:
            affine = op.affine_step(u0, b, L)
            if affine is None:
                return None
            m, c = affine
            if not any(v.requires_grad for v in (u0, m, c, t)):
                return None
            code = unrolled_soft_ista(u0, m, c, t, self.max_iter)
        return self._fixed_steps_result(x, code)
