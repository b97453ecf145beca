r"""Homotopy: the exact Lasso minimiser of every sample, reached by following its solution path from
:math:`\lambda_{\max}` down to :math:`\lambda` (the Lasso modification of LARS; Osborne, Presnell & Turlach 2000,
Efron et al. 2004).

With :math:`G = P^\top P`, :math:`b = P^\top x` and the correlations :math:`c = b - Gu`, the minimiser of
:math:`\tfrac12\|Pu - x\|^2 + t\|u\|_1` is, for every :math:`t`, characterised by an active set :math:`S` with signs
:math:`s`: :math:`c_S = t\,s_S`, :math:`|c_j| \le t` elsewhere. Between two kinks :math:`S` and :math:`s` do not
change and the path is linear: as :math:`t` decreases by :math:`\gamma`,

.. math:: u_S \mathrel{+}= \gamma\, d_S,\quad d_S = G_{SS}^{-1} s_S, \qquad c \mathrel{-}= \gamma\, a,\quad a = G d.

The next kink is the first of

* an atom :math:`j \notin S` reaching the boundary, :math:`|c_j - \gamma a_j| = t - \gamma`:
  :math:`\gamma = (t - c_j)/(1 - a_j)` (it joins with sign :math:`+1`) or :math:`(t + c_j)/(1 + a_j)` (sign
  :math:`-1`), whichever is positive and smaller;
* an atom :math:`j \in S` whose coefficient reaches zero, :math:`u_j + \gamma d_j = 0` (it leaves :math:`S`);
* :math:`t` reaching :math:`\lambda` (the sample is done).

The path starts at :math:`t = \|b\|_\infty` with :math:`u = 0` and the atom of the largest :math:`|b_j|`. For the
non-negative Lasso only the sign :math:`+1` can join.

Batched: every sample follows its own path, and one step of the solver moves every sample still on its way to its
next kink. Each sample keeps :math:`G_{SS}^{-1}` (up to :math:`K` slots, grown as needed) and updates it in
:math:`O(K^2)` per kink without a factorisation: a joining atom borders the inverse (with :math:`w = G_{SS}^{-1}
g`, :math:`g = G_{Sj}`, :math:`\sigma = G_{jj} - g^\top w`, the new inverse is the old one plus
:math:`\sigma^{-1} z z^\top`, :math:`z = (-w, 1)`), a leaving one is removed by the Schur complement
(:math:`M \leftarrow M - M_{:p} M_{p:}/M_{pp}`). One step costs one product with :math:`G` for the whole batch
plus elementwise passes; samples that reach :math:`\lambda` leave the batch.

The number of steps is the number of kinks of the longest path: about the support size plus the atoms that leave
on the way. Homotopy is therefore fastest when the codes are sparse (:math:`\lambda` near
:math:`\lambda_{\max}`) and the batch is large; for small :math:`\lambda` an iterative solver is usually faster.

The result is the minimiser up to rounding: at the end each sample's coefficients are recomputed on its support,
:math:`u_S = G_{SS}^{-1}(b_S - \lambda s_S)`, with one step of iterative refinement, and the KKT residual
certifies it (``converged``).
"""
from __future__ import annotations

import torch

from ..dictionaries.base import Operator
from ..objective import per_sample_max_abs
from ..result import SolveResult
from ..thresholds import Threshold
from .base import Solver, State, _check_exact_lasso, _only_positive, _scalar_lam

__all__ = ["Homotopy"]

#: the number of slots (support size) each sample starts with; doubled whenever a sample could run out
INITIAL_SLOTS = 8

#: samples at lambda leave the batch once they are this fraction of it and at least this many (removing a handful of
#: rows saves less than the copies cost: a step's time is then its operations' dispatch)
COMPACT_FRACTION = 0.25
COMPACT_MIN_ROWS = 16


