r"""The shared iteration loop of every solver.

A solver minimises :math:`F(u) = \tfrac12\|Pu - x\|^2 + \lambda R(u)` for a bound dictionary (an
:class:`~sparsecode.dictionaries.base.Operator`), a threshold (the prox of :math:`\lambda R`) and a signal batch ``x``
whose first dimension indexes samples. Subclasses define one iteration (:meth:`Solver.init_state`,
:meth:`Solver.step`, :meth:`Solver.code`); this base class runs it:

* a fixed number of steps (``tol=None``: what a network layer wants, no host synchronisation), or
* until every sample's optimality measure, relative to :math:`\|P^\top x\|_\infty`, is :math:`\le` ``tol``.
  Converged samples stop changing (their state is frozen) while the others go on; the loop ends when all have
  converged or ``max_iter`` is reached. A sample whose starting code is 0 and already optimal (the KKT conditions
  hold exactly at 0, e.g. :math:`\|P^\top x\|_\infty \le \lambda` for the Lasso) is converged after 0 iterations.
  Without a tolerance, the CPU loop over rows (no autograd graph) leaves such samples out too when the iteration
  would keep their code at 0 (proximal gradient, SpaRSA, ADMM): the same codes for less work.
* With ``polish_every`` (and a tolerance), every that many iterations each active sample also tries the exact
  minimiser on the face of its current code (:mod:`.polish`: one small linear system per sample); a sample whose
  polished code passes the KKT test, residual :math:`\le` ``tol`` :math:`\cdot\|P^\top x\|_\infty`, is done with
  that code. The support of a sparse code settles long before the iterates converge, so this ends most samples
  early; the others go on as before (up to the rounding of products over a smaller batch).

The step size is :math:`1/L` with :math:`L` from ``op.lipschitz()`` unless ``step`` is given.

With ``compile_step=True`` the loop calls one iteration (:meth:`Solver.step`) through ``torch.compile`` (compiled
once per solver class and kind of input, and reused by every instance; shapes are dynamic, so batches of any size
share the compiled code; the first iteration of a loop runs eagerly and builds the operator's caches). The loop itself
stays in Python. On the CPU this fuses the elementwise passes of an iteration, which cost more
than its products for small problems; the first call compiles (seconds), later calls run from the cache.
"""
from __future__ import annotations

import abc
import types
from typing import Callable

import torch
from torch import nn

from .._reductions import per_sample_is_zero, per_sample_view
from .._validation import check_positive_int
from ..dictionaries.base import Operator
from ..dictionaries.dense import DenseOperator
from ..objective import kkt_residual, objective, per_sample_max_abs
from ..result import SolveResult, SolveTrace
from ..thresholds import NonNegSoftThreshold, SoftThreshold, Threshold
from .polish import SupportPolish

__all__ = ["Solver", "INITS"]

#: how the code is initialised: zeros, :math:`P^\top x`, or :math:`\operatorname{prox}(P^\top x)` (the VARS start)
INITS = ("zeros", "encode", "prox_encode")

State = dict[str, torch.Tensor]

#: the size of a block of rows in the CPU loop over independent rows (about 1 MiB of codes: an iteration's tensors
#: stay in cache; 256 KiB to 2 MiB measured within 10% of each other on a 100 × 200 design)
BLOCK_BYTES = 1 << 20


#: the compiled :meth:`Solver.step` of each solver class and variant (``compile_step=True``)
_COMPILED_STEPS: dict[tuple, Callable] = {}


def _compiled_step(cls: type, variant: tuple) -> Callable:
    """``torch.compile`` of ``cls.step`` for one ``variant`` of its inputs, built on first use and shared by the
    class's instances.

    Each variant compiles a copy of the function with a code object of its own: dynamo keeps compiled graphs, and
    its limit of 8 recompilations, per code object, and the dtypes, the measure on or off and the batch of one
    (a size dynamo always specialises) would otherwise exhaust it in a process that solves in several ways.
    """
    key = (cls, variant)
    fn = _COMPILED_STEPS.get(key)
    if fn is None:
        step = cls.step
        clone = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, step.__defaults__,
                                   step.__closure__)
        clone.__kwdefaults__, clone.__qualname__ = step.__kwdefaults__, step.__qualname__
        fn = _COMPILED_STEPS[key] = torch.compile(clone, dynamic=True)
    return fn


