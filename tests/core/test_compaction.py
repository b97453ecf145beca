"""The tolerance loop that drops converged samples from the batch (CPU, no autograd graph) agrees with the plain
loop that recomputes and freezes them (taken when the signals require a gradient)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import (ADMM, FISTA, ISTA, LCA, LearnedISTA, LinearDictionary, NonNegSoftThreshold, SoftThreshold,
                        SpaRSA, objective)


def _problem(seed: int, n: int, m: int, batch: int):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, m, generator=g, dtype=torch.float64)
    # per-sample scales spread the convergence times, so samples leave the batch at different iterations
    x = torch.randn(batch, n, generator=g, dtype=torch.float64) * torch.rand(batch, 1, generator=g,
                                                                             dtype=torch.float64) * 3
    return LinearDictionary(weight=P, learnable=False).bind(), x


SOLVERS = {
    "ista": lambda check: ISTA(max_iter=1500, tol=1e-6, check_every=check),
    "fista": lambda check: FISTA(max_iter=300, tol=1e-8, check_every=check),
    "fista_restart": lambda check: FISTA(max_iter=300, tol=1e-8, restart=True, check_every=check),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), check=st.sampled_from([1, 4]), nonneg=st.booleans(),
       batch=st.integers(1, 40))
def test_compacted_loop_matches_frozen_loop(name, seed, check, nonneg, batch):
    op, x = _problem(seed, 12, 20, batch)
    threshold = (NonNegSoftThreshold if nonneg else SoftThreshold)(0.2)
    solver = SOLVERS[name](check)
    with torch.no_grad():
        fast = solver.solve(op, x, threshold)
    slow = solver.solve(op, x.clone().requires_grad_(True), threshold)  # a graph to keep: the plain loop
    assert fast.n_iter == slow.n_iter
    assert torch.equal(fast.converged, slow.converged)
    assert torch.equal(fast.n_iter_per_sample, slow.n_iter_per_sample)
    assert sorted(fast.state) == sorted(slow.state)
    torch.testing.assert_close(fast.code, slow.code.detach(), rtol=0, atol=1e-9)
    for key in fast.state:
        torch.testing.assert_close(fast.state[key], slow.state[key].detach(), rtol=0, atol=1e-9)


def test_compacted_loop_keeps_converged_samples_frozen():
    op, _ = _problem(3, 10, 16, 1)
    x = torch.randn(8, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x[0] = 0.0  # optimal at the zero start (0 iterations), the others converge much later
    with torch.no_grad():
        res = FISTA(max_iter=500, tol=1e-9).solve(op, x, SoftThreshold(0.1))
    assert int(res.n_iter_per_sample[0]) == 0 and bool(res.converged[0])
    assert int(res.n_iter_per_sample[1:].min()) > 1
    assert res.n_iter == int(res.n_iter_per_sample.max())
    assert torch.count_nonzero(res.code[0]) == 0


def test_compacted_loop_matches_frozen_loop_for_sparsa():
    # SpaRSA's accept/reject is a discontinuous decision: rounding differences between the batch sizes of the two
    # loops (another BLAS blocking) may take another path, so the check is "the same minimum"
    g = torch.Generator().manual_seed(0)
    P = torch.randn(40, 80, generator=g, dtype=torch.float64)
    op = LinearDictionary(weight=P / P.norm(dim=0), learnable=False).bind()
    x = torch.randn(50, 40, generator=g, dtype=torch.float64) * torch.rand(50, 1, generator=g, dtype=torch.float64)
    threshold = SoftThreshold(0.1)
    solver = SpaRSA(max_iter=20_000, tol=1e-9)
    with torch.no_grad():
        fast = solver.solve(op, x, threshold)
    slow = solver.solve(op, x.clone().requires_grad_(True), threshold)
    assert bool(fast.converged.all()) and bool(slow.converged.all())
    assert len(set(fast.n_iter_per_sample.tolist())) > 5  # samples left the batch at many different iterations
    f_fast, f_slow = objective(op, x, fast.code, threshold), objective(op, x, slow.code.detach(), threshold)
    torch.testing.assert_close(f_fast, f_slow, rtol=1e-10, atol=0)


@pytest.mark.parametrize("solver", [FISTA(max_iter=2000, tol=1e-9, restart=True), ISTA(max_iter=5000, tol=1e-9),
                                    SpaRSA(max_iter=2000, tol=1e-9), ADMM(max_iter=2000, tol=1e-9),
                                    LCA(max_iter=20_000, tol=1e-9)], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("trace", [False, True], ids=["rows", "frozen"])
def test_samples_optimal_at_zero_take_no_iteration(solver, trace):
    # |P^T x|_inf <= lambda: the zero start already satisfies the KKT conditions; the other samples are solved as if
    # they were alone, in both loops
    g = torch.Generator().manual_seed(6)
    P = torch.randn(12, 20, generator=g, dtype=torch.float64) / 12 ** 0.5
    op = LinearDictionary(weight=P, learnable=False).bind()
    x = torch.randn(6, 12, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1, 0.2, 1, 1, 0.05],
                                                                             dtype=torch.float64).unsqueeze(1)
    lam = 0.5 * float((x @ P).abs().amax())
    small = (x @ P).abs().amax(dim=1) <= lam
    assert 0 < int(small.sum()) < 6
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        res = solver.solve(op, x, threshold, trace=trace)
        others = solver.solve(op, x[~small], threshold)
    assert bool(res.converged.all())
    assert bool((res.n_iter_per_sample[small] == 0).all()) and bool((res.n_iter_per_sample[~small] > 0).all())
    assert torch.count_nonzero(res.code[small]) == 0
    torch.testing.assert_close(res.code[~small], others.code, rtol=1e-7, atol=1e-9)
    # a start whose code is not zero is iterated
    started = solver.solve(op, x, threshold, init=torch.full((6, 20), 10.0, dtype=torch.float64))
    assert bool((started.n_iter_per_sample > 0).all())


def test_a_learned_iteration_is_not_screened():
    op, _ = _problem(5, 12, 20, 1)
    x = torch.zeros(2, 12, dtype=torch.float64)
    res = LearnedISTA(20, max_iter=5, tol=1e-3, dtype=torch.float64).solve(op, x, SoftThreshold(0.1))
    assert bool((res.n_iter_per_sample > 0).all())


class _CountingRows:
    """Wraps a solver's ``step`` to record how many rows each call iterates."""

    def __init__(self, solver):
        self.rows, self._step = [], solver.step
        solver.step = self

    def __call__(self, op, x, *args, **kwargs):
        self.rows.append(x.shape[0])
        return self._step(op, x, *args, **kwargs)


