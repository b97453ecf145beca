r"""Learned ISTA (LISTA-style): ISTA with a learnable Gram adjustment, threshold scale and step size per step.

For a dense bound operator with Gram matrix :math:`K = P^\top P` (``m × m`` per batch entry / head), threshold
:math:`T_\tau` (the threshold's prox at level :math:`\tau`) and :math:`b = P^\top x`:

.. math::
    \tilde K = A K A,\qquad \lambda' = s_\lambda \lambda,\qquad
    \tilde L = L / s_L,\quad L = \max_i \textstyle\sum_j |K_{ij}| + 1 \ (\text{detached}),

    u_0 = T_{\lambda'}(b),\qquad
    u_{k+1} = T_{\lambda'/\tilde L}\big(u_k - (\tilde K u_k - b)/\tilde L\big),

with the learnable :math:`A` (``learned_k``, initialised to the identity), :math:`s_\lambda` (``learned_lam``, init 1)
and :math:`s_L` (``learned_L``, init 1). With ``SmoothSoftThreshold`` (:math:`T_\tau(v) =
\operatorname{sign}(v)\,\mathrm{GELU}(|v| - \tau)`) this is exactly the update of the released VARS-D code (the
parameter names match its checkpoints); with ``SoftThreshold``, :math:`A = I`, unit scales and
``lipschitz="operator"`` it is plain ISTA started from :math:`T_\lambda(P^\top x)`.

Codes are row vectors. Once per solve the solver forms :math:`M = I - \tilde K^\top / \tilde L` (with
:math:`\tilde K^\top = A^\top K A^\top`, :math:`K` symmetric, each product one folded matrix multiply) and
:math:`b / \tilde L`; a step's gradient move is then one batched multiply-add ``u @ M + b/L̃``. These belong to one
call: :meth:`LearnedISTA.plan` returns them with the operator as a :class:`LearnedPlan`, the operator the iteration
runs on, so that nothing of a solve is kept on the module (concurrent and nested solves of one module stay
independent, and ``torch.compile`` sees no per-call tensors among the module's attributes).

A fixed number of steps with one shared plan entry (not ``per_step``), the soft or the smoothed soft threshold,
stacked codes, no ``tol``, trace, ``grad_steps`` or ``compile_step``, differentiated outside autocast, runs as one
autograd node (:func:`~sparsecode.solvers._unrolled.unrolled_smooth_ista` /
:func:`~sparsecode.solvers._unrolled.unrolled_soft_ista`): the loop's operations in the same order (the same codes
to the bit), the loop's derivatives with :math:`\bar M` accumulated in one buffer and no per-step threshold nodes
(the released VARS-SD step: 0.84× the time, a fraction of the page faults).
"""
from __future__ import annotations

import torch
from torch import nn

from .._validation import check_positive_int
from ..dictionaries.dense import DenseOperator
from ..objective import per_sample_max_abs
from ..result import SolveResult
from ..thresholds import SmoothSoftThreshold, SoftThreshold
from ._unrolled import unrolled_smooth_ista, unrolled_soft_ista
from .base import Solver, State

__all__ = ["LearnedISTA", "LearnedPlan", "LEARNED_STEP_SIZES"]

#: how :math:`L` is obtained: the released bound (max row l1 norm of the Gram + 1) or the operator's own bound
LEARNED_STEP_SIZES = ("row_sum_plus_one", "operator")