def _require_single_dense(op: Operator, x: torch.Tensor, who: str) -> None:
    """A clear error unless ``op`` is one dense matrix (no stacked or per-head batch of matrices) and ``x`` holds
    signals ``(B, n_features)``: what the solves on each sample's support (the polish, homotopy) need."""
    if not isinstance(op, DenseOperator) or op.stacked or op.batch_shape or x.ndim != 2:
        raise ValueError(f"{who} needs a single dense dictionary and signals of shape (B, n_features), got "
                         f"{type(op).__name__} and x of shape {tuple(x.shape)}")


def _check_exact_lasso(op: Operator, x: torch.Tensor, threshold: Threshold, trace: bool, grad_steps: int | None,
                       who: str) -> None:
    """The clear errors of the solvers that run their own loop on the Lasso (homotopy, coordinate descent): an
    l1 threshold with a scalar lambda, a single dense dictionary, float32/float64 signals, no trace, no
    truncated backpropagation and no autograd graph to record."""
    if trace:
        raise ValueError(f"{who} runs its own loop without iterates to trace: trace=True is not supported")
    if grad_steps is not None:
        raise ValueError(f"{who} is not differentiated through its iterations: grad_steps is not supported")
    if type(threshold) not in (SoftThreshold, NonNegSoftThreshold):
        raise ValueError(f"{who} needs a SoftThreshold or NonNegSoftThreshold, got {type(threshold).__name__}")
    if threshold.lam.numel() != 1:
        raise ValueError(f"{who} needs a scalar lambda, got shape {tuple(threshold.lam.shape)}")
    _require_single_dense(op, x, who)
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{who} needs float32 or float64 signals (its updates accumulate rounding), got {x.dtype}")
    if torch.is_grad_enabled():
        tensors = [x, getattr(op, "weight", x), *threshold.parameters()]
        if any(t.requires_grad for t in tensors):
            raise ValueError(f"{who} runs without an autograd graph: call it under torch.no_grad() "
                             "or use SparseReconstruction(..., differentiation='implicit')")


def _only_positive(threshold: Threshold) -> bool:
    """Whether a threshold accepted by :func:`_check_exact_lasso` is the non-negative Lasso's."""
    return isinstance(threshold, NonNegSoftThreshold)


def _scalar_lam(threshold: Threshold, b: torch.Tensor) -> torch.Tensor:
    """The scalar lambda of a threshold accepted by :func:`_check_exact_lasso`, as a 0-d tensor like ``b``."""
    return threshold._lam_like(b).detach().reshape(())


def _zero_start_is_optimal(start: torch.Tensor, b: torch.Tensor, threshold: Threshold) -> torch.Tensor:
    r"""Per sample, whether the code ``start`` is 0 and the KKT conditions hold exactly there for
    :math:`b = P^\top x` (:meth:`~sparsecode.thresholds.Threshold.zero_is_optimal`), ``(B,)`` bool."""
    return per_sample_is_zero(start) & threshold.zero_is_optimal(b.detach())


def _per_sample_where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(per_sample_view(mask, new), new, old)


