r"""``SparseReconstruction``: the layer whose output is the sparse reconstruction of its input.

.. math::
    u^\star = \arg\min_u \tfrac12\|P u - x\|_2^2 + \lambda R(u), \qquad z = P u^\star \;(+\,x \text{ if residual}).

Composed from three swappable parts: a dictionary :math:`P`, a solver and a threshold (the prox of
:math:`\lambda R`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ._validation import check_float_tensor, check_positive_int
from .dictionaries.base import Dictionary, Operator
from .differentiation import BACKWARD_METHODS, implicit_code
from .result import SolveResult
from .solvers import LCA, SOLVERS, Solver, get_solver
from .thresholds import THRESHOLDS, SoftThreshold, Threshold, get_threshold

__all__ = ["SparseReconstruction", "DIFFERENTIATION_MODES"]

#: how gradients flow through the solve: autograd through every iteration, the implicit function theorem at the
#: solution (memory independent of the iteration count), or autograd through the last ``truncate_steps`` iterations
DIFFERENTIATION_MODES = ("unroll", "implicit", "truncated")


def _as_solver(solver: Solver | type[Solver] | str) -> Solver:
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, type) and issubclass(solver, Solver):
        return solver()
    if isinstance(solver, str):
        return get_solver(solver)
    raise TypeError(f"solver must be a Solver instance, a Solver class or one of {sorted(SOLVERS)}, "
                    f"got {type(solver).__name__}")


def _as_threshold(threshold: Threshold | str | None, lam: float | None) -> Threshold:
    if isinstance(threshold, Threshold):
        if lam is not None:
            raise ValueError("give lam= only together with a threshold name, not with a Threshold instance")
        return threshold
    if threshold is None:
        return SoftThreshold(0.1 if lam is None else lam)
    if isinstance(threshold, str):
        return get_threshold(threshold, **({} if lam is None else {"lam": lam}))
    raise TypeError(f"threshold must be a Threshold instance or one of {sorted(THRESHOLDS)}, "
                    f"got {type(threshold).__name__}")


class SparseReconstruction(nn.Module):
    r"""Sparse reconstruction layer: :math:`z = P u^\star (+ x)`, :math:`u^\star` minimising
    :math:`\tfrac12\|Pu - x\|^2 + \lambda R(u)`.

    Example::

        layer = SparseReconstruction(dictionary=LinearDictionary(n_features=64, n_atoms=128),
                                     solver=FISTA(max_iter=200, tol=1e-6),
                                     threshold=SoftThreshold(lam=0.1), residual=False)
        z = layer(x)             # (B, 64) -> (B, 64)
        res = layer.solve(x)     # res.code (B, 128), res.n_iter, res.converged (B,)

    Args:
        dictionary: the dictionary :math:`P` (static, or dynamic with a ``context`` at call time).
        solver: a :class:`Solver` instance, class, or name (``"ista"``, ``"fista"``, ``"lca"``).
        threshold: a :class:`Threshold` instance or name (``"soft"``, ...); default soft threshold.
        lam: :math:`\lambda` when ``threshold`` is a name (or ``None``).
        residual: add the input to the output (:math:`z = Pu^\star + x`, the VARS form).
        differentiation: how gradients flow through the solve: ``"unroll"`` (autograd through every iteration),
            ``"implicit"`` (solve without a graph, then differentiate the fixed-point condition
            :math:`u^\star = T(u^\star)` of one proximal-gradient step, see :mod:`sparsecode.differentiation`;
            exact at convergence, memory independent of the iteration count) or ``"truncated"`` (autograd through
            the last ``truncate_steps`` iterations only).
        truncate_steps: the number of differentiated iterations for ``"truncated"``.
        backward_method: how the ``"implicit"`` backward pass solves its linear system, ``"cg"`` (conjugate
            gradients; soft, non-negative and hard thresholds) or ``"fixed_point"`` (any threshold).
        backward_max_iter, backward_tol: iterations and relative tolerance of that solve.
        check_finite: raise on NaN/Inf inputs (one reduction per call).
    """

    def __init__(
        self,
        dictionary: Dictionary,
        solver: Solver | type[Solver] | str = "fista",
        threshold: Threshold | str | None = None,
        *,
        lam: float | None = None,
        residual: bool = False,
        differentiation: str = "unroll",
        truncate_steps: int | None = None,
        backward_method: str = "cg",
        backward_max_iter: int = 1000,
        backward_tol: float = 1e-10,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(dictionary, Dictionary):
            raise TypeError(f"dictionary must be a sparsecode Dictionary, got {type(dictionary).__name__}")
        if differentiation not in DIFFERENTIATION_MODES:
            raise ValueError(f"differentiation must be one of {DIFFERENTIATION_MODES}, got {differentiation!r}")
        if differentiation == "truncated":
            check_positive_int(truncate_steps, "truncate_steps")
        elif truncate_steps is not None:
            raise ValueError(f"truncate_steps is only used with differentiation='truncated', "
                             f"got differentiation={differentiation!r}")
        if backward_method not in BACKWARD_METHODS:
            raise ValueError(f"backward_method must be one of {BACKWARD_METHODS}, got {backward_method!r}")
        check_positive_int(backward_max_iter, "backward_max_iter")
        if isinstance(backward_tol, bool) or not isinstance(backward_tol, (int, float)) or not backward_tol > 0:
            raise ValueError(f"backward_tol must be a positive number, got {backward_tol!r}")
        self.dictionary = dictionary
        self.solver = _as_solver(solver)
        if differentiation == "implicit" and not self.solver.converges_to_minimiser:
            raise ValueError(f"differentiation='implicit' needs a solver that converges to the minimiser; "
                             f"{type(self.solver).__name__} does not (use 'unroll' or 'truncated')")
        self.truncate_steps = truncate_steps
        self.backward_method, self.backward_max_iter, self.backward_tol = backward_method, backward_max_iter, \
            backward_tol
        self.threshold = _as_threshold(threshold, lam)
        self.residual = residual
        self.differentiation = differentiation
        self.check_finite = check_finite

    def bind(self, context: Any = None) -> Operator:
        """The dictionary's operator for this batch (dynamic dictionaries need ``context``)."""
        if self.dictionary.is_dynamic and context is None:
            raise ValueError(f"{type(self.dictionary).__name__} is dynamic: pass its context (e.g. the tokens)")
        return self.dictionary.bind(context)

    def _check_input(self, x: torch.Tensor, op: Operator) -> None:
        check_float_tensor(x, "x", min_ndim=1, finite=self.check_finite)
        check = getattr(op, "check_signal", None) or self.dictionary.check_signal
        check(x, "x")

    def solve(self, x: torch.Tensor, context: Any = None, *, init: torch.Tensor | None = None,
              trace: bool = False) -> SolveResult:
        r"""Solve for :math:`u^\star` and return the full :class:`SolveResult` (code, iterations, convergence,
        optional trace)."""
        op = self.bind(context)
        self._check_input(x, op)
        return self._solve(op, x, init=init, trace=trace)

    def _solve(self, op: Operator, x: torch.Tensor, *, init: torch.Tensor | None = None,
               trace: bool = False) -> SolveResult:
        if self.differentiation == "truncated":
            return self.solver.solve(op, x, self.threshold, init=init, trace=trace, grad_steps=self.truncate_steps)
        if self.differentiation == "unroll" or not torch.is_grad_enabled():
            return self.solver.solve(op, x, self.threshold, init=init, trace=trace)
        with torch.no_grad():
            result = self.solver.solve(op, x, self.threshold, init=init, trace=trace)
        L = op.lipschitz() if isinstance(self.solver, LCA) else self.solver.lipschitz(op, x)
        code = implicit_code(op, x, self.threshold, result.code, L.to(result.code.dtype),
                             method=self.backward_method, max_iter=self.backward_max_iter, tol=self.backward_tol)
        return replace(result, code=code)

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        r""":math:`z = P u^\star` (:math:`+\,x` when ``residual``)."""
        op = self.bind(context)
        self._check_input(x, op)
        code = self._solve(op, x).code
        z = op.decode(code)
        return z + x if self.residual else z

    def extra_repr(self) -> str:
        extra = f", truncate_steps={self.truncate_steps}" if self.differentiation == "truncated" else ""
        return f"residual={self.residual}, differentiation={self.differentiation!r}{extra}"
