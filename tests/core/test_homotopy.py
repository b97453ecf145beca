"""Homotopy (the batched LARS-Lasso path): the exact minimiser against scikit-learn's LARS and coordinate descent,
the KKT conditions, the paths that drop atoms or outgrow the initial slots, degenerate dictionaries, float32, and
clear errors where it cannot apply."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.linear_model import lars_path

from sparsecode import (FISTA, HardThreshold, Homotopy, LinearDictionary, NonNegSoftThreshold, SoftThreshold,
                        SparseReconstruction, get_solver, kkt_residual, objective)
from sparsecode.solvers.homotopy import INITIAL_SLOTS

from _lasso_problems import (lambda_fraction as _lam, sklearn_lasso,  # tests/core is on sys.path
                             unit_norm_problem)


def _lars(P: torch.Tensor, x: torch.Tensor, lam: float, positive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's LARS-Lasso path (an independent implementation of the same path) at lambda, one sample at a
    time (its alpha is lambda / n_features): the codes and, per sample, whether that code is certified, its KKT
    residual at lambda within 1e-7 of |P^T x|_inf (for tiny signals LARS can stop short of lambda or pass it)."""
    n = P.shape[0]
    out = []
    for xi in x.numpy():
        alphas, _, coefs = lars_path(P.numpy(), xi, alpha_min=lam / n, method="lasso", positive=positive)
        out.append(coefs[:, -1])
    codes = torch.tensor(np.array(out))
    # LARS leaves rounding-level values on atoms that left the path: they are zeros of the minimiser
    codes = codes * (codes.abs() > 1e-12 * codes.abs().amax(dim=1, keepdim=True))
    b = x @ P
    threshold = NonNegSoftThreshold(lam) if positive else SoftThreshold(lam)
    certified = threshold.kkt_residual(codes, codes @ (P.T @ P) - b) <= 1e-7 * b.abs().amax(dim=1)
    return codes, certified


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 30), ratio=st.floats(0.3, 3.0), frac=st.floats(0.02, 0.95),
       batch=st.integers(1, 8), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_homotopy_matches_lars_and_meets_the_kkt_conditions(seed, n, ratio, frac, batch, scale):
    m = max(2, int(n * ratio))
    op, x, P = unit_norm_problem(seed, n, m, batch)
    x = x * scale
    lam = _lam(x @ P, frac)
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        res = Homotopy().solve(op, x, threshold)
    # the optimality conditions themselves, at a tight relative tolerance
    bscale = (x @ P).abs().amax(dim=1)
    assert (kkt_residual(op, x, res.code, threshold) <= 1e-9 * bscale).all()
    assert bool(res.converged.all())
    # no worse than scikit-learn's LARS (the minimiser may not be unique when m > n), and the same code where the
    # minimiser is unique (full column rank) and LARS's code is certified
    ref, reached = _lars(P, x, lam)
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    assert (f_ours <= f_ref + 1e-9 * f_ref.abs()).all(), (f_ours - f_ref)
    if m <= n:
        torch.testing.assert_close(res.code[reached], ref[reached], atol=1e-7 * scale, rtol=1e-7)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 25), ratio=st.floats(0.5, 2.5), frac=st.floats(0.05, 0.9),
       batch=st.integers(1, 6))
def test_nonnegative_homotopy_matches_sklearn(seed, n, ratio, frac, batch):
    m = max(2, int(n * ratio))
    op, x, P = unit_norm_problem(seed, n, m, batch)
    lam = _lam(x @ P, frac, nonneg=True) or 0.1
    threshold = NonNegSoftThreshold(lam)
    with torch.no_grad():
        res = Homotopy().solve(op, x, threshold)
    assert (res.code >= 0).all()
    bscale = (x @ P).abs().amax(dim=1)
    assert (kkt_residual(op, x, res.code, threshold) <= 1e-9 * bscale).all()
    ref = sklearn_lasso(P, x, lam, positive=True)
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    assert (f_ours <= f_ref + 1e-9 * f_ref.abs()).all(), (f_ours - f_ref)


