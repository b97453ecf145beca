r"""ADMM for sparse coding with a dense dictionary: a linear solve, a prox and a dual update per iteration (Boyd et al.,
"Distributed Optimization and Statistical Learning via the Alternating Direction Method of Multipliers", 2011, §6.4).

Splitting :math:`\min_{u, z} \tfrac12\|Pu - x\|^2 + \lambda R(z)` subject to :math:`u = z`, with the scaled dual
:math:`w`, penalty :math:`\rho_i > 0` per sample and over-relaxation :math:`\alpha \in (0, 2)`:

.. math::
    u &= (P^\top P + \rho I)^{-1}\big(P^\top x + \rho(z - w)\big),\\
    v &= \alpha u + (1 - \alpha) z + w,\qquad
    z^+ = \operatorname{prox}_{\lambda R/\rho}(v),\qquad w^+ = v - z^+.

The iteration is run on :math:`Z = \rho z` and :math:`W = \rho w` (the unscaled dual), in which it reads
:math:`\rho u = \rho(P^\top P + \rho I)^{-1}(P^\top x + Z - W) = y - V_r\operatorname{diag}\big(e_r/(e_r + \rho)\big)
V_r^\top y`, :math:`\rho v = \alpha\rho u + (1-\alpha)Z + W`, :math:`Z^+ = \operatorname{prox}_{\lambda R}(\rho v)`
(for a homogeneous penalty such as :math:`\ell_1`: one scalar threshold, whatever each sample's :math:`\rho`),
:math:`W^+ = \rho v - Z^+`. :math:`V_r, e_r` are the eigenpairs of :math:`P^\top P` that can be non-zero, computed
once per operator (:meth:`~sparsecode.dictionaries.dense.DenseOperator.scaled_shifted_gram_solve`): two products with
the ``m × min(n, m)`` matrix :math:`V_r` per iteration — for a twice-overcomplete dictionary the cost of FISTA's one
product with :math:`P^\top P` — and each sample keeps its own :math:`\rho_i`, so that samples stay independent of
each other. The solve is exact, so ADMM takes no step bounded by :math:`1/L`, and it converges in far fewer
iterations than proximal-gradient methods on coherent dictionaries.

**Start.** :math:`Z_0 = \rho u_0` and :math:`W_0 = 0`, except for a sample whose start is 0 and already optimal
(:math:`P^\top x \in \lambda\partial R(0)`, e.g. :math:`\|P^\top x\|_\infty \le \lambda` for the Lasso): there
:math:`W_0 = P^\top x`, the dual of that minimiser, and the start is a fixed point — the code stays exactly 0, as it
does under proximal gradient, instead of leaving 0 and coming back (and the CPU loop over rows can leave the sample
out). The dual of every start, :math:`W_0 = s - \operatorname{prox}_{\lambda R}(s)` with :math:`s = Z_0 - \nabla
f(u_0)`, cut the iterations to 1e-6 suboptimality on the solver benchmark (65 → 47 on learned image patches at
:math:`0.5\lambda_{\max}`, 20 → 16 on a correlated Gaussian design) but made the penalty balancing overshoot later
(:math:`\rho` up 5–7× at the first adaptation) and slowed solves to a KKT residual of 1e-9 (55 → 116 mean iterations on
a Gaussian design at :math:`0.6\lambda_{\max}`): not kept.

**Penalty adaptation** (``adaptive=True``): every ``adapt_every`` iterations each sample's :math:`\rho_i` is scaled by
:math:`f = \sqrt{r/s}` (clipped to :math:`[1/10, 10]`, skipped when :math:`1/2 < f < 2` or :math:`z^+ = 0`), with the
relative residuals :math:`r = \|u - z^+\|_2 / \max(\|u\|_2, \|z^+\|_2)` (primal) and
:math:`s = \|z^+ - z\|_2 / \|w^+\|_2` (dual, :math:`\rho` cancels), and :math:`Z` is multiplied by :math:`f` (:math:`z` and the
unscaled dual :math:`W` are unchanged): the residual balancing of OSQP (Stellato et al., 2020), per sample. It
drives :math:`\rho_i` towards the curvature of the objective on the sample's support, which depends on :math:`\lambda`
and on the signal; the start then matters less. The adaptation stops after ``adapt_until`` iterations (1000): the
balancing can cycle (a sample whose :math:`\rho` alternated by factors of about 2 and 0.45 never converged), and ADMM
with a fixed :math:`\rho` converges. The starting :math:`\rho` is ``rho`` times the mean eigenvalue
:math:`\operatorname{tr}(P^\top P)/m` of the Gram matrix (the mean squared atom norm: 1 for unit-norm atoms), which
follows the scale of the problem; an :math:`L`-relative start is far above the curvature on a sparse support when the
dictionary is coherent (:math:`L` large). On the solver benchmark (iterations to 1e-6, batches of 256 and 4096),
0.5·tr/m against 0.1·L took 66 / 64 against 72 / 80 iterations on learned image patches at
:math:`0.5\lambda_{\max}`, 76 / 84 against 86 / 99 at :math:`0.05\lambda_{\max}`, 22 against 29 on a correlated
Gaussian design at :math:`0.05\lambda_{\max}`, and 1–3 more (16–21 against 15–18) on the easy Gaussian settings.
It is computed with the Gram matrix's graph, so unrolled derivatives include its dependence on the dictionary.
A non-convex threshold
(hard, smoothed) keeps ``rho`` fixed: there ADMM finds a stationary point at best, and shrinking :math:`\rho` can make
it diverge.

**Precision floor.** With a tolerance, the adaptive :math:`\rho` (and its start) is kept at or above
:math:`4\varepsilon L/\mathrm{tol}` (:math:`\varepsilon` the machine epsilon of the codes' dtype). The u-step
:math:`\rho u = y - V_r\operatorname{diag}(e_r/(e_r+\rho))V_r^\top y` subtracts two vectors of the size of
:math:`y` whose difference is :math:`\rho` times smaller on the directions where :math:`e_r \gg \rho`, so :math:`u`
carries a rounding error of about :math:`\varepsilon\|y\|/\rho` and the optimality measure one of about
:math:`L\varepsilon\|y\|/\rho`: below the floor the tolerance may be out of reach. In float32 at ``tol=1e-5`` on
learned image patches at :math:`0.1\lambda_{\max}` (:math:`L = 21`), the balancing drove :math:`\rho` of some
samples to :math:`0.005L` and 20 of 256 stalled at a measure of 3–9e-5 for 3000 iterations; with the floor
(:math:`0.048L`) all converged, within 1027 iterations. In float64 the floor is :math:`10^{-7}L` or less for any
tolerance above :math:`10^{-8}`; without a tolerance (a fixed number of iterations) there is none.

**Optimality measure.** With :math:`z^+ = \operatorname{prox}_{\lambda R/\rho}(v)`, :math:`\rho w^+ \in
\lambda\partial R(z^+)`, and the u-step gives

.. math:: \nabla f(z^+) + \rho w^+ = P^\top P(z^+ - u) + \rho\big((\alpha - 1)(u - z) + (z - z^+)\big),

whose sup-norm is at most :math:`c\|z^+ - u\|_2 + \rho|\alpha - 1|\,\|u - z\|_\infty + \rho\|z^+ - z\|_\infty`
with :math:`c = \max_i \|(P^\top P)_{i,:}\|_2 \le L` (:meth:`~sparsecode.dictionaries.dense.DenseOperator.gram_row_norm`):
the measure used by ``tol``. It bounds the distance from 0 to :math:`\partial F(z^+)` (the KKT residual) from above, so a
sample stopped by ``tol`` is at least that optimal. The code returned is :math:`z`.

Unrolled, ADMM differentiates with respect to the signals, :math:`\lambda` and the dictionary; the
eigendecomposition itself is held constant and the linear solve carries the exact derivative (see
:meth:`~sparsecode.dictionaries.dense.DenseOperator.scaled_shifted_gram_solve`), at two more products and a Gram
product per iteration while a graph is recorded.
"""
from __future__ import annotations

