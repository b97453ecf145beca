r"""ISTA: proximal gradient descent (paper Eq. 12).

.. math:: u_{k+1} = T_{\lambda/L}\big(u_k - \tfrac1L (P^\top P u_k - P^\top x)\big)

The objective never increases when :math:`L \ge \|P^\top P\|_2`. The optimality measure is the proximal-gradient
mapping :math:`L\,\|u_k - u_{k+1}\|_\infty`, zero exactly at a minimiser (convex penalties).
"""
from __future__ import annotations

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