@pytest.mark.parametrize("make", [lambda: ISTA(max_iter=40), lambda: FISTA(max_iter=40, restart=True),
                                  lambda: SpaRSA(max_iter=40), lambda: ADMM(max_iter=40)],
                         ids=["ista", "fista", "sparsa", "admm"])
@pytest.mark.parametrize("nonneg", [False, True])
def test_fixed_iterations_leave_out_rows_at_an_optimal_zero_start(make, nonneg):
    # without a tolerance, rows whose zero start is optimal are fixed points of the iteration: the row loop skips
    # them, and codes and counters are those of the plain loop (which iterates them and keeps 0)
    g = torch.Generator().manual_seed(9)
    P = torch.randn(12, 20, generator=g, dtype=torch.float64) / 12 ** 0.5
    op = LinearDictionary(weight=P, learnable=False).bind()
    x = torch.randn(8, 12, generator=g, dtype=torch.float64)
    x[::2] *= 0.05
    threshold = (NonNegSoftThreshold if nonneg else SoftThreshold)(0.5 * float((x @ P).abs().amax()))
    # optimal at 0: P^T x in lam * dR(0), i.e. |P^T x| <= lam (P^T x <= lam for non-negative codes)
    small = ((x @ P) if nonneg else (x @ P).abs()).amax(dim=1) <= threshold.lam
    assert 0 < int(small.sum()) < 8
    fast_solver, slow_solver = make(), make()
    counted = _CountingRows(fast_solver)
    with torch.no_grad():
        fast = fast_solver.solve(op, x, threshold)
    slow = slow_solver.solve(op, x.clone().requires_grad_(True), threshold)
    assert counted.rows == [8 - int(small.sum())] * 40
    assert torch.equal(fast.n_iter_per_sample, slow.n_iter_per_sample) and fast.n_iter == slow.n_iter
    assert torch.count_nonzero(slow.code[small]) == 0 and torch.count_nonzero(fast.code[small]) == 0
    torch.testing.assert_close(fast.code, slow.code.detach(), rtol=0, atol=1e-12)