import torch

from .._reductions import host_read_is_free, per_sample_norm, per_sample_view
from .._validation import check_positive_int
from ..dictionaries.dense import DenseOperator
from ..objective import per_sample_max_abs
from .base import Solver, State, _zero_start_is_optimal

__all__ = ["ADMM"]

#: the largest factor one adaptation may change rho by, and the smallest factor worth an adaptation
_MAX_FACTOR, _MIN_FACTOR = 10.0, 2.0


class ADMM(Solver):
    r"""Over-relaxed ADMM with an exact linear solve and a per-sample, self-tuning penalty.

    Needs a dense dictionary (one whose bound operator is a
    :class:`~sparsecode.dictionaries.dense.DenseOperator`: linear, dynamic, concatenated dense dictionaries).

    Args:
        max_iter: the largest number of iterations (the exact number when ``tol`` is ``None``).
        tol: per-sample stopping tolerance (see :class:`~sparsecode.solvers.base.Solver`) on the KKT bound above.
        rho: the starting penalty :math:`\rho`, as a multiple of the mean eigenvalue :math:`\operatorname{tr}(P^\top P)/m`.
        relaxation: :math:`\alpha \in (0, 2)`; 1 is plain ADMM, 1.5–1.8 is usually fastest.
        adaptive: balance the residuals by rescaling each sample's :math:`\rho` (see the module docstring).
        adapt_every: iterations between two adaptations.
        adapt_until: the last iteration at which :math:`\rho` may change (``None``: no limit). Residual balancing can
            cycle — Hypothesis found a sample whose :math:`\rho` kept alternating by factors of about 2 and 0.45 and
            that never converged in 20 000 iterations —, while ADMM with a fixed :math:`\rho` converges; so the
            adaptation stops after this many iterations.
        **kwargs: ``step``, ``init`` and ``check_every``, see
            :class:`~sparsecode.solvers.base.Solver`.
    """

    _rows_independent = True
    _optimal_zero_start_is_fixed = True

    def __init__(self, max_iter: int = 100, tol: float | None = None, *, rho: float = 0.5, relaxation: float = 1.8,
                 adaptive: bool = True, adapt_every: int = 10, adapt_until: int | None = 1000, **kwargs) -> None:
        super().__init__(max_iter, tol, **kwargs)
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
            raise ValueError(f"rho must be a positive number (a multiple of the mean eigenvalue tr(P^T P)/m), "
                             f"got {rho!r}")
        if isinstance(relaxation, bool) or not isinstance(relaxation, (int, float)) or not 0 < relaxation < 2:
            raise ValueError(f"relaxation must be a number in (0, 2), got {relaxation!r}")
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
        check_positive_int(adapt_every, "adapt_every")
        check_positive_int(adapt_until, "adapt_until", allow_none=True)
        self.rho, self.relaxation, self.adaptive, self.adapt_every = float(rho), float(relaxation), adaptive, adapt_every
        self.adapt_until = adapt_until

    def lipschitz(self, op, x):
        r""":math:`L` as for every solver; for a dense operator the eigendecomposition of :math:`P^\top P` that the
        u-step needs is built first, so that a ``"power"`` bound is read off its top eigenvalue for free."""
        if self.step_size is None and isinstance(op, DenseOperator) and op.lipschitz_mode == "power":
            op.gram_eigh()
        return super().lipschitz(op, x)

    def init_state(self, op, x, b, threshold, L, u0) -> State:
        if not isinstance(op, DenseOperator):
            raise TypeError(f"ADMM needs a dense dictionary (its bound operator a DenseOperator), got "
                            f"{type(op).__name__}; use FISTA for convolutional, FFT and DCT dictionaries")
        dtype = u0.dtype if u0.is_floating_point() else torch.float32
        rho = torch.full((u0.shape[0],) + (1,) * (u0.ndim - 1), self.rho, dtype=dtype, device=u0.device)
        rho = rho * op.mean_gram_eigenvalue().to(dtype)
        floor = self._rho_floor(L, threshold, dtype)
        if floor is not None:
            rho = rho.clamp_min(floor)
        iteration = torch.zeros(u0.shape[0], dtype=torch.long, device=u0.device)
        # the state is kept multiplied by rho: Z = rho z and W = rho w (the unscaled dual), so that the u-step's
        # right-hand side is b + Z - W and a homogeneous threshold needs no per-sample step
        return {"Z": rho * u0, "W": self._starting_dual(b, threshold, u0), "rho": rho,
                "damping": op.shift_damping(rho), "k": iteration}

    @staticmethod
    def _starting_dual(b, threshold, u0) -> torch.Tensor:
        r"""The unscaled dual :math:`W_0`: :math:`P^\top x` for a sample whose start is 0 and optimal (the KKT
        conditions hold there, :math:`P^\top x \in \lambda\partial R(0)`), which makes that start a fixed point; 0
        otherwise (see the module docstring)."""
        if not threshold.convex:
            return torch.zeros_like(u0)
        optimal = _zero_start_is_optimal(u0, b, threshold)
        return torch.where(per_sample_view(optimal, b), b, torch.zeros_like(b))

    @staticmethod
    def _scaled_prox(threshold, v, rho) -> torch.Tensor:
        r""":math:`\rho\operatorname{prox}_{\lambda R/\rho}(v/\rho)`: :math:`\operatorname{prox}_{\lambda R}(v)` for a
        homogeneous penalty (one scalar threshold, whatever each sample's :math:`\rho`)."""
        if threshold.homogeneous:
            return threshold.prox(v, 1.0)
        return rho * threshold.prox(v / rho, 1.0 / rho)

    def step(self, op, x, b, threshold, L, state, need_measure):
        Z, W, rho, damping, k = state["Z"], state["W"], state["rho"], state["damping"], state["k"] + 1
        alpha = self.relaxation
        # rho u = rho (G + rho I)^{-1} (b + rho (z - w))
        rho_u = op.scaled_shifted_gram_solve(b + Z - W, rho, damping)
        # rho v = rho (alpha u + (1 - alpha) z + w)
        rho_v = torch.add(W, rho_u, alpha=alpha)
        if alpha != 1:
            rho_v = torch.add(rho_v, Z, alpha=1 - alpha)
        Z_new = self._scaled_prox(threshold, rho_v, rho)  # rho prox_{lam R / rho}(v)
        W_new = rho_v - Z_new
        measure = None
        if need_measure:
            gap = (Z_new - rho_u) * (op.gram_row_norm().to(rho.dtype) / rho)
            measure = (per_sample_norm(gap) + per_sample_max_abs(Z - Z_new)
                       + abs(alpha - 1) * per_sample_max_abs(rho_u - Z))
        # (a non-convex penalty keeps its rho: balancing can drive non-convex ADMM to diverge)
        if self.adaptive and threshold.convex:
            due = k % self.adapt_every == 0
            if self.adapt_until is not None:
                due = due & (k <= self.adapt_until)
            # on the CPU reading "is any sample due?" is free and spares the residual norms on the other iterations
            if not host_read_is_free(due) or bool(due.any()):
                factor = self._balance(rho_u, Z, Z_new, W_new, due)
                floor = self._rho_floor(L, threshold, rho.dtype)
                if floor is not None:
                    factor = torch.maximum(factor, floor / rho)
                rho, Z_new = rho * factor, Z_new * factor
                damping = op.shift_damping(rho)
        return {"Z": Z_new, "W": W_new, "rho": rho, "damping": damping, "k": k}, measure

    def _rho_floor(self, L: torch.Tensor, threshold, dtype: torch.dtype) -> torch.Tensor | None:
        r"""The precision floor :math:`4\varepsilon L/\mathrm{tol}` of the adaptive penalty (module docstring), a 0-d
        tensor; ``None`` without a tolerance or without adaptation (a fixed ``rho`` is the caller's)."""
        if self.tol is None or not (self.adaptive and threshold.convex):
            return None
        return (4 * torch.finfo(dtype).eps / self.tol) * L.detach().amax().to(dtype)

    def _balance(self, rho_u, Z, Z_new, W_new, due) -> torch.Tensor:
        """The residual-balancing factor of each sample's rho (see the module docstring), shaped like ``rho``; the
        residuals are relative, so rho cancels from them."""
        tiny = torch.finfo(rho_u.dtype).tiny
        z_norm = per_sample_norm(Z_new)
        primal = per_sample_norm(rho_u - Z_new) / torch.maximum(per_sample_norm(rho_u), z_norm).clamp_min(tiny)
        dual = per_sample_norm(Z_new - Z) / per_sample_norm(W_new).clamp_min(tiny)
        factor = torch.sqrt(primal / dual.clamp_min(tiny)).clamp(1 / _MAX_FACTOR, _MAX_FACTOR)
        skip = ((factor < _MIN_FACTOR) & (factor > 1 / _MIN_FACTOR)) | (z_norm == 0) | ~due
        # the penalty schedule is a constant for autograd (only the iterates it scales are differentiated)
        return per_sample_view(torch.where(skip, torch.ones_like(factor), factor), rho_u).detach()

    def code(self, state, threshold, L):
        return state["Z"] / state["rho"]

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", rho={self.rho}, relaxation={self.relaxation}, adaptive={self.adaptive}, "
                f"adapt_every={self.adapt_every}, adapt_until={self.adapt_until}")
