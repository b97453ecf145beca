r"""FISTA: ISTA with Nesterov momentum (Beck & Teboulle, 2009), optional adaptive restart.

.. math::
    u_{k} = T_{\lambda/L}\big(y_k - \tfrac1L(P^\top P y_k - P^\top x)\big),\quad
    t_{k+1} = \tfrac{1 + \sqrt{1 + 4 t_k^2}}{2},\quad
    y_{k+1} = u_k + \tfrac{t_k - 1}{t_{k+1}}(u_k - u_{k-1}),

with :math:`y_1 = u_0`, :math:`t_1 = 1`; then :math:`F(u_k) - F^\star \le 2L\|u_0 - u^\star\|^2/(k+1)^2`.
With ``restart=True`` the momentum is reset per sample when :math:`\langle y_k - u_k, u_k - u_{k-1}\rangle > 0`
(the gradient scheme of O'Donoghue & Candès, 2015). The optimality measure is :math:`L\|y_k - u_k\|_\infty`.
"""
from __future__ import annotations

import torch

from .._reductions import per_sample_dot
from .base import Solver, State, _gradient_step, _max_abs_times

__all__ = ["FISTA"]


class FISTA(Solver):
    r"""Fast iterative shrinkage-thresholding.

    Args:
        restart: adaptive (gradient-scheme) momentum restart, decided per sample.
        **kwargs: see :class:`~sparsecode.solvers.base.Solver`.
    """

    _rows_independent = True
    _optimal_zero_start_is_fixed = True

    def __init__(self, max_iter: int = 100, tol: float | None = None, *, restart: bool = False, **kwargs) -> None:
        super().__init__(max_iter, tol, **kwargs)
        self.restart = restart

    def init_state(self, op, x, b, threshold, L, u0) -> State:
        t = torch.ones(x.shape[0], dtype=u0.dtype if u0.is_floating_point() else torch.float32, device=u0.device)
        return {"u": u0, "y": u0, "t": t}

    def step(self, op, x, b, threshold, L, state, need_measure):
        u, y, t = state["u"], state["y"], state["t"]
        u_new = threshold.prox(_gradient_step(op, y, b, L), 1.0 / L)
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        momentum = (t - 1) / t_new
        # u may be a lower-precision start under autocast
        step_u = u_new - u.to(u_new.dtype)
        gap = y - u_new if (self.restart or need_measure) else None
        if self.restart:
            bad = per_sample_dot(gap, step_u) > 0
            t_new = torch.where(bad, torch.ones_like(t_new), t_new)
            momentum = torch.where(bad, torch.zeros_like(momentum), momentum)
        # y = u_new + m (u_new - u) as one kernel (exactly u_new at m = 0)
        weight = momentum.reshape((-1,) + (1,) * (u_new.ndim - 1)).to(u_new.dtype)
        y_new = torch.addcmul(u_new, step_u, weight)
        measure = _max_abs_times(gap, L) if need_measure else None
        return {"u": u_new, "y": y_new, "t": t_new}, measure

    def extra_repr(self) -> str:
        return super().extra_repr() + f", restart={self.restart}"