class Homotopy(Solver):
    r"""Exact Lasso (and non-negative Lasso) by batched homotopy: each sample's solution path from
    :math:`\lambda_{\max}` to :math:`\lambda` (see the module docstring).

    Needs a single dense dictionary, signals ``(B, n_features)``, a :class:`~sparsecode.thresholds.SoftThreshold`
    or :class:`~sparsecode.thresholds.NonNegSoftThreshold` with a scalar :math:`\lambda`, and a solve without an
    autograd graph (``torch.no_grad()``, or ``SparseReconstruction(..., differentiation="implicit")``: the result
    is the minimiser, so implicit differentiation applies; the path itself is not differentiated).

    Args:
        max_iter: the largest number of steps of the batch (each moves every sample to its next kink; a sample
            still on its path then keeps the exact minimiser at the :math:`t > \lambda` it reached, and
            ``converged`` is ``False`` for it).
        tol: a sample is ``converged`` when the KKT residual of its final code, divided by
            :math:`\|P^\top x\|_\infty`, is :math:`\le` ``tol``; ``None``: the square root of the dtype's machine
            epsilon (1.5e-8 in float64, 3.5e-4 in float32).

    ``SolveResult.n_iter_per_sample`` counts the steps of each sample's path (its kinks, then the move to
    :math:`\lambda`; 0 when its minimiser is 0), ``n_iter`` the steps of the batch (their maximum).
    """

    def __init__(self, max_iter: int = 1000, tol: float | None = None) -> None:
        super().__init__(max_iter=max_iter, tol=tol)

    # --- one path: state, step, code ----------------------------------------------------------------------------------
    def init_state(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold,
                   L: torch.Tensor, u0: torch.Tensor) -> State:
        r"""The start of each sample's path: :math:`t = \|b\|_\infty` (:math:`\max_j b_j` for the non-negative
        Lasso), :math:`u = 0`, the atom of the largest correlation active. Every row of ``b`` gets a path; ``solve``
        passes only the rows whose minimiser is not 0."""
        if bool((u0 != 0).any()):
            raise ValueError("Homotopy starts from the zero code at lambda_max: init must be zeros")
        gram = op.gram_matrix().to(b.dtype)
        n, m = b.shape
        signed = _only_positive(threshold)
        t, first = (b if signed else b.abs()).max(dim=1)
        rows = torch.arange(n, device=b.device)
        slots = INITIAL_SLOTS
        index = torch.zeros(n, slots, dtype=torch.long, device=b.device)
        index[:, 0] = first
        sign = torch.zeros(n, slots, dtype=b.dtype, device=b.device)
        sign[:, 0] = torch.sign(b[rows, first]) if not signed else 1.0
        inverse = torch.zeros(n, slots, slots, dtype=b.dtype, device=b.device)
        inverse[:, 0, 0] = 1.0 / gram[first, first]
        magnitude = torch.ones(n, slots, dtype=b.dtype, device=b.device)
        magnitude[:, 0] = 0
        blocked = torch.zeros(n, m + 1, dtype=torch.bool, device=b.device)  # column m: "no atom"
        blocked[rows, first] = True
        return {
            "t": t.clone(),  # the path parameter
            "corr": b.clone(),  # c = b - G u
            "index": index,  # atom of each slot
            "sign": sign,  # s_j of each occupied slot, 0 on free slots
            "magnitude": magnitude,  # |u_j| of each occupied slot, 1 on free slots
            "inverse": inverse,  # G_SS^{-1} in slot coordinates, zero rows and columns on free slots
            # atoms that cannot join: the active ones, the one that left at the last step, and atoms found linearly
            # dependent on the active ones when they tried to join
            "blocked": blocked,
            "steps": torch.zeros(n, dtype=torch.long, device=b.device),
        }

    def step(self, op: Operator, x: torch.Tensor, b: torch.Tensor, threshold: Threshold, L: torch.Tensor,
             state: State, need_measure: bool = False) -> tuple[State, torch.Tensor]:
        r"""Move every sample of ``state`` to its next kink (or to :math:`t = \lambda`). Returns the new state and
        ``(B,)`` bool, the samples that reached :math:`\lambda` (their later steps change nothing)."""
        state, done, _ = _step(op.gram_matrix().to(b.dtype), _scalar_lam(threshold, b), _only_positive(threshold),
                               state)
        return state, done

    def code(self, state: State, threshold: Threshold, L: torch.Tensor) -> torch.Tensor:
        """The codes of the path state (the exact minimisers at each sample's current :math:`t`)."""
        n, m = state["corr"].shape
        values = state["magnitude"] * state["sign"]
        return torch.zeros(n, m, dtype=values.dtype, device=values.device).scatter_add_(1, state["index"], values)

    # --- the solve ----------------------------------------------------------------------------------------------------
    def solve(self, op: Operator, x: torch.Tensor, threshold: Threshold, *, init: torch.Tensor | None = None,
              trace: bool = False, grad_steps: int | None = None) -> SolveResult:
        r"""The minimiser of :math:`\tfrac12\|Pu - x\|^2 + \lambda R(u)` for each sample of ``x`` (see the class
        docstring for what is needed). ``init``, ``trace`` and ``grad_steps`` are not supported (the path starts
        at 0 and is not differentiated)."""
        if init is not None:
            raise ValueError("Homotopy starts from the zero code at lambda_max: init is not supported")
        _check_exact_lasso(op, x, threshold, trace, grad_steps, "Homotopy")
        with torch.no_grad():
            return self._solve(op, x, threshold)

    def _solve(self, op: Operator, x: torch.Tensor, threshold: Threshold) -> SolveResult:
        b = op.encode(x)
        n, m = b.shape
        gram = op.gram_matrix().to(b.dtype)
        lam = _scalar_lam(threshold, b)
        positive = _only_positive(threshold)
        code = torch.zeros_like(b)
        steps = torch.zeros(n, dtype=torch.long, device=b.device)
        finished = threshold.zero_is_optimal(b)  # the minimiser is 0: no path
        rows = (~finished).nonzero().squeeze(1)
        n_steps = 0
        if rows.numel():
            state = self.init_state(op, x, b[rows], threshold, torch.ones((), dtype=b.dtype),
                                    torch.zeros(rows.numel(), m, dtype=b.dtype, device=b.device))
            parts = []  # (rows, what the final code needs, at lambda) of the samples that left the batch
            count_bound = 1  # an upper bound on every sample's support size (a join adds at most one per step)
            while True:
                n_steps += 1
                count_bound += 1
                check_slots = count_bound >= state["index"].shape[1] - 1
                state, done, support_bound = _step(gram, lam, positive, state, check_slots)
                if check_slots:
                    count_bound = support_bound
                n_done = int(done.sum())
                if n_done == rows.numel() or n_steps >= self.max_iter:
                    parts.append((rows, _final_part(state), done))
                    break
                if n_done >= max(COMPACT_FRACTION * rows.numel(), COMPACT_MIN_ROWS):
                    # samples at lambda leave the batch; their codes are computed with the others' at the end
                    out, stay = done.nonzero().squeeze(1), (~done).nonzero().squeeze(1)
                    parts.append((rows.index_select(0, out), _final_part(state, out), done.index_select(0, out)))
                    rows = rows.index_select(0, stay)
                    state = {k: v.index_select(0, stay) for k, v in state.items()}
            # one final computation per slot count (the slots grow while samples leave the batch)
            for slots in sorted({part[1]["index"].shape[1] for part in parts}):
                group = [part for part in parts if part[1]["index"].shape[1] == slots]
                rows = torch.cat([part[0] for part in group])
                final = {k: torch.cat([part[1][k] for part in group]) for k in group[0][1]}
                at_lam = torch.cat([part[2] for part in group])
                code.index_copy_(0, rows, self._final_code(gram, b.index_select(0, rows), lam, final, at_lam))
                steps.index_copy_(0, rows, final["steps"])
                finished.index_copy_(0, rows, at_lam)
        scale = per_sample_max_abs(b).clamp_min(torch.finfo(b.dtype).tiny)
        tol = self.tol if self.tol is not None else torch.finfo(b.dtype).eps ** 0.5
        residual = threshold.kkt_residual(code, code @ gram - b)
        converged = finished & (residual <= tol * scale)
        return SolveResult(code=code, n_iter=n_steps, converged=converged, n_iter_per_sample=steps)

    def _final_code(self, gram: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, state: State,
                    at_lam: torch.Tensor) -> torch.Tensor:
        r"""The codes of samples at :math:`t = \lambda`, recomputed on their support:
        :math:`u_S = G_{SS}^{-1}(b_S - \lambda s_S)` and one step of iterative refinement (the inverse carries the
        rounding of every update since the sample's first kink). Samples stopped short of :math:`\lambda` keep
        their path point."""
        index, sign, inverse = state["index"], state["sign"], state["inverse"]
        occupied = sign != 0
        rhs = torch.where(occupied, b.gather(1, index) - lam * sign, 0)
        gram_ss = gram[index.unsqueeze(2), index.unsqueeze(1)] * (occupied.unsqueeze(2) & occupied.unsqueeze(1))
        values = (inverse * rhs.unsqueeze(1)).sum(2)
        values = values + (inverse * (rhs - (gram_ss * values.unsqueeze(1)).sum(2)).unsqueeze(1)).sum(2)
        # a refined value whose sign flipped (rounding at a near-tie) would leave the face: keep the path's value
        keep = occupied & at_lam.unsqueeze(1) & (values * sign > 0)
        values = torch.where(keep, values, state["magnitude"] * sign)
        n, m = b.shape
        return torch.zeros(n, m, dtype=b.dtype, device=b.device).scatter_add_(1, index, values)