def _gradient_step(op: Operator, u: torch.Tensor, b: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    r""":math:`u - (P^\top P u - b)/L`, fused into one multiply-add where the operator offers it."""
    fused = getattr(op, "gradient_step", None)
    if fused is not None:
        return fused(u, b, L)
    return u - (op.gram(u) - b) / L


def _gradient(op: Operator, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`P^\top P u - b`, fused into one multiply-add where the operator offers it."""
    fused = getattr(op, "gradient", None)
    if fused is not None:
        return fused(u, b)
    return op.gram(u) - b


def _max_abs_times(t: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    r"""Per-sample :math:`\max_i |L\,t_i|`; a scalar :math:`L` scales the ``(B,)`` maxima instead of the tensor."""
    if L.numel() == 1:
        return per_sample_max_abs(t) * L.reshape(()).to(t.dtype)
    return per_sample_max_abs(t * L)


class Solver(nn.Module, abc.ABC):
    r"""Base class of iterative sparse-coding solvers.

    Args:
        max_iter: the largest number of iterations (the exact number when ``tol`` is ``None``).
        tol: stop a sample when its optimality measure divided by :math:`\|P^\top x\|_\infty` is :math:`\le` tol.
        step: a fixed step size; ``None`` uses :math:`1/L` with :math:`L` from the dictionary.
        init: ``"zeros"``, ``"encode"`` (:math:`P^\top x`) or ``"prox_encode"``; a tensor passed to :meth:`solve`
            overrides it.
        check_every: test "all samples converged" (a host synchronisation) every this many iterations.
        polish_every: with ``tol``, try the exact minimiser on each active sample's current face every this many
            iterations and stop the samples it certifies (see the module docstring); ``None``: never. Needs an
            :math:`\ell_1`-type threshold, a single dense dictionary, signals ``(B, n_features)`` and a solve
            without an autograd graph (``torch.no_grad()``, or implicit differentiation).
        compile_step: run each iteration through ``torch.compile`` (see the module docstring); the iterates are
            those of the eager iteration up to rounding.
    """

    #: whether the iteration converges to a minimiser of the problem it is given (a learned iteration does not)
    converges_to_minimiser: bool = True

    def __init__(self, max_iter: int = 100, tol: float | None = None, *, step: float | None = None,
                 init: str = "zeros", check_every: int = 1, polish_every: int | None = None,
                 compile_step: bool = False) -> None:
        super().__init__()
        check_positive_int(max_iter, "max_iter")
        check_positive_int(check_every, "check_every")
        check_positive_int(polish_every, "polish_every", allow_none=True)
        if polish_every is not None and tol is None:
            raise ValueError("polish_every needs a tolerance (tol=...): a polished code is accepted when its KKT "
                             "residual meets tol")
        if polish_every is not None and not self.converges_to_minimiser:
            raise ValueError(f"polish_every needs a solver that minimises; {type(self).__name__} does not")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0):
            raise ValueError(f"tol must be a positive number or None, got {tol!r}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0):
            raise ValueError(f"step must be a positive number or None, got {step!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.max_iter, self.tol, self.step_size, self.init, self.check_every = max_iter, tol, step, init, check_every
        if not isinstance(compile_step, bool):
            raise TypeError(f"compile_step must be a bool, got {type(compile_step).__name__}")
        self.polish_every, self.compile_step = polish_every, compile_step

    # --- what a subclass defines --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_state(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                   L: torch.Tensor, u0: torch.Tensor) -> State:
        """The state before the first iteration, from the initial code ``u0``."""

    @abc.abstractmethod
    def step(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold, L: torch.Tensor,
             state: State, need_measure: bool) -> tuple[State, torch.Tensor | None]:
        """One iteration; returns the new state and, when asked, the per-sample optimality measure ``(B,)``."""

    def code(self, state: State, threshold: Threshold, L: torch.Tensor) -> torch.Tensor:
        """The code held by ``state`` (default: ``state["u"]``)."""
        return state["u"]

    # --- the loop -----------------------------------------------------------------------------------------------------
    def _step(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold, L: torch.Tensor,
              state: State, need_measure: bool, first: bool = False) -> tuple[State, torch.Tensor | None]:
        """One iteration as the loop runs it: :meth:`step`, compiled with ``compile_step`` except the ``first`` of a
        loop, which runs eagerly: it fills the operator's per-solve caches (Gram matrix, step matrix and offset), so
        that the compiled iteration always finds them built and keeps one variant."""
        if self.compile_step and not first:
            variant = (need_measure, b.dtype, b.device.type, b.shape[0] == 1, type(op), type(threshold))
            return _compiled_step(type(self), variant)(self, op, x, b, threshold, L, state, need_measure)
        return self.step(op, x, b, threshold, L, state, need_measure)

    def lipschitz(self, op: Operator, x: torch.Tensor) -> torch.Tensor:
        """:math:`L` as the solver uses it (``1/step`` when a step was given)."""
        if self.step_size is not None:
            return torch.tensor(1.0 / self.step_size, dtype=x.dtype, device=x.device)
        L = op.lipschitz()
        return L.to(device=x.device, dtype=x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32)

    def initial_code(self, op: Operator, b: torch.Tensor, threshold: Threshold,
                     init: torch.Tensor | None) -> torch.Tensor:
        if init is not None:
            if tuple(init.shape) != tuple(b.shape):
                raise ValueError(f"init must have the code's shape {tuple(b.shape)}, got {tuple(init.shape)}")
            return init
        if self.init == "encode":
            return b
        if self.init == "prox_encode":
            return threshold.prox(b, 1.0)
        return torch.zeros_like(b)

    def solve(self, op: Operator, x: torch.Tensor, threshold: Threshold, *, init: torch.Tensor | None = None,
              trace: bool = False, grad_steps: int | None = None) -> SolveResult:
        r"""Minimise :math:`\tfrac12\|Pu - x\|^2 + \lambda R(u)` for each sample of ``x``.

        Args:
            op: a bound dictionary (``dictionary.bind(context)``).
            x: signals, first dimension = samples.
            threshold: the prox of :math:`\lambda R`.
            init: an initial code (overrides the solver's ``init``).
            trace: record the objective and KKT residual at every iteration (costs extra products).
            grad_steps: record the autograd graph only through the iterations ``k >= max_iter - grad_steps``
                (truncated backpropagation; ``None``: every iteration).
        """
        check_positive_int(grad_steps, "grad_steps", allow_none=True)
        grad_enabled = torch.is_grad_enabled()
        b = op.encode(x)
        L = self.lipschitz(op, x)
        u0 = self.initial_code(op, b, threshold, init)
        if self.tol is None and not trace and grad_steps is None and not self.compile_step and grad_enabled:
            fused = self._fused_unrolled_solve(op, x, b, threshold, L, u0)
            if fused is not None:
                return fused
        state = self.init_state(op, x, b, threshold, L, u0)
        n_samples = x.shape[0]
        active = torch.ones(n_samples, dtype=torch.bool, device=x.device)
        converged = torch.zeros_like(active)
        iters = torch.zeros(n_samples, dtype=torch.long, device=x.device)
        scale = None  # |P^T x|_inf per sample, what the tolerance is relative to (a full pass: only with a tol)
        if self.tol is not None:
            scale = per_sample_max_abs(b.detach()).clamp_min(torch.finfo(torch.float32).tiny)
            converged = self._optimal_at_start(b, threshold, L, state)
            active = ~converged
        polisher = self._support_polish(op, x, b, threshold, L, state)
        if not trace and self._can_split_rows(op, x, b, threshold, L, state):
            return self._solve_by_rows(op, x, b, threshold, L, state, scale, converged, polisher)
        objs, kkts = [], []
        n_iter = 0
        all_optimal = self.tol is not None and not bool(active.any())
        for k in range(0 if all_optimal else self.max_iter):
            record = grad_enabled and (grad_steps is None or k >= self.max_iter - grad_steps)
            with torch.set_grad_enabled(record):
                new_state, measure = self._step(op, x, b, threshold, L, state, need_measure=self.tol is not None,
                                                first=k == 0)
            n_iter = k + 1
            if self.tol is None:
                state = new_state
                iters += 1
            else:
                # freezing converged samples is a no-op while all are active (checked for free on the CPU only:
                # elsewhere it would be a host synchronisation per iteration)
                if x.device.type == "cpu" and bool(active.all()):
                    state = new_state
                else:
                    state = {key: _per_sample_where(active, new_state[key], state[key]) for key in state}
                iters += active.long()
                now = (measure.detach() / scale) <= self.tol
                converged |= active & now
                active = active & ~now
                if polisher is not None and (k + 1) % self.polish_every == 0 and bool(active.any()):
                    with torch.no_grad():
                        idx = active.nonzero().squeeze(1)
                        done = idx.index_select(0, polisher(idx, self.code(state, threshold, L).index_select(0, idx),
                                                            b.index_select(0, idx),
                                                            self.tol * scale.index_select(0, idx)))
                        converged.index_fill_(0, done, True)
                        active.index_fill_(0, done, False)
            if trace:
                with torch.no_grad():
                    u = self.code(state, threshold, L)
                    u = u if polisher is None else polisher.apply(u)
                    objs.append(objective(op, x, u, threshold))
                    kkts.append(kkt_residual(op, x, u, threshold, b))
            if self.tol is not None and (k + 1) % self.check_every == 0 and not bool(active.any()):
                break
        result_trace = SolveTrace(torch.stack(objs), torch.stack(kkts)) if trace else None
        code = self.code(state, threshold, L)
        return SolveResult(code=code if polisher is None else polisher.apply(code), n_iter=n_iter,
                           converged=converged, n_iter_per_sample=iters, trace=result_trace, state=state)

    def _fused_unrolled_solve(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                              L: torch.Tensor, u0: torch.Tensor) -> SolveResult | None:
        """A solve of exactly ``max_iter`` iterations differentiated through every one, as one autograd node, where a
        solver has one for this operator and threshold (``None``: the loop runs; the default). Called only for
        solves without ``tol``, trace, ``grad_steps`` or ``compile_step``, with autograd recording."""
        return None

    def _fixed_steps_result(self, x: torch.Tensor, code: torch.Tensor) -> SolveResult:
        """The result of a fused solve of ``max_iter`` steps: the counters the loop reports for it (every sample ran
        every step, none is declared converged), the code as the final state."""
        n_samples = x.shape[0]
        return SolveResult(code=code, n_iter=self.max_iter,
                           converged=torch.zeros(n_samples, dtype=torch.bool, device=x.device),
                           n_iter_per_sample=torch.full((n_samples,), self.max_iter, dtype=torch.long,
                                                        device=x.device),
                           state={"u": code})

    def _optimal_at_start(self, b: torch.Tensor, threshold: Threshold, L: torch.Tensor,
                          state: State) -> torch.Tensor:
        r"""Per sample, whether the starting code is 0 and satisfies the KKT conditions exactly there (the gradient
        at 0 is :math:`-P^\top x`): then 0 is the minimiser, for a convex penalty and a solver that minimises."""
        if not (self.converges_to_minimiser and threshold.convex) or b.shape[0] == 0:
            return torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
        with torch.no_grad():
            return _zero_start_is_optimal(self.code(state, threshold, L), b, threshold)

    def _support_polish(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                        L: torch.Tensor, state: State) -> SupportPolish | None:
        """The support polish of this solve (``None`` without ``polish_every``); a clear error where polishing
        cannot apply."""
        if self.polish_every is None:
            return None
        if threshold.active_face(b[:0].detach()) is None:
            raise ValueError(f"polish_every needs an l1-type threshold (SoftThreshold, NonNegSoftThreshold), got "
                             f"{type(threshold).__name__}")
        lam = threshold.lam
        if lam.ndim > 1 or (lam.ndim == 1 and lam.numel() not in (1, b.shape[-1])):
            raise ValueError(f"polish_every needs a lambda shared by the samples (a scalar or one per atom), got "
                             f"shape {tuple(lam.shape)}")
        _require_single_dense(op, x, "polish_every")
        tensors = [x, b, L, *state.values(), *threshold.parameters(), *self.parameters()]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            raise ValueError("polish_every needs a solve without an autograd graph (torch.no_grad(), or implicit "
                             "differentiation): a polished code is not a function of the iterations")
        with torch.no_grad():
            gram = op.gram_matrix()
        return SupportPolish(gram.to(b.dtype), threshold, b.shape[0])

    # --- the same loop, faster for many independent rows on the CPU ---------------------------------------------------
    #: whether one iteration treats the rows of (x, b, state) independently given a shared operator, threshold and L
    #: (then the batch can be solved in cache-sized blocks of rows, and converged rows can leave it)
    _rows_independent: bool = False
    #: whether a sample whose start is 0 and optimal (:meth:`_optimal_at_start`) is a fixed point of :meth:`step`
    #: (its code stays exactly 0: proximal gradient from 0 when :math:`P^\top x \in \lambda\partial R(0)`), so that
    #: the loop over rows leaves it out without a tolerance too: same codes, less work
    _optimal_zero_start_is_fixed: bool = False

    def _can_split_rows(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                        L: torch.Tensor, state: State) -> bool:
        # the CPU (a per-iteration host read is free there), one dense matrix shared by all rows, scalar L and lambda,
        # and no autograd graph to record
        if not self._rows_independent or x.device.type != "cpu" or x.ndim != 2 or x.shape[0] == 0:
            return False
        weight = getattr(op, "weight", None)
        if not isinstance(op, DenseOperator) or weight is None or weight.ndim != 2 or op.stacked:
            return False
        lam = getattr(threshold, "lam", None)
        if not isinstance(lam, torch.Tensor) or lam.numel() != 1 or L.numel() != 1:
            return False
        if torch.is_grad_enabled():
            tensors = [x, b, L, lam, *state.values(), *threshold.parameters(), *self.parameters()]
            if any(t.requires_grad for t in tensors):
                return False
        return all(v.shape[:1] == x.shape[:1] for v in state.values())

    def _solve_by_rows(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                       L: torch.Tensor, state: State, scale: torch.Tensor | None,
                       converged: torch.Tensor, polisher: SupportPolish | None = None) -> SolveResult:
        """The loop of :meth:`solve` (same iterates, stopping and counters) run block of rows by block of rows, each
        block's codes about :data:`BLOCK_BYTES` so that an iteration's tensors stay in cache; with a tolerance, a row
        leaves its block at the iteration it converges."""
        n_samples = x.shape[0]
        rows_per_block = max(128, BLOCK_BYTES // max(1, b.shape[1] * b.element_size()))
        final = {key: torch.empty_like(v) for key, v in state.items()}
        converged = converged.clone()  # (with a tolerance: the samples optimal at the start)
        # without a tolerance, rows at an optimal zero start that the iteration would keep there are left out (their
        # code is the 0 that max_iter iterations return; their state is the starting one)
        fixed = None
        if self.tol is None and self._optimal_zero_start_is_fixed:
            fixed = self._optimal_at_start(b, threshold, L, state)
        iters = torch.zeros(n_samples, dtype=torch.long, device=x.device)
        n_iter = 0
        for start in range(0, n_samples, rows_per_block):
            rows = slice(start, start + rows_per_block)
            x_rows, b_rows = x[rows], b[rows]
            block = {key: v[rows] for key, v in state.items()}
            if self.tol is None:
                block = self._fixed_iterations(op, x_rows, b_rows, threshold, L, block,
                                               None if fixed is None else fixed[rows])
                iters[rows] = self.max_iter
                n_block = self.max_iter
            else:
                block, n_block = self._tolerance_loop(
                    op, x_rows, b_rows, threshold, L, block, scale[rows], converged[rows], iters[rows],
                    polisher, start)
            for key in final:
                final[key][rows] = block[key]
            n_iter = max(n_iter, n_block)
        code = self.code(final, threshold, L)
        return SolveResult(code=code if polisher is None else polisher.apply(code), n_iter=n_iter,
                           converged=converged, n_iter_per_sample=iters, trace=None, state=final)

    def _fixed_iterations(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                          L: torch.Tensor, state: State, fixed: torch.Tensor | None) -> State:
        """``max_iter`` iterations of one block of rows, leaving out the rows that ``fixed`` marks (fixed points)."""
        if fixed is not None and bool(fixed.any()):
            rows = (~fixed).nonzero().squeeze(1)
            moving = {key: v.index_select(0, rows) for key, v in state.items()}
            moving = self._fixed_iterations(op, x.index_select(0, rows), b.index_select(0, rows), threshold, L,
                                            moving, None) if rows.numel() else moving
            return {key: v.index_copy(0, rows, moving[key]) for key, v in state.items()}
        for k in range(self.max_iter):
            state, _ = self._step(op, x, b, threshold, L, state, need_measure=False, first=k == 0)
        return state

    def _tolerance_loop(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                        L: torch.Tensor, state: State, scale: torch.Tensor, converged: torch.Tensor,
                        iters: torch.Tensor, polisher: SupportPolish | None = None, offset: int = 0
                        ) -> tuple[State, int]:
        """Iterate one block until all its rows meet ``tol`` or ``max_iter``; fills the views ``converged`` and
        ``iters`` and returns the final state and the iteration count. A row leaves the working set as soon as it
        converges (its state is copied out then), so later iterations cost only what the remaining rows cost; rows
        that ``converged`` marks on entry never enter it. ``polisher``: the solve's support polish, whose row ids are
        this block's rows plus ``offset``."""
        final = {key: torch.empty_like(v) for key, v in state.items()}
        rows = (~converged).nonzero().squeeze(1)
        if rows.numel() < x.shape[0]:
            done = converged.nonzero().squeeze(1)
            for key, v in state.items():
                final[key].index_copy_(0, done, v.index_select(0, done))
            x, b, scale = (t.index_select(0, rows) for t in (x, b, scale))
            state = {key: v.index_select(0, rows) for key, v in state.items()}
        n_iter = 0
        for k in range(self.max_iter):
            if not rows.numel():
                break
            n_iter = k + 1
            state, measure = self._step(op, x, b, threshold, L, state, need_measure=True, first=k == 0)
            now = (measure.detach() / scale) <= self.tol
            if polisher is not None and n_iter % self.polish_every == 0:
                remaining = (~now).nonzero().squeeze(1)
                done = polisher(rows.index_select(0, remaining) + offset,
                                self.code(state, threshold, L).index_select(0, remaining),
                                b.index_select(0, remaining), self.tol * scale.index_select(0, remaining))
                if done.numel():
                    now = now.index_fill(0, remaining.index_select(0, done), True)
            if bool(now.any()):
                done = now.nonzero().squeeze(1)
                out = rows.index_select(0, done)
                for key in state:
                    final[key].index_copy_(0, out, state[key].index_select(0, done))
                converged.index_fill_(0, out, True)
                iters.index_fill_(0, out, n_iter)
                keep = (~now).nonzero().squeeze(1)
                rows, x, b, scale = (t.index_select(0, keep) for t in (rows, x, b, scale))
                state = {key: v.index_select(0, keep) for key, v in state.items()}
        for key in state:
            final[key].index_copy_(0, rows, state[key])
        iters.index_fill_(0, rows, n_iter)
        if not rows.numel():
            # the plain loop notices "all converged" only every check_every iterations: report its count
            n_iter = min(self.max_iter, -(-n_iter // self.check_every) * self.check_every)
        return final, n_iter

    def extra_repr(self) -> str:
        extra = ", compile_step=True" if self.compile_step else ""
        return f"max_iter={self.max_iter}, tol={self.tol}, step={self.step_size}, init={self.init!r}{extra}"
