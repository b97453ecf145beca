"""CoordinateDescent (batched cyclic coordinate descent, numba): the minimiser against scikit-learn's Lasso and our
exact homotopy, the KKT conditions, one sweep against a plain Python sweep, warm starts, the stopping rule, float32,
degenerate dictionaries, implicit gradients, and clear errors where it cannot apply."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import (FISTA, CoordinateDescent, HardThreshold, Homotopy, LinearDictionary, NonNegSoftThreshold,
                        SoftThreshold, SparseReconstruction, get_solver, kkt_residual, objective)

from _lasso_problems import (lambda_fraction as _lam, sklearn_lasso,  # tests/core is on sys.path
                             unit_norm_problem)

pytest.importorskip("numba")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 30), ratio=st.floats(0.3, 3.0), frac=st.floats(0.02, 0.95),
       batch=st.integers(1, 8), scale=st.sampled_from([1e-3, 1.0, 1e3]), nonneg=st.booleans())
def test_matches_sklearn_and_meets_the_kkt_conditions(seed, n, ratio, frac, batch, scale, nonneg):
    m = max(2, int(n * ratio))
    op, x, P = unit_norm_problem(seed, n, m, batch)
    x = x * scale
    b = x @ P
    lam = _lam(b, frac, nonneg) or 0.1 * scale
    threshold = NonNegSoftThreshold(lam) if nonneg else SoftThreshold(lam)
    with torch.no_grad():
        res = CoordinateDescent(max_iter=100_000, tol=1e-11).solve(op, x, threshold)
    bscale = b.abs().amax(dim=1)
    assert bool(res.converged.all())
    assert (kkt_residual(op, x, res.code, threshold) <= 1e-11 * bscale).all()
    if nonneg:
        assert (res.code >= 0).all()
    ref = sklearn_lasso(P, x, lam, positive=nonneg)
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    assert (f_ours <= f_ref + 1e-9 * f_ref.abs()).all(), (f_ours - f_ref)


def test_the_same_minimiser_as_homotopy_on_a_coherent_design():
    # a correlated design (many sweeps), full column rank: the minimiser is unique
    g = torch.Generator().manual_seed(0)
    n, m = 60, 40
    idx = torch.arange(m, dtype=torch.float64)
    chol = torch.linalg.cholesky(0.8 ** (idx[:, None] - idx[None, :]).abs())
    P = torch.randn(n, m, generator=g, dtype=torch.float64) @ chol.T
    P = P / P.norm(dim=0)
    x = torch.randn(32, n, generator=g, dtype=torch.float64)
    threshold = SoftThreshold(_lam(x @ P, 0.05))
    op = LinearDictionary(weight=P, learnable=False).bind()
    with torch.no_grad():
        res = CoordinateDescent(max_iter=100_000, tol=1e-12).solve(op, x, threshold)
        exact = Homotopy().solve(op, x, threshold).code
    assert bool(res.converged.all()) and res.n_iter > 10
    torch.testing.assert_close(res.code, exact, atol=1e-9, rtol=1e-9)
    # plain cyclic sweeps reach the same point, in more sweeps over every atom
    plain = CoordinateDescent(max_iter=100_000, tol=1e-12, support_sweeps=False).solve(op, x, threshold)
    torch.testing.assert_close(plain.code, exact, atol=1e-9, rtol=1e-9)


def _python_sweep(G: np.ndarray, b: np.ndarray, u: np.ndarray, lam: float, positive: bool) -> np.ndarray:
    """One cyclic sweep written from the definition: each coordinate in turn minimises F with the others fixed."""
    u = u.copy()
    for j in range(len(u)):
        if G[j, j] == 0:
            continue
        rest = b[j] - G[j] @ u + G[j, j] * u[j]  # b_j - sum_{k != j} G_jk u_k
        z = rest / G[j, j]
        t = lam / G[j, j]
        u[j] = max(z - t, 0.0) if positive else np.sign(z) * max(abs(z) - t, 0.0)
    return u


@pytest.mark.parametrize("nonneg", [False, True])
def test_one_step_is_one_cyclic_sweep(nonneg):
    op, x, P = unit_norm_problem(3, 12, 25, 5)
    b = x @ P
    threshold = NonNegSoftThreshold(0.3) if nonneg else SoftThreshold(0.3)
    solver = CoordinateDescent()
    G = (P.T @ P).numpy()
    with torch.no_grad():
        state = solver.init_state(op, x, b, threshold, torch.ones(()), torch.zeros_like(b))
        expected = np.zeros(b.shape)
        for _ in range(3):
            state, measure = solver.step(op, x, b, threshold, torch.ones(()), state, need_measure=True)
            expected = np.stack([_python_sweep(G, b[i].numpy(), expected[i], 0.3, nonneg) for i in range(5)])
            np.testing.assert_allclose(state["u"].numpy(), expected, rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(measure, kkt_residual(op, x, state["u"], threshold))


def test_batch_rows_are_independent_and_zero_rows_take_one_sweep():
    op, x, P = unit_norm_problem(5, 20, 50, 12)
    b = x @ P
    lam = float(b.abs().amax(dim=1).sort().values[4])  # some rows have |P^T x|_inf <= lambda: their code is 0
    threshold = SoftThreshold(lam)
    solver = CoordinateDescent(tol=1e-12)
    with torch.no_grad():
        batched = solver.solve(op, x, threshold)
        single = [solver.solve(op, x[i:i + 1], threshold) for i in range(12)]
    # (P^T x of one signal and of twelve round differently: the same codes up to that)
    torch.testing.assert_close(batched.code, torch.cat([r.code for r in single]), atol=1e-12, rtol=1e-10)
    zero = b.abs().amax(dim=1) <= lam
    assert bool(zero.any()) and bool((~zero).any())
    assert bool((batched.code[zero] == 0).all()) and bool((batched.n_iter_per_sample[zero] == 1).all())
    assert bool(batched.converged.all())


def test_threads_split_the_batch_without_changing_a_code():
    op, x, P = unit_norm_problem(6, 20, 40, 300)
    threshold = SoftThreshold(_lam(x @ P, 0.3))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = CoordinateDescent(tol=1e-10).solve(op, x, threshold)
        torch.set_num_threads(3)  # 300 rows: three blocks of 100
        three = CoordinateDescent(tol=1e-10).solve(op, x, threshold)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.code, three.code) and torch.equal(one.n_iter_per_sample, three.n_iter_per_sample)
    assert bool(three.converged.all())


def test_a_warm_start_at_the_minimiser_takes_one_sweep_and_any_start_converges():
    op, x, P = unit_norm_problem(8, 30, 60, 16)
    threshold = SoftThreshold(_lam(x @ P, 0.2))
    solver = CoordinateDescent(tol=1e-10, max_iter=100_000)
    with torch.no_grad():
        cold = solver.solve(op, x, threshold)
        warm = solver.solve(op, x, threshold, init=cold.code)
        anywhere = solver.solve(op, x, threshold, init=torch.randn(16, 60, dtype=torch.float64))
    assert bool(cold.converged.all()) and bool((warm.n_iter_per_sample == 1).all()) and bool(warm.converged.all())
    torch.testing.assert_close(warm.code, cold.code, atol=1e-9, rtol=0)
    assert bool(anywhere.converged.all())
    f_any, f_cold = objective(op, x, anywhere.code, threshold), objective(op, x, cold.code, threshold)
    torch.testing.assert_close(f_any, f_cold, atol=1e-9, rtol=1e-9)


def test_the_tolerance_is_met_on_fresh_correlations_and_max_iter_says_when_it_is_not():
    op, x, P = unit_norm_problem(2, 30, 60, 8)
    b = x @ P
    threshold = SoftThreshold(_lam(b, 0.05))
    with torch.no_grad():
        loose = CoordinateDescent(tol=1e-3).solve(op, x, threshold)
        tight = CoordinateDescent(tol=1e-12).solve(op, x, threshold)
        short = CoordinateDescent(max_iter=2, tol=1e-12).solve(op, x, threshold)
    bscale = b.abs().amax(dim=1)
    assert (kkt_residual(op, x, loose.code, threshold) <= 1e-3 * bscale).all() and bool(loose.converged.all())
    assert int(loose.n_iter) < int(tight.n_iter)
    assert short.n_iter == 2 and bool((short.n_iter_per_sample <= 2).all())
    assert not bool(short.converged.any())
    assert (kkt_residual(op, x, short.code, threshold) > 1e-12 * bscale).all()


def test_converged_is_the_kkt_test_on_the_final_codes_and_a_nan_signal_never_passes_it():
    op, x, P = unit_norm_problem(12, 20, 40, 8)
    x[3, 5] = float("nan")  # its P^T x, and with it the stopping threshold tol * |P^T x|_inf, is NaN
    b = x @ P
    threshold = SoftThreshold(_lam(b[torch.arange(8) != 3], 0.2))
    with torch.no_grad():
        res = CoordinateDescent(tol=1e-9, max_iter=5000).solve(op, x, threshold)
    residual = kkt_residual(op, x, res.code, threshold)
    expected = residual <= 1e-9 * b.abs().amax(dim=1)  # (False for the NaN row: NaN <= anything is False)
    assert res.converged.tolist() == expected.tolist()
    assert not bool(res.converged[3]) and int(res.n_iter_per_sample[3]) == 5000
    assert bool(res.converged[torch.arange(8) != 3].all())


def test_float32_is_close_to_float64():
    op, x, P = unit_norm_problem(7, 64, 128, 64)
    threshold = SoftThreshold(_lam(x @ P, 0.3))
    with torch.no_grad():
        exact = CoordinateDescent(tol=1e-12).solve(op, x, threshold).code
        op32 = LinearDictionary(weight=P.float(), learnable=False).bind()
        res = CoordinateDescent().solve(op32, x.float(), threshold)
    assert res.code.dtype == torch.float32 and bool(res.converged.all())
    f32 = objective(op, x, res.code.double(), threshold)
    f64 = objective(op, x, exact, threshold)
    assert float((f32.sum() - f64.sum()) / f64.sum()) <= 1e-6
    # the float32 stopping test (3.5e-4 relative), evaluated in float64 on the float32 codes, up to their rounding
    bscale = (x @ P).abs().amax(dim=1)
    assert (kkt_residual(op, x, res.code.double(), threshold) <= 5e-4 * bscale).all()


def test_zero_and_duplicated_atoms_do_not_break_it():
    op0, x, P = unit_norm_problem(11, 15, 30, 6)
    P = torch.cat([P, P[:, :1], torch.zeros(15, 1, dtype=torch.float64)], dim=1)
    op = LinearDictionary(weight=P, learnable=False).bind()
    threshold = SoftThreshold(_lam(x @ P, 0.05))
    with torch.no_grad():
        res = CoordinateDescent(tol=1e-10, max_iter=100_000).solve(op, x, threshold)
    assert torch.isfinite(res.code).all() and bool(res.converged.all())
    assert bool((res.code[:, -1] == 0).all())
    ref = sklearn_lasso(P, x, threshold.lam.item())
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    assert (f_ours <= f_ref + 1e-9 * f_ref.abs()).all()


def test_implicit_differentiation_through_the_minimiser():
    torch.manual_seed(0)
    n, m = 12, 20
    P = torch.randn(n, m, dtype=torch.float64)
    P = P / P.norm(dim=0)
    x = torch.randn(4, n, dtype=torch.float64, requires_grad=True)

    def layer(solver):
        return SparseReconstruction(dictionary=LinearDictionary(weight=P.clone(), learnable=True), solver=solver,
                                    threshold=SoftThreshold(0.3), differentiation="implicit",
                                    backward_tol=1e-12, backward_max_iter=10_000).double()

    ours, ref = layer(CoordinateDescent(tol=1e-13)), layer(FISTA(max_iter=100_000, tol=1e-14, restart=True))
    gx_ours, gw_ours = torch.autograd.grad(ours(x).square().sum(), (x, ours.dictionary.weight))
    gx_ref, gw_ref = torch.autograd.grad(ref(x).square().sum(), (x, ref.dictionary.weight))
    torch.testing.assert_close(gx_ours, gx_ref, atol=1e-8, rtol=1e-7)
    torch.testing.assert_close(gw_ours, gw_ref, atol=1e-8, rtol=1e-7)


def test_by_name_and_clear_errors(monkeypatch):
    assert isinstance(get_solver("cd"), CoordinateDescent)
    op, x, P = unit_norm_problem(1, 10, 20, 3)
    threshold = SoftThreshold(0.1)
    solver = CoordinateDescent()
    with pytest.raises(ValueError, match="trace"):
        solver.solve(op, x, threshold, trace=True)
    with pytest.raises(ValueError, match="grad_steps"):
        solver.solve(op, x, threshold, grad_steps=2)
    with pytest.raises(ValueError, match="SoftThreshold or NonNegSoftThreshold"):
        solver.solve(op, x, HardThreshold(0.1))
    with pytest.raises(ValueError, match="scalar lambda"):
        solver.solve(op, x, SoftThreshold(torch.full((20,), 0.1, dtype=torch.float64)))
    with pytest.raises(ValueError, match="single dense dictionary"):
        solver.solve(op, x.unsqueeze(1), threshold)
    learnable = LinearDictionary(weight=P.clone(), learnable=True).double()
    with pytest.raises(ValueError, match="without an autograd graph"):
        solver.solve(learnable.bind(), x, threshold)
    with pytest.raises(ValueError, match="float32 or float64"):
        half = LinearDictionary(weight=P.half(), learnable=False).bind()
        solver.solve(half, x.half(), threshold)
    with pytest.raises(ValueError, match="init must have the code's shape"):
        solver.solve(op, x, threshold, init=torch.zeros(3, 19, dtype=torch.float64))
    with pytest.raises(ValueError, match="init must be finite"):
        solver.solve(op, x, threshold, init=torch.full((3, 20), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="max_iter"):
        CoordinateDescent(max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        CoordinateDescent(tol=-1.0)
    with pytest.raises(TypeError, match="support_sweeps"):
        CoordinateDescent(support_sweeps=1)
    # without numba: an ImportError that says what to install
    monkeypatch.setitem(sys.modules, "sparsecode.solvers._cd_kernel", None)
    with pytest.raises(ImportError, match="numba"):
        solver.solve(op, x, threshold)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_refused_with_the_alternatives():
    op, x, P = unit_norm_problem(4, 16, 32, 4)
    gpu_op = LinearDictionary(weight=P.cuda(), learnable=False).bind()
    with pytest.raises(ValueError, match="runs on the CPU"):
        CoordinateDescent().solve(gpu_op, x.cuda(), SoftThreshold(0.1))