def _final_part(state: State, rows: torch.Tensor | None = None) -> State:
    """What :meth:`Homotopy._final_code` needs of a state (of some of its rows)."""
    keys = ("index", "sign", "magnitude", "inverse", "steps")
    return {k: state[k] if rows is None else state[k].index_select(0, rows) for k in keys}


def _support_sizes(sign: torch.Tensor) -> torch.Tensor:
    """The occupied slots of each sample (those with a sign)."""
    return (sign != 0).sum(dim=1)


def _step(gram: torch.Tensor, lam: torch.Tensor, positive: bool, state: State,
          check_slots: bool = True) -> tuple[State, torch.Tensor, int | None]:
    r"""One kink of every sample of ``state`` (see the module docstring); returns the state, the samples at
    :math:`\lambda` and, when ``check_slots``, an upper bound on every sample's support size after the step (else
    ``None``). ``check_slots``: whether a sample could fill its slots at this step (when the caller knows it cannot,
    the check's host read is skipped)."""
    t, corr, index, sign = state["t"], state["corr"], state["index"], state["sign"]
    magnitude, inverse, blocked = state["magnitude"], state["inverse"], state["blocked"]
    n, m = corr.shape
    slots = index.shape[1]
    stale = state.get("stale")  # present after a step where atoms left: they may join again now
    if stale is not None:
        blocked.scatter_(1, stale.unsqueeze(1), False)
    state["steps"] += t > lam  # the samples this step moves (the others wait at lambda to leave the batch)
    # direction d_S = G_SS^{-1} s_S and the correlations' rate a = G d
    d_slots = (inverse * sign.unsqueeze(1)).sum(2)
    a = torch.zeros_like(corr).scatter_add_(1, index, d_slots) @ gram
    # the next join: the largest rate 1/gamma over the atoms that may join (0 where none)
    t_col = t.unsqueeze(1)
    tiny = torch.finfo(corr.dtype).tiny  # an atom on the boundary (t - c_j = 0, or below by rounding) joins now
    rate = (1 - a).div_((t_col - corr).clamp_min_(tiny))
    if not positive:
        rate = torch.maximum(rate, (1 + a).div_((t_col + corr).clamp_min_(tiny)), out=rate)
    join_rate, joiner = rate.masked_fill_(blocked[:, :m], 0).max(dim=1)
    # the next leave: |u_j| = magnitude reaches 0 when it moves towards 0 (free slots: magnitude 1, rate 0)
    d_magnitude = d_slots * sign
    leave_rate, slot_out = d_magnitude.div(magnitude.clamp_min(tiny)).neg_().max(dim=1)
    end_rate = (t - lam).clamp_(min=0).reciprocal_()  # at lambda: infinite, so gamma = 0 and nothing moves
    step_rate = torch.maximum(torch.maximum(join_rate, leave_rate), end_rate)
    gamma = step_rate.reciprocal()
    magnitude.addcmul_(gamma.unsqueeze(1), d_magnitude)
    corr.addcmul_(gamma.unsqueeze(1), a, value=-1)
    t = t - gamma
    done = end_rate >= step_rate
    join = ~done & (join_rate >= leave_rate)
    leave = ~(done | join)
    if check_slots:
        any_leave, largest = torch.stack((leave.any(), _support_sizes(sign).max())).tolist()
        may_fill, support_bound = largest >= slots - 1, largest + 1  # (a step adds at most one atom)
    else:
        any_leave, may_fill, support_bound = bool(leave.any()), False, None
    new = {key: value for key, value in state.items() if key != "stale"}
    new["t"] = t
    if any_leave:
        # Schur downdate of the inverse at the leaving slot p; the atom stays blocked for one step (it sits on the
        # boundary |c_j| = t, where rounding would let it join again at once)
        out = leave.nonzero().squeeze(1)
        p = slot_out.index_select(0, out)
        column = inverse[out, :, p]
        pivot = column.gather(1, p.unsqueeze(1))
        inverse[out] -= column.unsqueeze(2) * (column / pivot).unsqueeze(1)
        inverse[out, p, :] = 0
        inverse[out, :, p] = 0
        sign[out, p] = 0
        magnitude[out, p] = 1
        # the atom that left, per sample (m: none), blocked until the next step
        new["stale"] = torch.full_like(t, m, dtype=torch.long).index_copy_(0, out, index[out, p])
    # join, written for every row (a row that does not join adds 0 to its inverse and fills nothing: its free slot
    # keeps sign 0 and magnitude 1)
    free = sign.abs().argmin(1, keepdim=True)  # the first slot with sign 0
    joiner_col = joiner.unsqueeze(1)
    joiner_sign = torch.ones_like(t) if positive else torch.sign(corr.gather(1, joiner_col)).squeeze(1)
    # G_Sj (its entries at free slots meet the inverse's zero columns there, so they need no masking)
    g = gram.index_select(0, joiner).gather(1, index)
    w = (inverse * g.unsqueeze(1)).sum(2)
    diagonal = gram.diagonal().index_select(0, joiner)
    sigma = diagonal - (g * w).sum(1)
    # an atom (numerically) in the span of the active ones cannot change the fit: it is blocked for good instead
    # (blocked either way: joined, or dependent)
    blocked.scatter_(1, joiner_col, blocked.gather(1, joiner_col) | join.unsqueeze(1))
    join = join & (sigma > m * torch.finfo(corr.dtype).eps * diagonal)
    joined = join.to(corr.dtype)  # 1 for the samples that add an atom, 0 for the others
    z = w.neg_().scatter_(1, free, 1.0)
    # (a dependent atom's sigma is about 0: its reciprocal must not meet the 0 of "not joined")
    inverse.addcmul_(z.unsqueeze(2), (z * torch.where(join, sigma.reciprocal_(), 0).unsqueeze(1)).unsqueeze(1))
    index.scatter_(1, free, joiner_col)  # unused where the slot stays free (sign 0)
    sign.scatter_(1, free, (joiner_sign * joined).unsqueeze(1))
    magnitude.scatter_(1, free, (1 - joined).unsqueeze(1))
    if may_fill:
        # double the slots so that every sample has a free one at the next step
        new["index"] = torch.cat([index, torch.zeros_like(index)], 1)
        new["sign"] = torch.cat([sign, torch.zeros_like(sign)], 1)
        new["magnitude"] = torch.cat([magnitude, torch.ones_like(magnitude)], 1)
        grown = inverse.new_zeros(n, 2 * slots, 2 * slots)
        grown[:, :slots, :slots] = inverse
        new["inverse"] = grown
    return new, done, support_bound
