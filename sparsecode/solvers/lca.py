r"""LCA: sparse coding as the equilibrium of recurrent neural dynamics, integrated as an ODE.

Two forms:

* ``form="vars"`` — the two-population dynamics of the VARS paper (Eq. 8–9):

  .. math::
      \dot z = -\alpha z + P\,g(u) + x, \qquad
      \dot u = -\beta u - \gamma (P^\top P - I)\,g(u) + P^\top z,

  with the gate :math:`g(u) = \operatorname{prox}_{s\lambda R}(u)` (``gate_step`` :math:`s`). With
  :math:`\alpha = 1,\ \beta = \gamma = 2,\ s = 1/2` (threshold :math:`\lambda/2`) the equilibrium satisfies
  :math:`P^\top(x - P\tilde u) \in \lambda\,\partial\|\tilde u\|_1` for :math:`\tilde u = g(u)`: it is the Lasso
  solution with penalty :math:`\lambda`, and :math:`z^\star = P\tilde u^\star + x` (Appendix B).
  Starts from :math:`z_0 = x`, :math:`u_0 = 0` (or the given code).
* ``form="rozell"`` — the classic one-population LCA (Rozell et al., 2008):

  .. math:: \tau\,\dot u = -u - (P^\top P - I)\,a + P^\top x,\qquad a = \operatorname{prox}_{\lambda R}(u),

  whose equilibrium code :math:`a^\star` is the Lasso solution.

``method="euler"`` integrates with fixed steps ``dt`` (what a layer uses; ``max_iter`` steps, per-sample stopping on
:math:`\|\dot u\|_\infty`, :math:`\|\dot z\|_\infty`); any other method name (``"dopri5"``, ``"rk4"``, ...) integrates
from 0 to ``t_end`` with ``torchdiffeq.odeint``. The returned code is the gated code :math:`g(u)` (resp. :math:`a`).
"""
from __future__ import annotations

import torch

from ..objective import per_sample_max_abs
from ..result import SolveResult
from .base import Solver, State

__all__ = ["LCA", "LCA_FORMS"]

LCA_FORMS = ("vars", "rozell")


