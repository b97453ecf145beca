r"""Coordinate descent: cyclic exact minimisation over one coefficient at a time, with the Gram matrix (Friedman,
Hastie, Höfling & Tibshirani 2007; the algorithm of scikit-learn's ``lasso_cd`` and of glmnet), on the CPU.

With :math:`G = P^\top P`, :math:`b = P^\top x` and the correlations :math:`c = b - Gu`, the objective restricted to
coefficient :math:`j` is minimised by

.. math:: u_j \leftarrow T_{\lambda/G_{jj}}\!\big(u_j + c_j/G_{jj}\big),

after which :math:`c` moves by :math:`-(\Delta u_j)\,G_{:j}`. A coefficient that stays at zero costs one
comparison, so a sweep over every atom costs :math:`O(m\,(1 + \text{changes}))` per sample: sparse codes are cheap,
whatever the batch. Sweeps over every atom alternate with sweeps over the support alone (glmnet's active-set
strategy); each sample stops on its own KKT test. The loop over samples and coordinates is one compiled function
(numba, :mod:`._cd_kernel`), so a batch costs no Python work per sample; the samples are independent, and a batch of
at least :data:`MIN_ROWS_PER_THREAD` rows per thread is split over ``torch.get_num_threads()`` threads (the loop
releases the GIL; torch's OpenMP workers spin on the cores for a while after a parallel product, so the split gains
most with ``OMP_WAIT_POLICY=PASSIVE``).

Coordinate descent converges for every convex :math:`\ell_1` problem (Tseng 2001); it is fastest when the codes
are sparse and the atoms not too coherent. On strongly coherent dictionaries at small :math:`\lambda` it needs many
sweeps, and :class:`~sparsecode.solvers.admm.ADMM` is usually faster.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch

from ..dictionaries.base import Operator
from ..objective import per_sample_max_abs
from ..result import SolveResult
from ..thresholds import Threshold
from .base import Solver, State, _check_exact_lasso, _only_positive, _scalar_lam

__all__ = ["CoordinateDescent"]

#: a batch is split over torch's threads (``torch.get_num_threads()``) in blocks of at least this many rows
MIN_ROWS_PER_THREAD = 64


def _kernel():
    """The compiled loop, imported on first use (numba is optional)."""
    try:
        from ._cd_kernel import lasso_cd_batch
    except ImportError as error:  # pragma: no cover - exercised only without numba
        raise ImportError("CoordinateDescent needs numba: pip install 'sparsecode[cd]' (or pip install numba)") \
            from error
    return lasso_cd_batch


class CoordinateDescent(Solver):
    r"""Lasso (and non-negative Lasso) by cyclic coordinate descent with the Gram matrix, one compiled CPU loop
    over the batch (see the module docstring).

    Needs numba (``pip install sparsecode[cd]``), CPU tensors, a single dense dictionary, signals
    ``(B, n_features)`` in float32 or float64, a :class:`~sparsecode.thresholds.SoftThreshold` or
    :class:`~sparsecode.thresholds.NonNegSoftThreshold` with a scalar :math:`\lambda`, and a solve without an
    autograd graph (``torch.no_grad()``, or ``SparseReconstruction(..., differentiation="implicit")``: the result
    is the minimiser, so implicit differentiation applies).

    Args:
        max_iter: the most sweeps per sample (a sweep over every atom or over the support).
        tol: a sample stops when its KKT residual (:meth:`~sparsecode.thresholds.Threshold.kkt_residual`),
            divided by :math:`\|P^\top x\|_\infty`, is :math:`\le` ``tol`` after a sweep over every atom;
            ``None``: the square root of the dtype's machine epsilon (1.5e-8 in float64, 3.5e-4 in float32).
        support_sweeps: sweep the support alone between sweeps over every atom (``False``: plain cyclic sweeps,
            the iterates of :meth:`step`).

    ``init`` (a code to start from, e.g. the previous frame's) is supported. ``SolveResult.n_iter_per_sample``
    counts each sample's sweeps, ``n_iter`` their maximum; ``converged`` is the stopping test, passed on correlations
    recomputed from the final codes.
    """

    def __init__(self, max_iter: int = 1000, tol: float | None = None, *, support_sweeps: bool = True) -> None:
        super().__init__(max_iter=max_iter, tol=tol)
        if not isinstance(support_sweeps, bool):
            raise TypeError(f"support_sweeps must be a bool, got {type(support_sweeps).__name__}")
        self.support_sweeps = support_sweeps

    # --- one sweep: the Solver interface ------------------------------------------------------------------------------
    def init_state(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                   L: torch.Tensor, u0: torch.Tensor) -> State:
        """The code to start from (copied: the sweeps update it in place)."""
        return {"u": u0.detach().to(b.dtype).clone(memory_format=torch.contiguous_format)}

    def step(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold, L: torch.Tensor,
             state: State, need_measure: bool = False) -> tuple[State, torch.Tensor | None]:
        """One sweep over every atom, in order, for every sample; with ``need_measure`` the KKT residual after it
        (relative measures are the caller's)."""
        _check_exact_lasso(op, x, threshold, False, None, type(self).__name__)
        gram = op.gram_matrix().to(b.dtype)
        u = state["u"].clone()
        self._run(gram, b, u, threshold, torch.full((b.shape[0],), -1.0, dtype=b.dtype), 1, False)
        measure = threshold.kkt_residual(u, u @ gram - b) if need_measure else None
        return {"u": u}, measure

    # --- the solve ----------------------------------------------------------------------------------------------------
    def solve(self, op: Operator, x: torch.Tensor, threshold: Threshold, *, init: torch.Tensor | None = None,
              trace: bool = False, grad_steps: int | None = None) -> SolveResult:
        r"""The minimiser of :math:`\tfrac12\|Pu - x\|^2 + \lambda R(u)` for each sample of ``x``, up to ``tol``
        (see the class docstring for what is needed). ``trace`` and ``grad_steps`` are not supported."""
        name = type(self).__name__
        _check_exact_lasso(op, x, threshold, trace, grad_steps, name)
        with torch.no_grad():
            b = op.encode(x)
            gram = op.gram_matrix().to(b.dtype)
            code = self.init_state(op, x, b, threshold, torch.ones((), dtype=b.dtype),
                                   self.initial_code(op, b, threshold, init))["u"]
            if init is not None and not bool(torch.isfinite(code).all()):
                raise ValueError(f"{name}: init must be finite")
            scale = per_sample_max_abs(b).clamp_min(torch.finfo(b.dtype).tiny)
            tol = self.tol if self.tol is not None else math.sqrt(torch.finfo(b.dtype).eps)
            sweeps, converged = self._run(gram, b, code, threshold, tol * scale, self.max_iter, self.support_sweeps)
        return SolveResult(code=code, n_iter=int(sweeps.max()) if sweeps.numel() else 0, converged=converged,
                           n_iter_per_sample=sweeps)

    def _run(self, gram: torch.Tensor, b: torch.Tensor, u: torch.Tensor, threshold: Threshold,
             thresholds: torch.Tensor, max_sweeps: int, support_sweeps: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the compiled loop on ``u`` in place; returns the sweeps per sample and whether each met its
        threshold (tested on correlations recomputed from its code)."""
        if b.device.type != "cpu":
            raise ValueError(f"{type(self).__name__} runs on the CPU (a compiled loop over samples and atoms), got "
                             f"tensors on {b.device}; on a GPU use ADMM, SpaRSA, FISTA or Homotopy")
        kernel = _kernel()
        n = b.shape[0]
        sweeps = torch.zeros(n, dtype=torch.long)
        converged = torch.zeros(n, dtype=torch.bool)
        arrays = (gram.contiguous().numpy(), b.contiguous().numpy(), u.numpy(),
                  thresholds.to(b.dtype).contiguous().numpy(), sweeps.numpy(), converged.numpy())
        lam = _scalar_lam(threshold, b).numpy()[()]  # a NumPy scalar of the codes' dtype
        positive = _only_positive(threshold)

        def run(rows: slice) -> None:
            G, B, U, T, S, C = arrays
            C[rows] = kernel(G, B[rows], U[rows], lam, positive, T[rows], max_sweeps, support_sweeps, S[rows])

        # the loop releases the GIL: blocks of rows on torch's threads (samples are independent, so the codes do
        # not depend on the split)
        workers = min(torch.get_num_threads(), n // MIN_ROWS_PER_THREAD)
        if workers > 1:
            bounds = [n * k // workers for k in range(workers + 1)]
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]))
        elif n:
            run(slice(0, n))
        return sweeps, converged

    def extra_repr(self) -> str:
        text = f"max_iter={self.max_iter}, tol={self.tol}"
        return text + ("" if self.support_sweeps else ", support_sweeps=False")