def test_paths_that_drop_atoms_and_outgrow_the_slots():
    # a correlated design at a small lambda: paths with many kinks, some of them atoms leaving the active set,
    # and supports larger than the initial slots (the slots are doubled on the way)
    g = torch.Generator().manual_seed(0)
    n, m = 40, 60
    idx = torch.arange(m, dtype=torch.float64)
    chol = torch.linalg.cholesky(0.8 ** (idx[:, None] - idx[None, :]).abs())
    P = torch.randn(n, m, generator=g, dtype=torch.float64) @ chol.T
    P = P / P.norm(dim=0)
    x = torch.randn(16, n, generator=g, dtype=torch.float64)
    lam = _lam(x @ P, 0.02)
    op = LinearDictionary(weight=P, learnable=False).bind()
    with torch.no_grad():
        res = Homotopy().solve(op, x, SoftThreshold(lam))
    support = (res.code != 0).sum(dim=1)
    assert int(support.max()) > INITIAL_SLOTS
    # more steps than the atoms' joins and the final move: some atoms left on the way
    assert bool((res.n_iter_per_sample > support).any())
    assert res.n_iter == int(res.n_iter_per_sample.max())
    ref, reached = _lars(P, x, lam)
    assert bool(reached.all())
    torch.testing.assert_close(res.code, ref, atol=1e-8, rtol=1e-8)


def test_batch_rows_are_independent_and_zero_rows_take_no_kink():
    op, x, P = unit_norm_problem(5, 20, 50, 12)
    b = x @ P
    lam = float(b.abs().amax(dim=1).sort().values[4])  # some rows have |P^T x|_inf <= lambda: their code is 0
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        batched = Homotopy().solve(op, x, threshold)
        single = torch.cat([Homotopy().solve(op, x[i:i + 1], threshold).code for i in range(12)])
    torch.testing.assert_close(batched.code, single, atol=1e-12, rtol=1e-10)
    zero = b.abs().amax(dim=1) <= lam
    assert bool(zero.any()) and bool((~zero).any())
    assert bool((batched.code[zero] == 0).all()) and bool((batched.n_iter_per_sample[zero] == 0).all())
    assert bool((batched.n_iter_per_sample[~zero] >= 1).all()) and bool(batched.converged.all())


def test_duplicated_atoms_do_not_break_the_path():
    # a dictionary with a repeated column (G_SS singular if both joined) and an exact linear combination of others
    op0, x, P = unit_norm_problem(11, 15, 30, 6)
    combo = P[:, 3] + P[:, 4]
    P = torch.cat([P, P[:, :1], (combo / combo.norm())[:, None]], dim=1)
    op = LinearDictionary(weight=P, learnable=False).bind()
    lam = _lam(x @ P, 0.05)
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        res = Homotopy().solve(op, x, threshold)
    assert torch.isfinite(res.code).all()
    assert bool(res.converged.all())
    bscale = (x @ P).abs().amax(dim=1)
    assert (kkt_residual(op, x, res.code, threshold) <= 1e-8 * bscale).all()


def test_float32_is_close_to_float64():
    op, x, P = unit_norm_problem(7, 64, 128, 64)
    lam = _lam(x @ P, 0.3)
    with torch.no_grad():
        exact = Homotopy().solve(op, x, SoftThreshold(lam)).code
        op32 = LinearDictionary(weight=P.float(), learnable=False).bind()
        res = Homotopy().solve(op32, x.float(), SoftThreshold(lam))
    assert res.code.dtype == torch.float32 and bool(res.converged.all())
    f32 = objective(op, x, res.code.double(), SoftThreshold(lam))
    f64 = objective(op, x, exact, SoftThreshold(lam))
    assert float((f32.sum() - f64.sum()) / f64.sum()) <= 1e-9
    torch.testing.assert_close(res.code.double(), exact, atol=1e-4, rtol=1e-4)


def test_max_iter_stops_paths_short_and_says_so():
    op, x, P = unit_norm_problem(2, 30, 60, 8)
    lam = _lam(x @ P, 0.05)
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        full = Homotopy().solve(op, x, threshold)
        short = Homotopy(max_iter=3).solve(op, x, threshold)
    assert short.n_iter == 3 and int(full.n_iter_per_sample.max()) > 3
    long_path = full.n_iter_per_sample > 3
    assert not bool(short.converged[long_path].any())
    # a path stopped short holds the minimiser of a larger lambda: sparser than the answer, and not optimal here
    assert bool(((short.code[long_path] != 0).sum(1) <= 3).all())
    assert bool((kkt_residual(op, x, short.code, threshold)[long_path] > 1e-3).all())


