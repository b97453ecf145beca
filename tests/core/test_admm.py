"""ADMM's own rules: the exact shifted solve and its derivative, the penalty adaptation, the KKT bound behind ``tol``,
samples independent of each other, batched dictionaries, float32, unrolled gradients, bad arguments."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import (ADMM, FISTA, DCTDictionary, LinearDictionary, NonNegSoftThreshold, SoftThreshold,
                        SparseReconstruction, kkt_residual, objective)
from sparsecode.dictionaries.dense import DenseOperator

from _lasso_problems import unit_norm_problem  # tests/core is on sys.path (pytest prepend import mode)

F64 = torch.float64


def _problem(seed: int, n: int = 20, m: int = 40, batch: int = 6, dtype=F64):
    return unit_norm_problem(seed, n, m, batch, dtype)


@given(seed=st.integers(0, 10_000), n=st.integers(2, 12), m=st.integers(1, 24),
       log_shift=st.floats(-4, 2), stacked=st.booleans())
@settings(max_examples=30)
def test_shifted_gram_solve_is_the_regularised_inverse(seed, n, m, log_shift, stacked):
    # overcomplete P (m > n) has a repeated zero eigenvalue: the solve must stay exact there
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(2, n, m, generator=g, dtype=F64)
    shift = torch.full((3, 1, 1, 1) if stacked else (3, 1, 1), 10.0 ** log_shift, dtype=F64)
    shift = shift * torch.rand(shift.shape, generator=g, dtype=F64).add(0.5)  # one shift per sample
    v = torch.randn((3, 2, 4, m) if stacked else (3, 2, m), generator=g, dtype=F64)
    op = DenseOperator(W, stacked=stacked)
    A = W.transpose(-1, -2) @ W + shift.reshape(3, 1, 1, 1) * torch.eye(m, dtype=F64)
    # A is (3, 2, m, m) with the shift of sample i; u solves u A = v row by row (A symmetric). A small shift makes A
    # ill-conditioned, so compare backward errors (the residual against |A| |u| + |v|), not the solutions
    u = op.shifted_gram_solve(v, shift)
    rows = u if stacked else u.unsqueeze(-2)
    residual = rows @ A - (v if stacked else v.unsqueeze(-2))
    size = torch.linalg.matrix_norm(A, ord=2).unsqueeze(-1).unsqueeze(-1) * rows.abs().amax() + v.abs().amax()
    assert bool((residual.abs() <= 1e-10 * size).all()), residual.abs().max()
    # and a wrong shift would be caught
    wrong = op.shifted_gram_solve(v, 2 * shift)
    wrong_rows = wrong if stacked else wrong.unsqueeze(-2)
    assert float((wrong_rows @ A - (v if stacked else v.unsqueeze(-2))).abs().max()) > 1e-6 * float(v.abs().max())


def test_shifted_gram_solve_carries_the_exact_derivative():
    # an overcomplete dictionary (repeated zero eigenvalues): differentiating eigh would give NaN/inf, the
    # refinement form must give the derivative of (W^T W + sI)^{-1} v in W, v and s
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 7, generator=g, dtype=F64, requires_grad=True)
    v = torch.randn(3, 7, generator=g, dtype=F64, requires_grad=True)
    s = torch.tensor([[0.3], [1.0], [2.0]], dtype=F64, requires_grad=True)

    def ours(W, v, s):
        return DenseOperator(W).shifted_gram_solve(v, s)

    def reference(W, v, s):
        A = W.T @ W + s.unsqueeze(-1) * torch.eye(7, dtype=F64)
        return torch.linalg.solve(A, v.unsqueeze(-1)).squeeze(-1)

    torch.autograd.gradcheck(ours, (W, v, s))
    out, ref = ours(W, v, s), reference(W, v, s)
    torch.testing.assert_close(out, ref)
    cot = torch.randn(out.shape, generator=g, dtype=F64)
    grads = torch.autograd.grad(out, (W, v, s), cot)
    ref_grads = torch.autograd.grad(ref, (W, v, s), cot)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@given(seed=st.integers(0, 10_000), frac=st.floats(0.05, 0.9), relaxation=st.sampled_from([1.0, 1.5, 1.8]),
       adaptive=st.booleans(), scale=st.sampled_from([1e-2, 1.0, 1e2]))
@settings(max_examples=25, deadline=None)
def test_the_tolerance_measure_bounds_the_kkt_residual(seed, frac, relaxation, adaptive, scale):
    # a sample stopped by tol has a KKT residual (distance from 0 to the subdifferential, sup-norm) at most tol times
    # |P^T x|_inf: the measure is an upper bound, not a heuristic
    op, x, P = _problem(seed)
    x = scale * x
    b = x @ P
    threshold = SoftThreshold(frac * b.abs().amax().item())
    for tol in (1e-3, 1e-6):
        res = ADMM(max_iter=20_000, tol=tol, relaxation=relaxation, adaptive=adaptive).solve(op, x, threshold)
        assert bool(res.converged.all())
        kkt = kkt_residual(op, x, res.code, threshold)
        assert bool((kkt <= tol * b.abs().amax(dim=1) * (1 + 1e-9) + 1e-12).all()), (kkt, tol)


def test_a_wrong_measure_would_be_caught():
    # the bound test above can fail: stopping at the first iteration gives a KKT residual far above tol
    op, x, P = _problem(1)
    threshold = SoftThreshold(0.1 * (x @ P).abs().amax().item())
    code = ADMM(max_iter=1).solve(op, x, threshold).code
    assert bool((kkt_residual(op, x, code, threshold) > 1e-3 * (x @ P).abs().amax(dim=1)).all())


def test_adaptation_rescales_the_penalty_and_keeps_the_code_and_the_unscaled_dual():
    op, x, P = _problem(2)
    threshold = SoftThreshold(0.05 * (x @ P).abs().amax().item())
    solver = ADMM(rho=30.0, adapt_every=1)  # far too large: the dual residual dominates, rho must shrink
    b = op.encode(x)
    L = solver.lipschitz(op, x)
    state = solver.init_state(op, x, b, threshold, L, torch.zeros_like(b))
    rho0 = state["rho"].clone()
    for _ in range(3):
        prev = state
        state, _ = solver.step(op, x, b, threshold, L, state, need_measure=False)
    assert bool((state["rho"] < rho0).all())
    # the same step without adapting: the same code z = Z / rho and the same unscaled dual W
    unadapted, _ = ADMM(rho=30.0, adaptive=False).step(op, x, b, threshold, L, prev, need_measure=False)
    torch.testing.assert_close(solver.code(state, threshold, L), solver.code(unadapted, threshold, L))
    torch.testing.assert_close(state["W"], unadapted["W"])
    assert not torch.allclose(state["Z"], unadapted["Z"])
    torch.testing.assert_close(state["damping"], op.shift_damping(state["rho"]))


def test_only_homogeneous_thresholds_are_flagged():
    # ADMM thresholds rho v with a unit step when the threshold says prox_{s lam R}(c v) = c prox_{(s/c) lam R}(v)
    from sparsecode import HardThreshold, SmoothSoftThreshold
    g = torch.Generator().manual_seed(3)
    v = 3 * torch.randn(50, generator=g, dtype=F64)
    for threshold in (SoftThreshold(0.7), NonNegSoftThreshold(0.7), HardThreshold(0.7), SmoothSoftThreshold(0.7)):
        holds = all(torch.allclose(threshold.prox(c * v, 1.0), c * threshold.prox(v, 1.0 / c)) for c in (0.3, 4.0))
        assert holds == threshold.homogeneous, type(threshold).__name__


def test_a_non_homogeneous_threshold_runs_through_the_general_prox():
    from sparsecode import HardThreshold
    op, x, P = _problem(10)
    threshold = HardThreshold(0.05)
    res = ADMM(max_iter=300).solve(op, x, threshold)
    # a local minimiser of the l0 problem: better than the zero code, and a fixed point of hard thresholding
    assert bool((objective(op, x, res.code, threshold) < 0.5 * x.square().sum(dim=1)).all())


def test_adaptation_finds_the_fast_penalty_from_a_poor_start():
    op, x, P = _problem(3, n=30, m=60, batch=16)
    threshold = SoftThreshold(0.1 * (x @ P).abs().amax().item())
    iters = {}
    for rho in (1e-3, 0.1, 10.0):
        for adaptive in (False, True):
            iters[rho, adaptive] = ADMM(max_iter=20_000, tol=1e-8, rho=rho, adaptive=adaptive).solve(
                op, x, threshold).n_iter
    worst_fixed = max(iters[rho, False] for rho in (1e-3, 10.0))
    assert max(iters[rho, True] for rho in (1e-3, 0.1, 10.0)) * 3 < worst_fixed, iters


def test_samples_are_independent_of_their_batch():
    op, x, P = _problem(4, batch=12)
    threshold = SoftThreshold(0.1 * (x @ P).abs().amax().item())
    solver = ADMM(max_iter=60)
    together = solver.solve(op, x, threshold).code
    alone = torch.cat([solver.solve(op, x[i:i + 1], threshold).code for i in range(12)])
    torch.testing.assert_close(together, alone, rtol=1e-10, atol=1e-12)
    # the same with a tolerance (rows leave the batch as they converge)
    solver = ADMM(max_iter=5000, tol=1e-7)
    together = solver.solve(op, x, threshold)
    for i in (0, 5, 11):
        single = solver.solve(op, x[i:i + 1], threshold)
        assert int(single.n_iter_per_sample[0]) == int(together.n_iter_per_sample[i])
        torch.testing.assert_close(single.code[0], together.code[i], rtol=1e-10, atol=1e-12)


def test_non_negative_codes_match_fista():
    op, x, P = _problem(5)
    threshold = NonNegSoftThreshold(0.05 * (x @ P).abs().amax().item())
    ours = ADMM(max_iter=20_000, tol=1e-10, init="encode").solve(op, x, threshold)
    ref = FISTA(max_iter=50_000, tol=1e-11, restart=True).solve(op, x, threshold)
    assert bool((ours.code >= 0).all())
    torch.testing.assert_close(objective(op, x, ours.code, threshold), objective(op, x, ref.code, threshold),
                               rtol=1e-9, atol=1e-12)


def test_float32_reaches_float32_accuracy():
    op64, x64, P = _problem(6, n=40, m=80, batch=32)
    lam = 0.1 * (x64 @ P).abs().amax().item()
    ref = FISTA(max_iter=50_000, tol=1e-11, restart=True).solve(op64, x64, SoftThreshold(lam))
    op32 = LinearDictionary(weight=P.float(), learnable=False).bind()
    res = ADMM(max_iter=2000, tol=1e-5).solve(op32, x64.float(), SoftThreshold(lam))
    assert res.code.dtype == torch.float32 and bool(res.converged.all())
    f32 = objective(op64, x64, res.code.double(), SoftThreshold(lam))
    f64 = objective(op64, x64, ref.code, SoftThreshold(lam))
    assert float(((f32 - f64) / f64).max()) < 1e-5


def test_batched_heads_and_stacked_signals_match_per_matrix_solves():
    g = torch.Generator().manual_seed(7)
    W = torch.randn(3, 6, 10, generator=g, dtype=F64)
    x = torch.randn(4, 3, 5, 6, generator=g, dtype=F64)  # 4 samples, 3 heads, 5 signals per head
    threshold = SoftThreshold(0.2)
    solver = ADMM(max_iter=5000, tol=1e-10)
    stacked = solver.solve(DenseOperator(W, stacked=True), x, threshold)
    assert bool(stacked.converged.all())
    for h in range(3):
        single = FISTA(max_iter=50_000, tol=1e-11, restart=True).solve(
            DenseOperator(W[h]), x[:, h].reshape(20, 6), threshold).code
        torch.testing.assert_close(stacked.code[:, h].reshape(20, 10), single, rtol=1e-6, atol=1e-8)


def test_unrolled_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(8)
    W = torch.randn(5, 8, generator=g, dtype=F64, requires_grad=True)
    x = torch.randn(3, 5, generator=g, dtype=F64, requires_grad=True)
    # a fixed step fixes L and so rho = 0.1 L (from the power iteration it would move with W, undifferentiated)
    solver = ADMM(max_iter=15, adaptive=False, step=0.2)

    def run(W, x):
        return solver.solve(DenseOperator(W), x, SoftThreshold(0.3)).code

    torch.autograd.gradcheck(run, (W, x))
    # lambda: a learnable threshold, against central differences of a scalar loss
    threshold = SoftThreshold(torch.tensor(0.3, dtype=F64), learnable=True)
    loss = solver.solve(DenseOperator(W.detach()), x.detach(), threshold).code.square().sum()
    (grad,) = torch.autograd.grad(loss, threshold.lam_param)
    eps = 1e-6
    with torch.no_grad():
        up, down = (solver.solve(DenseOperator(W), x, SoftThreshold(0.3 + d)).code.square().sum() for d in (eps, -eps))
    torch.testing.assert_close(grad, (up - down) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_learnable_dictionary_trains_through_admm_in_both_modes():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(8, 6, generator=g, dtype=F64)
    for mode in ("unroll", "implicit"):
        layer = SparseReconstruction(LinearDictionary(6, 12, generator=torch.Generator().manual_seed(0), dtype=F64),
                                     solver=ADMM(max_iter=50, tol=1e-9 if mode == "implicit" else None),
                                     threshold=SoftThreshold(0.1), differentiation=mode)
        layer(x).square().sum().backward()
        grad = layer.dictionary.weight.grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


def test_bad_arguments_and_dictionaries():
    with pytest.raises(ValueError, match="rho must be a positive number"):
        ADMM(rho=0)
    with pytest.raises(ValueError, match=r"relaxation must be a number in \(0, 2\), got 2"):
        ADMM(relaxation=2)
    with pytest.raises(TypeError, match="adaptive must be a bool, got str"):
        ADMM(adaptive="yes")
    with pytest.raises(ValueError, match="adapt_every must be a positive int"):
        ADMM(adapt_every=0)
    with pytest.raises(TypeError, match="ADMM needs a dense dictionary .* got DCTOperator|ADMM needs a dense"):
        ADMM().solve(DCTDictionary(8).bind(), torch.randn(2, 8), SoftThreshold(0.1))


@given(seed=st.integers(0, 10_000), n=st.integers(1, 10), m=st.integers(1, 16), stacked=st.booleans())
@settings(max_examples=25)
def test_gram_row_norm_bounds_the_sup_norm_of_gram_products(seed, n, m, stacked):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(3, n, m, generator=g, dtype=F64)
    op = DenseOperator(W, stacked=stacked)
    c = op.gram_row_norm()
    G = W.transpose(-1, -2) @ W
    d = torch.randn((5, 3, 2, m) if stacked else (5, 3, m), generator=g, dtype=F64)
    Gd = op.gram(d)
    per_matrix = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
    assert bool((Gd.abs() <= c * per_matrix * (1 + 1e-12) + 1e-12).all())
    # it is the largest row norm of G (a product with that row's direction attains it), and at most |G|_2 = L
    rows = torch.linalg.vector_norm(G, dim=-1)
    torch.testing.assert_close(c.flatten(), rows.amax(dim=-1))
    assert bool((rows.amax(dim=-1) <= torch.linalg.matrix_norm(G, ord=2) * (1 + 1e-12)).all())


def test_the_starting_penalty_follows_the_mean_squared_atom_norm():
    # rho_0 = rho * tr(P^T P) / m: scaling the dictionary by c scales it by c^2, whatever L
    op, x, P = _problem(6)
    threshold = SoftThreshold(0.1)
    for c in (1.0, 3.0):
        scaled = DenseOperator(c * P)
        b = scaled.encode(x)
        L = ADMM().lipschitz(scaled, x)
        state = ADMM(rho=0.25).init_state(scaled, x, b, threshold, L, torch.zeros_like(b))
        expected = 0.25 * (c * P).square().sum(dim=0).mean()
        torch.testing.assert_close(state["rho"].flatten(), expected.expand(x.shape[0]))


def test_an_optimal_zero_start_is_a_fixed_point():
    op, x, P = _problem(12, batch=5)
    threshold = SoftThreshold(0.2 * (x @ P).abs().amax().item())
    x[0] *= 0.2 * threshold.lam / (x[0] @ P).abs().amax()  # optimal at 0
    x[3] *= 0.999 * threshold.lam / (x[3] @ P).abs().amax()  # just inside the boundary
    solver = ADMM(max_iter=3)
    b = op.encode(x)
    state = solver.init_state(op, x, b, threshold, solver.lipschitz(op, x), torch.zeros_like(b))
    # the dual of the minimiser 0 (P^T x) on the samples optimal at 0, the usual W_0 = 0 on the others
    optimal = torch.tensor([True, False, False, True, False])
    torch.testing.assert_close(state["W"][optimal], b[optimal], rtol=0, atol=0)
    assert torch.count_nonzero(state["W"][~optimal]) == 0
    # a start that is not 0 gets W_0 = 0
    state = solver.init_state(op, x, b, threshold, solver.lipschitz(op, x), torch.full_like(b, 1e-3))
    assert torch.count_nonzero(state["W"]) == 0
    # those samples keep the code 0 exactly at every iteration, with or without an autograd graph (with W_0 = 0
    # the first u-step leaves 0)
    xg = x.clone().requires_grad_(True)
    for k in (1, 2, 7, 40):
        for signals in (x, xg):
            assert torch.count_nonzero(ADMM(max_iter=k).solve(op, signals, threshold).code[optimal]) == 0


def test_the_starting_dual_of_a_non_convex_penalty_is_zero():
    from sparsecode import HardThreshold
    op, x, P = _problem(13)
    solver = ADMM()
    b = op.encode(x)
    state = solver.init_state(op, x, b, HardThreshold(0.1), solver.lipschitz(op, x), torch.zeros_like(b))
    assert torch.count_nonzero(state["W"]) == 0


def _coherent_problem(seed: int, n: int, m: int, batch: int):
    """Atoms mixed from n/2 base directions plus noise: a coherent design like a learned dictionary."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, n // 2, generator=g, dtype=torch.float64)
    P = base @ torch.randn(n // 2, m, generator=g, dtype=torch.float64)
    P = P + 0.3 * torch.randn(n, m, generator=g, dtype=torch.float64)
    return P / P.norm(dim=0), torch.randn(batch, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n, m", [(16, 32), (32, 64)])
def test_float32_tolerance_is_reached_thanks_to_the_penalty_floor(n, m, monkeypatch):
    # the u-step's cancellation leaves u an error of about eps |y| / rho: with rho balanced down to a small fraction
    # of L, float32 samples stall above tol = 1e-5; the floor 4 eps L / tol keeps every sample within reach
    P, x = _coherent_problem(0, n, m, 64)
    threshold = SoftThreshold(0.05 * float((x @ P).abs().amax(dim=1).median()))
    op = LinearDictionary(weight=P.float(), learnable=False).bind()
    solver = ADMM(max_iter=2000, tol=1e-5)
    with torch.no_grad():
        res = solver.solve(op, x.float(), threshold)
    assert bool(res.converged.all()), int((~res.converged).sum())
    floor = 4 * torch.finfo(torch.float32).eps / 1e-5 * float(op.lipschitz())
    assert float(res.state["rho"].min()) >= floor * (1 - 1e-6)
    monkeypatch.setattr(ADMM, "_rho_floor", lambda self, L, threshold, dtype: None)
    with torch.no_grad():
        stalled = solver.solve(op, x.float(), threshold)
    assert not bool(stalled.converged.all())  # without the floor some samples stall (the test can fail)


def test_no_penalty_floor_without_a_tolerance_or_in_float64_at_usual_tolerances():
    L = torch.tensor(20.0, dtype=torch.float64)
    threshold = SoftThreshold(0.1)
    assert ADMM(max_iter=5)._rho_floor(L, threshold, torch.float32) is None
    assert ADMM(max_iter=5, tol=1e-5, adaptive=False)._rho_floor(L, threshold, torch.float32) is None
    assert float(ADMM(max_iter=5, tol=1e-8)._rho_floor(L, threshold, torch.float64)) < 1e-6 * float(L)


def test_the_penalty_stops_adapting_so_that_a_cycling_sample_converges():
    """Found by Hypothesis (the tolerance test above, seed 3069): residual balancing kept alternating one sample's rho
    by factors of about 2 and 0.45, and the sample never reached tol=1e-6 in 20 000 iterations (its KKT residual went
    from 3e-5 back up to 2e-2). With the adaptation stopped after ``adapt_until`` iterations it converges."""
    op, x, P = _problem(3069)
    x = 0.01 * x
    b = x @ P
    threshold = SoftThreshold(0.05078125 * b.abs().amax().item())
    res = ADMM(max_iter=20_000, tol=1e-6, relaxation=1.0, adaptive=True).solve(op, x, threshold)
    assert bool(res.converged.all())
    assert int(res.n_iter) < 5000
    kkt = kkt_residual(op, x, res.code, threshold)
    assert bool((kkt <= 1e-6 * b.abs().amax(dim=1) * (1 + 1e-9) + 1e-12).all())
    stuck = ADMM(max_iter=3000, tol=1e-6, relaxation=1.0, adaptive=True, adapt_until=None).solve(op, x, threshold)
    assert not bool(stuck.converged.all())  # the cycle this guards against
    with pytest.raises(ValueError, match="adapt_until"):
        ADMM(adapt_until=0)