def _sandwich(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    r""":math:`A G A` for one ``(m, m)`` matrix :math:`A` and a batch of ``(*batch, m, m)`` matrices :math:`G`.

    Both products are single folded matrix multiplies: :math:`GA` stacks the batch into rows, and
    :math:`A(GA) = ((GA)^\top A^\top)^\top` does the same on the transposed blocks.
    """
    if a.ndim != 2 or g.ndim < 3:
        return a @ g @ a
    m = g.shape[-1]
    ga = (g.reshape(-1, m) @ a).reshape(g.shape)
    return (ga.transpose(-1, -2).reshape(-1, m) @ a.transpose(-1, -2)).reshape(g.shape).transpose(-1, -2)


class LearnedPlan:
    r"""One solve of :class:`LearnedISTA`: the dense operator and, per plan entry (one, or one per step with
    ``per_step``), the step matrix :math:`M = I - \tilde K^\top/\tilde L`, :math:`1/\tilde L` and the threshold scale
    :math:`s_\lambda`; also the offsets :math:`b/\tilde L` and the step counter of that solve.

    It stands in for the operator in the solver's loop (encode, decode, Gram and the other operator methods are the
    wrapped operator's) and is built afresh by every :meth:`LearnedISTA.solve`.

    Args:
        owner: the solver whose parameters the entries were built from.
        op: the bound dense operator.
        entries: ``(M, 1/L̃, s_λ)`` per plan entry.
    """

    def __init__(self, owner: "LearnedISTA", op: DenseOperator,
                 entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        self.owner, self.op, self.entries = owner, op, entries
        # per entry: (b, b/L̃) for the last b seen
        self.offsets: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(entries)
        self.step_index = 0

    def __getattr__(self, name: str):
        # only reached for names the plan does not define: the operator's methods and attributes
        if name in ("owner", "op", "entries", "offsets", "step_index"):
            raise AttributeError(name)  # not yet set (during construction or unpickling): no recursion
        return getattr(self.op, name)

    def next_entry(self) -> int:
        """The index of the next step's entry (the last one again once the steps outnumber the entries). A single
        entry is read without the step counter, so that a compiled step does not depend on the step's number."""
        if len(self.entries) == 1:
            return 0
        index = min(self.step_index, len(self.entries) - 1)
        self.step_index += 1
        return index

    def offset(self, b: torch.Tensor, index: int) -> torch.Tensor:
        """b/L̃ of entry ``index``, built once per entry (and again if the loop hands over another ``b``)."""
        cached = self.offsets[index]
        if cached is None or cached[0] is not b:
            cached = (b, b * self.entries[index][1])
            self.offsets[index] = cached
        return cached[1]


class LearnedISTA(Solver):
    r"""LISTA-style solver reproducing the released VARS-D update (see the module docstring).

    Args:
        n_atoms: the number of atoms :math:`m` (size of ``learned_k``).
        max_iter: number of steps (5 in VARS-D).
        tol: optional per-sample stopping tolerance (see :class:`~sparsecode.solvers.base.Solver`).
        per_step: separate ``learned_k``/``learned_lam``/``learned_L`` for every step (LISTA proper; the start
            :math:`u_0` uses step 0's threshold scale); default one shared set (the original).
        lipschitz: ``"row_sum_plus_one"`` (the released :math:`L`) or ``"operator"`` (``op.lipschitz()``).
        device, dtype: where to build the parameters.
        compile_step: run each step through ``torch.compile`` (see :class:`~sparsecode.solvers.base.Solver`).
    """

    converges_to_minimiser = False

    def __init__(self, n_atoms: int, max_iter: int = 5, tol: float | None = None, *, per_step: bool = False,
                 lipschitz: str = "row_sum_plus_one", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, compile_step: bool = False) -> None:
        super().__init__(max_iter, tol, compile_step=compile_step)
        check_positive_int(n_atoms, "n_atoms")
        if lipschitz not in LEARNED_STEP_SIZES:
            raise ValueError(f"lipschitz must be one of {LEARNED_STEP_SIZES}, got {lipschitz!r}")
        lead = (max_iter,) if per_step else ()
        kw = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.learned_k = nn.Parameter(torch.eye(n_atoms, **kw).expand(lead + (n_atoms, n_atoms)).clone())
        self.learned_lam = nn.Parameter(torch.ones(lead + (1,), **kw))
        self.learned_L = nn.Parameter(torch.ones(lead + (1,), **kw))
        self.n_atoms, self.per_step, self.lipschitz_mode = n_atoms, per_step, lipschitz

    def _param(self, p: torch.Tensor, k: int) -> torch.Tensor:
        return p[k] if self.per_step else p

    def _base_lipschitz(self, op: DenseOperator, gram: torch.Tensor) -> torch.Tensor:
        if self.lipschitz_mode == "operator":
            return op.lipschitz().detach()
        L = gram.detach().abs().sum(dim=-1).amax(dim=-1) + 1  # (*batch,)
        return L.reshape(L.shape + ((1, 1) if op.stacked else (1,)))

    def _check_operator(self, op) -> None:
        if not isinstance(op, DenseOperator):
            raise TypeError(f"LearnedISTA needs a dense bound operator (its Gram matrix), got {type(op).__name__}")
        if op.n_atoms != self.n_atoms:
            raise ValueError(f"LearnedISTA was built for n_atoms={self.n_atoms}, the operator has {op.n_atoms}")

    def plan(self, op: DenseOperator) -> LearnedPlan:
        """The steps of one solve on the bound dense operator ``op`` (see :class:`LearnedPlan`); :meth:`solve` calls
        it, and :meth:`init_state` / :meth:`step` run on what it returns."""
        if isinstance(op, LearnedPlan):
            if op.owner is self:
                return op
            op = op.op  # another solver's plan: plan its operator afresh
        self._check_operator(op)
        gram = op.gram_matrix()
        L = self._base_lipschitz(op, gram)
        n_plans = self.max_iter if self.per_step else 1
        plan = []
        eye = torch.eye(self.n_atoms, dtype=gram.dtype, device=gram.device)
        for k in range(n_plans):
            a = self._param(self.learned_k, k).to(gram.dtype)
            inv_L_tilde = self._param(self.learned_L, k).to(gram.dtype) / L  # 1 / L̃
            # M = I - K̃ᵀ/L̃ with K̃ᵀ = (A K A)ᵀ = Aᵀ K Aᵀ (K symmetric), so that one step is u M + b/L̃
            k_tilde_t = _sandwich(a.transpose(-1, -2), gram)
            # 1/L̃ broadcasts against codes; against the (*batch, m, m) matrices it needs a second trailing axis
            inv_for_matrix = inv_L_tilde if op.stacked or inv_L_tilde.ndim == 0 else inv_L_tilde.unsqueeze(-1)
            step_matrix = eye - k_tilde_t * inv_for_matrix
            plan.append((step_matrix, inv_L_tilde, self._param(self.learned_lam, k).to(gram.dtype)))
        return LearnedPlan(self, op, plan)

    @staticmethod
    def _planned(op) -> LearnedPlan:
        if not isinstance(op, LearnedPlan):
            raise TypeError(f"LearnedISTA iterates on the plan of a solve (solver.plan(op)), got {type(op).__name__}")
        return op

    def _fused_step(self, op: DenseOperator, step_matrix: torch.Tensor, offset: torch.Tensor,
                    u: torch.Tensor) -> torch.Tensor:
        """u M + b/L̃ (one batched multiply-add for stacked codes)."""
        if op.stacked and u.ndim >= 3 and step_matrix.ndim >= 3 and u.shape == offset.shape \
                and step_matrix.shape[:-2] == u.shape[:-2]:
            rows, m = u.shape[-2], u.shape[-1]
            out = torch.baddbmm(offset.reshape(-1, rows, m), u.reshape(-1, rows, m),
                                step_matrix.reshape(-1, m, m))
            return out.reshape(u.shape)
        if op.stacked or step_matrix.ndim == 2:
            return u @ step_matrix + offset
        return (u.unsqueeze(-2) @ step_matrix).squeeze(-2) + offset

    def lipschitz(self, op, x) -> torch.Tensor:
        """The first step's :math:`\\tilde L` (of the plan ``op``, or of a plan built for the operator ``op``)."""
        return 1 / self.plan(op).entries[0][1]

    def initial_code(self, op, b, threshold, init):
        if init is not None:
            return super().initial_code(op, b, threshold, init)
        return threshold.prox(b, self._planned(op).entries[0][2])

    def init_state(self, op, x, b, threshold, L, u0) -> State:
        self._planned(op).step_index = 0
        return {"u": u0}

    def step(self, op, x, b, threshold, L, state, need_measure):
        plan = self._planned(op)
        index = plan.next_entry()
        step_matrix, inv_L_tilde, lam_scale = plan.entries[index]
        u = state["u"]
        v = self._fused_step(plan.op, step_matrix, plan.offset(b, index), u)
        u_new = threshold.prox(v, lam_scale * inv_L_tilde)
        measure = per_sample_max_abs((u - u_new) / inv_L_tilde) if need_measure else None
        return {"u": u_new}, measure

    def _fused_unrolled_solve(self, op, x, b, threshold, L, u0) -> SolveResult | None:
        # one plan entry (not per_step), this class's own step and state, the soft or the smoothed soft threshold,
        # stacked codes of a batch of step matrices, outside autocast
        if (type(threshold) not in (SoftThreshold, SmoothSoftThreshold) or len(op.entries) != 1
                or type(self).step is not LearnedISTA.step or type(self).init_state is not LearnedISTA.init_state
                or type(self).code is not Solver.code or torch.is_autocast_enabled(b.device.type)):
            return None
        step_matrix, inv_L_tilde, lam_scale = op.entries[0]
        offset = op.offset(b, 0)
        if not (op.op.stacked and u0.ndim >= 3 and step_matrix.ndim >= 3 and u0.shape == offset.shape == b.shape
                and step_matrix.shape[:-2] == u0.shape[:-2] and u0.dtype == step_matrix.dtype == offset.dtype):
            return None
        thr = threshold._lam_like(b) * (lam_scale * inv_L_tilde)  # as prox(v, lam_scale / L̃) forms it
        if thr.ndim > b.ndim or thr.dtype != b.dtype:
            return None
        rows, m = u0.shape[-2], u0.shape[-1]
        matrices, offsets = step_matrix.reshape(-1, m, m), offset.reshape(-1, rows, m)
        if not any(v.requires_grad for v in (u0, matrices, offsets, thr)):
            return None
        fused = unrolled_smooth_ista if type(threshold) is SmoothSoftThreshold else unrolled_soft_ista
        code = fused(u0, matrices, offsets, thr, self.max_iter)
        return self._fixed_steps_result(x, code)

    def solve(self, op, x, threshold, *, init=None, trace=False, grad_steps=None) -> SolveResult:
        """Run the learned iteration on a dense bound operator (see the module docstring)."""
        return super().solve(self.plan(op), x, threshold, init=init, trace=trace, grad_steps=grad_steps)

    def extra_repr(self) -> str:
        return (f"n_atoms={self.n_atoms}, max_iter={self.max_iter}, per_step={self.per_step}, "
                f"lipschitz={self.lipschitz_mode!r}")