def test_implicit_differentiation_through_the_homotopy_minimiser():
    torch.manual_seed(0)
    n, m = 12, 20
    P = torch.randn(n, m, dtype=torch.float64)
    P = P / P.norm(dim=0)
    x = torch.randn(4, n, dtype=torch.float64, requires_grad=True)
    lam = 0.3

    def layer(solver):
        return SparseReconstruction(dictionary=LinearDictionary(weight=P.clone(), learnable=True), solver=solver,
                                    threshold=SoftThreshold(lam), differentiation="implicit",
                                    backward_tol=1e-12, backward_max_iter=10_000).double()

    ours, ref = layer(Homotopy()), layer(FISTA(max_iter=100_000, tol=1e-14, restart=True))
    gx_ours, gw_ours = torch.autograd.grad(ours(x).square().sum(), (x, ours.dictionary.weight))
    gx_ref, gw_ref = torch.autograd.grad(ref(x).square().sum(), (x, ref.dictionary.weight))
    torch.testing.assert_close(gx_ours, gx_ref, atol=1e-8, rtol=1e-7)
    torch.testing.assert_close(gw_ours, gw_ref, atol=1e-8, rtol=1e-7)


def test_homotopy_by_name_and_clear_errors():
    assert isinstance(get_solver("homotopy"), Homotopy)
    op, x, P = unit_norm_problem(1, 10, 20, 3)
    threshold = SoftThreshold(0.1)
    with pytest.raises(ValueError, match="init"):
        Homotopy().solve(op, x, threshold, init=torch.zeros(3, 20, dtype=torch.float64))
    with pytest.raises(ValueError, match="trace"):
        Homotopy().solve(op, x, threshold, trace=True)
    with pytest.raises(ValueError, match="SoftThreshold or NonNegSoftThreshold"):
        Homotopy().solve(op, x, HardThreshold(0.1))
    with pytest.raises(ValueError, match="scalar lambda"):
        Homotopy().solve(op, x, SoftThreshold(torch.full((20,), 0.1, dtype=torch.float64)))
    with pytest.raises(ValueError, match="single dense dictionary"):
        Homotopy().solve(op, x.unsqueeze(1), threshold)
    per_head = LinearDictionary(weight=P.expand(2, 10, 20).clone(), learnable=False).bind()
    with pytest.raises(ValueError, match="single dense dictionary"):
        Homotopy().solve(per_head, x, threshold)
    learnable = LinearDictionary(weight=P.clone(), learnable=True).double()
    with pytest.raises(ValueError, match="without an autograd graph"):
        Homotopy().solve(learnable.bind(), x, threshold)
    with pytest.raises(ValueError, match="float32 or float64"):
        half = LinearDictionary(weight=P.half(), learnable=False).bind()
        Homotopy().solve(half, x.half(), threshold)
    with pytest.raises(ValueError, match="max_iter"):
        Homotopy(max_iter=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_homotopy_on_cuda_matches_the_cpu():
    op, x, P = unit_norm_problem(4, 64, 128, 256)
    lam = _lam(x @ P, 0.3)
    with torch.no_grad():
        cpu = Homotopy().solve(op, x, SoftThreshold(lam))
        gpu_op = LinearDictionary(weight=P.cuda(), learnable=False).bind()
        gpu = Homotopy().solve(gpu_op, x.cuda(), SoftThreshold(lam))
    assert bool(gpu.converged.all())
    torch.testing.assert_close(gpu.code.cpu(), cpu.code, atol=1e-9, rtol=1e-9)


def test_stepping_by_hand_walks_the_path_to_the_solution():
    # init_state / step / code: each step's code is the exact minimiser at that sample's current t
    op, x, P = unit_norm_problem(9, 20, 40, 5)
    b = x @ P
    lam = _lam(b, 0.2)
    threshold = SoftThreshold(lam)
    solver = Homotopy()
    with torch.no_grad():
        state = solver.init_state(op, x, b, threshold, torch.ones(()), torch.zeros_like(b))
        for _ in range(200):
            state, done = solver.step(op, x, b, threshold, torch.ones(()), state)
            code = solver.code(state, threshold, torch.ones(()))
            at_t = SoftThreshold(state["t"].unsqueeze(1))  # each sample's own t
            assert (at_t.kkt_residual(code, code @ (P.T @ P) - b) <= 1e-9 * b.abs().amax(dim=1)).all()
            if bool(done.all()):
                break
        assert bool(done.all())
        torch.testing.assert_close(code, Homotopy().solve(op, x, threshold).code, atol=1e-10, rtol=1e-9)
