"""Convergence guarantees: monotone ISTA, the FISTA rate bound, closed forms, LCA equilibria (paper Appendix B)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from sparsecode import DCTDictionary, FISTA, ISTA, LCA, LinearDictionary, SoftThreshold, objective


def _problem(seed, n, m, batch=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, m, generator=g, dtype=torch.float64),
            torch.randn(batch, n, generator=g, dtype=torch.float64))


@given(seed=st.integers(0, 10_000), n=st.integers(3, 20), m=st.integers(2, 40), frac=st.floats(0.01, 0.9))
def test_ista_objective_never_increases(seed, n, m, frac):
    P, x = _problem(seed, n, m)
    lam = frac * (x @ P).abs().amax().item()
    op = LinearDictionary(weight=P, lipschitz="exact").bind()
    res = ISTA(max_iter=60).solve(op, x, SoftThreshold(lam), trace=True)
    f = res.trace.objective
    f0 = objective(op, x, torch.zeros_like(res.code), SoftThreshold(lam))
    f = torch.cat([f0[None], f])
    assert torch.all(f[1:] <= f[:-1] + 1e-10 * f[:-1].abs().clamp_min(1))


@given(seed=st.integers(0, 10_000), n=st.integers(3, 20), m=st.integers(2, 40), frac=st.floats(0.01, 0.9))
def test_fista_obeys_beck_teboulle_bound(seed, n, m, frac):
    P, x = _problem(seed, n, m)
    lam = frac * (x @ P).abs().amax().item()
    d = LinearDictionary(weight=P, lipschitz="exact")
    op = d.bind()
    th = SoftThreshold(lam)
    u_star = FISTA(max_iter=100_000, tol=1e-13, restart=True).solve(op, x, th).code
    f_star = objective(op, x, u_star, th)
    res = FISTA(max_iter=80).solve(op, x, th, trace=True)
    L = torch.linalg.matrix_norm(P, ord=2) ** 2
    k = torch.arange(1, 81, dtype=torch.float64)[:, None]
    bound = 2 * L * (u_star ** 2).sum(dim=1)[None] / (k + 1) ** 2  # u_0 = 0
    gap = res.trace.objective - f_star[None]
    assert torch.all(gap <= bound + 1e-9 * f_star.abs().clamp_min(1))


@given(seed=st.integers(0, 10_000), n=st.integers(2, 20), m=st.integers(1, 30), extra=st.floats(1.001, 5.0))
def test_large_lambda_gives_zero_code(seed, n, m, extra):
    P, x = _problem(seed, n, m)
    lam = extra * (x @ P).abs().amax().item()
    for solver in (ISTA(max_iter=20), FISTA(max_iter=20), LCA(max_iter=50, form="rozell")):
        code = solver.solve(LinearDictionary(weight=P).bind(), x, SoftThreshold(lam)).code
        assert torch.count_nonzero(code) == 0


@pytest.mark.parametrize("size", [16, (6, 10)])
@given(seed=st.integers(0, 10_000), lam=st.floats(0.0, 2.0))
def test_orthonormal_dct_one_ista_step_is_soft_threshold(size, seed, lam):
    d = DCTDictionary(size)
    shape = (3,) + ((size,) if isinstance(size, int) else size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    res = ISTA(max_iter=1).solve(d.bind(), x, SoftThreshold(lam))
    b = d.encode(x)
    expected = torch.sign(b) * (b.abs() - lam).clamp_min(0)
    assert torch.allclose(res.code, expected, atol=1e-12)
    # and it is already the minimiser: another step changes nothing
    res2 = ISTA(max_iter=5).solve(d.bind(), x, SoftThreshold(lam))
    assert torch.allclose(res2.code, expected, atol=1e-12)


@pytest.mark.parametrize("form", ["vars", "rozell"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lca_euler_reaches_the_fista_solution(form, seed):
    P, x = _problem(seed, 16, 10)
    P = P / P.norm(dim=0, keepdim=True)
    lam = 0.3 * (x @ P).abs().amax().item()
    op = LinearDictionary(weight=P).bind()
    u_fista = FISTA(max_iter=20_000, tol=1e-12, restart=True).solve(op, x, SoftThreshold(lam)).code
    res = LCA(max_iter=100_000, tol=1e-10, form=form).solve(op, x, SoftThreshold(lam))
    assert bool(res.converged.all())
    assert torch.allclose(res.code, u_fista, atol=1e-5)


@pytest.mark.parametrize("form", ["vars", "rozell"])
def test_lca_adaptive_ode_reaches_the_lasso_solution(form):
    """Appendix B, numerically: with alpha=1, beta=gamma=2 and the threshold lambda/2, the equilibrium of the
    two-population dynamics (Eq. 8-9), integrated by an adaptive solver, is the Lasso solution with penalty lambda."""
    P, x = _problem(7, 12, 8, batch=2)
    P = P / P.norm(dim=0, keepdim=True)
    lam = 0.25 * (x @ P).abs().amax().item()
    op = LinearDictionary(weight=P).bind()
    u_fista = FISTA(max_iter=20_000, tol=1e-12, restart=True).solve(op, x, SoftThreshold(lam)).code
    lca = LCA(form=form, method="dopri5", t_end=400.0, rtol=1e-10, atol=1e-12, tol=1e-6)
    res = lca.solve(op, x, SoftThreshold(lam))
    assert torch.allclose(res.code, u_fista, atol=1e-5)
    if form == "vars":  # z* = P u* + x
        assert torch.allclose(res.state["z"], u_fista @ P.T + x, atol=1e-5)


def test_per_sample_stopping_freezes_converged_samples():
    P, x = _problem(3, 20, 30, batch=2)
    x = x.clone()
    x[0] = 0.0  # a zero signal: its code is 0, optimal at the start (0 iterations)
    th = SoftThreshold(0.1 * (x[1] @ P).abs().amax().item())
    op = LinearDictionary(weight=P, lipschitz=float(torch.linalg.matrix_norm(P, ord=2) ** 2)).bind()
    res = FISTA(max_iter=5000, tol=1e-9).solve(op, x, th)
    assert res.n_iter_per_sample[0] == 0 and res.n_iter_per_sample[1] > 10
    assert res.n_iter == int(res.n_iter_per_sample.max())
    assert bool(res.converged.all())
    assert torch.count_nonzero(res.code[0]) == 0
    alone = FISTA(max_iter=5000, tol=1e-9).solve(op, x[1:], th)
    assert torch.allclose(alone.code[0], res.code[1], rtol=0, atol=1e-12)


def test_fixed_steps_run_exactly_max_iter():
    P, x = _problem(0, 8, 5)
    res = FISTA(max_iter=7).solve(LinearDictionary(weight=P).bind(), x, SoftThreshold(0.1))
    assert res.n_iter == 7 and torch.all(res.n_iter_per_sample == 7) and not bool(res.converged.any())


def test_restart_converges_faster_on_an_ill_conditioned_problem():
    P, x = _problem(11, 30, 60)
    lam = 0.05 * (x @ P).abs().amax().item()
    op = LinearDictionary(weight=P).bind()
    plain = FISTA(max_iter=100_000, tol=1e-9).solve(op, x, SoftThreshold(lam))
    restart = FISTA(max_iter=100_000, tol=1e-9, restart=True).solve(op, x, SoftThreshold(lam))
    assert bool(plain.converged.all()) and bool(restart.converged.all())
    assert restart.n_iter < plain.n_iter