def _fit_step(dt: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """``dt`` when it broadcasts to ``like``; else its smallest entry (a code-shaped step, e.g. per atom, applied to the
    signal-shaped population z); a tensor step in ``like``'s dtype (a float32 step must not promote half-precision
    states)."""
    if not isinstance(dt, torch.Tensor):
        return dt
    dt = dt.to(like.dtype) if like.is_floating_point() else dt
    if dt.ndim == 0:
        return dt
    try:
        if torch.broadcast_shapes(dt.shape, like.shape) == like.shape:
            return dt
    except RuntimeError:
        pass
    return dt.amin()


class LCA(Solver):
    r"""Locally competitive algorithm (see the module docstring for the equations).

    Args:
        form: ``"vars"`` (two populations, paper Eq. 8–9) or ``"rozell"`` (one population).
        method: ``"euler"`` or a ``torchdiffeq`` method (``"dopri5"``, ``"bosh3"``, ``"rk4"``, ...).
        dt: Euler step; ``None`` picks a stable one from :math:`L`: :math:`1/\max(L, 1)` (rozell),
            :math:`1/(2\max(L,1)+1)` (vars, α=1, β=γ=2).
        alpha, beta, gamma: the rates of the ``vars`` form.
        gate_step: :math:`s` in :math:`g(u) = \operatorname{prox}_{s\lambda R}(u)` (``vars`` form; 1/2 in the paper).
        tau: time constant of the ``rozell`` form.
        t_end: integration horizon for adaptive methods (``None``: ``max_iter * dt``).
        rtol, atol: tolerances of adaptive methods.
        **kwargs: ``max_iter``, ``tol``, ``step`` (= ``dt``), ``init``, ``check_every`` (see :class:`Solver`).
    """

    def __init__(self, max_iter: int = 200, tol: float | None = None, *, form: str = "vars", method: str = "euler",
                 dt: float | None = None, alpha: float = 1.0, beta: float = 2.0, gamma: float = 2.0,
                 gate_step: float = 0.5, tau: float = 1.0, t_end: float | None = None, rtol: float = 1e-7,
                 atol: float = 1e-9, **kwargs) -> None:
        super().__init__(max_iter, tol, **kwargs)
        if form not in LCA_FORMS:
            raise ValueError(f"form must be one of {LCA_FORMS}, got {form!r}")
        for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("gate_step", gate_step), ("tau", tau)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if dt is not None and not dt > 0:
            raise ValueError(f"dt must be a positive number or None, got {dt!r}")
        if method != "euler":
            import torchdiffeq  # noqa: F401  (fail early with a clear ImportError)
        self.form, self.method, self.dt = form, method, dt
        self.alpha, self.beta, self.gamma, self.gate_step, self.tau = alpha, beta, gamma, gate_step, tau
        self.t_end, self.rtol, self.atol = t_end, rtol, atol

    # the step-size machinery of the base class gives L; LCA's time step is derived from it
    def time_step(self, L: torch.Tensor) -> torch.Tensor | float:
        if self.dt is not None:
            return self.dt
        if self.step_size is not None:
            return self.step_size
        Lc = L.clamp_min(1.0)
        return 1.0 / Lc if self.form == "rozell" else 1.0 / (2 * Lc + 1)

    def gate(self, u: torch.Tensor, threshold) -> torch.Tensor:
        return threshold.prox(u, self.gate_step if self.form == "vars" else 1.0)

    def derivatives(self, op, x, b, threshold, state: State) -> State:
        """The right-hand side of the ODE at ``state``."""
        u = state["u"]
        a = self.gate(u, threshold)
        if self.form == "rozell":
            return {"u": (b - u - (op.gram(a) - a)) / self.tau}
        z = state["z"]
        dz = -self.alpha * z + op.decode(a) + x
        du = -self.beta * u - self.gamma * (op.gram(a) - a) + op.encode(z)
        return {"z": dz, "u": du}

    def init_state(self, op, x, b, threshold, L, u0) -> State:
        return {"u": u0} if self.form == "rozell" else {"z": x, "u": u0}


    def step(self, op, x, b, threshold, L, state, need_measure):
        d = self.derivatives(op, x, b, threshold, state)
        dt = self.time_step(L)
        new = {k: state[k] + _fit_step(dt, state[k]) * d[k] for k in state}
        measure = None
        if need_measure:
            measure = torch.stack([per_sample_max_abs(v) for v in d.values()]).amax(dim=0)
        return new, measure

    def code(self, state, threshold, L):
        return self.gate(state["u"], threshold)

    def solve(self, op, x, threshold, *, init=None, trace=False, grad_steps=None) -> SolveResult:
        if self.method == "euler":
            return super().solve(op, x, threshold, init=init, trace=trace, grad_steps=grad_steps)
        if grad_steps is not None:
            raise ValueError(f"grad_steps (truncated backpropagation) needs method='euler', got {self.method!r}")
        return self._solve_adaptive(op, x, threshold, init=init)

    def _solve_adaptive(self, op, x, threshold, *, init=None) -> SolveResult:
        from torchdiffeq import odeint

        b = op.encode(x)
        L = self.lipschitz(op, x)
        state = self.init_state(op, x, b, threshold, L, self.initial_code(op, b, threshold, init))
        keys = list(state)
        n_eval = [0]

        def rhs(t, y):
            n_eval[0] += 1
            d = self.derivatives(op, x, b, threshold, dict(zip(keys, y)))
            return tuple(d[k] for k in keys)

        dt = self.time_step(L)
        dt_max = float(dt.max()) if isinstance(dt, torch.Tensor) else float(dt)
        t_end = self.t_end if self.t_end is not None else self.max_iter * dt_max
        t = torch.tensor([0.0, t_end], dtype=x.dtype if x.dtype == torch.float64 else torch.float32, device=x.device)
        ys = odeint(rhs, tuple(state[k] for k in keys), t, rtol=self.rtol, atol=self.atol, method=self.method)
        final = {k: y[-1] for k, y in zip(keys, ys)}
        d = self.derivatives(op, x, b, threshold, final)
        measure = torch.stack([per_sample_max_abs(v.detach()) for v in d.values()]).amax(dim=0)
        scale = per_sample_max_abs(b.detach()).clamp_min(torch.finfo(torch.float32).tiny)
        converged = (measure / scale <= self.tol) if self.tol is not None else torch.zeros_like(measure, dtype=torch.bool)
        n = torch.full((x.shape[0],), n_eval[0], dtype=torch.long, device=x.device)
        return SolveResult(code=self.code(final, threshold, L), n_iter=n_eval[0], converged=converged,
                           n_iter_per_sample=n, trace=None, state=final)

    def extra_repr(self) -> str:
        return (f"form={self.form!r}, method={self.method!r}, dt={self.dt}, max_iter={self.max_iter}, "
                f"tol={self.tol}")
