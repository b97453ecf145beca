"""Solvers against independent oracles (scikit-learn) and against the optimality conditions.

scikit-learn's ``Lasso`` minimises ``1/(2 n) ||x - P u||^2 + alpha ||u||_1`` with ``n = n_features`` (the signal
length), so our ``lambda`` equals ``alpha * n``. ``sparse_encode(algorithm="lasso_cd", alpha=a)`` divides ``a`` by
``n`` internally, so there ``alpha == lambda``.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st
from sklearn.decomposition import sparse_encode

from sparsecode import (ADMM, FISTA, ISTA, LCA, LinearDictionary, NonNegSoftThreshold, SoftThreshold, SpaRSA, kkt_residual,
                        objective)

from _lasso_problems import sklearn_lasso  # tests/core is on sys.path (pytest prepend import mode)


def _problem(seed: int, n: int, m: int, batch: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(n, m, generator=g, dtype=torch.float64) / n ** 0.5
    x = scale * torch.randn(batch, n, generator=g, dtype=torch.float64)
    return P, x


SOLVERS = {
    "fista": lambda: FISTA(max_iter=20_000, tol=1e-11, restart=True),
    "fista_plain": lambda: FISTA(max_iter=50_000, tol=1e-11),
    "ista": lambda: ISTA(max_iter=100_000, tol=1e-11),
    "lca_vars": lambda: LCA(max_iter=200_000, tol=1e-11, form="vars"),
    "lca_rozell": lambda: LCA(max_iter=100_000, tol=1e-11, form="rozell"),
    "sparsa": lambda: SpaRSA(max_iter=100_000, tol=1e-11),
    "sparsa_monotone": lambda: SpaRSA(max_iter=100_000, tol=1e-11, memory=1),
    "admm": lambda: ADMM(max_iter=100_000, tol=1e-11),
    "admm_fixed_rho": lambda: ADMM(max_iter=100_000, tol=1e-11, adaptive=False, relaxation=1.0),
}


@pytest.mark.parametrize("solver_name", sorted(SOLVERS))
@pytest.mark.parametrize("nonneg", [False, True])
@given(seed=st.integers(0, 10_000), n=st.integers(6, 24), ratio=st.floats(0.3, 1.0),
       frac=st.floats(0.05, 0.9), scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_matchessklearn_lasso(solver_name, nonneg, seed, n, ratio, frac, scale):
    m = max(2, int(n * ratio))
    P, x = _problem(seed, n, m, 3, scale)
    b = x @ P
    lam_max = (b.clamp_min(0) if nonneg else b.abs()).amax(dim=1).min().item()
    lam = frac * lam_max if lam_max > 0 else 0.1 * scale
    threshold = NonNegSoftThreshold(lam) if nonneg else SoftThreshold(lam)
    op = LinearDictionary(weight=P, lipschitz="exact").bind()
    res = SOLVERS[solver_name]().solve(op, x, threshold)
    ref = sklearn_lasso(P, x, lam, positive=nonneg)
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    rel = ((f_ours - f_ref) / f_ref.abs().clamp_min(1e-300)).abs()
    assert rel.max().item() <= 1e-6, (rel, res.n_iter)
    assert bool(res.converged.all())


@given(seed=st.integers(0, 10_000), n=st.integers(6, 20), m=st.integers(2, 30), frac=st.floats(0.05, 0.9))
def test_matches_sparse_encode(seed, n, m, frac):
    P, x = _problem(seed, n, m, 4, 1.0)
    lam = frac * (x @ P).abs().amax().item()
    ref = sparse_encode(x.numpy(), P.T.numpy(), algorithm="lasso_cd", alpha=lam, max_iter=100_000)
    op = LinearDictionary(weight=P).bind()
    th = SoftThreshold(lam)
    res = FISTA(max_iter=50_000, tol=1e-11, restart=True).solve(op, x, th)
    f_ours = objective(op, x, res.code, th)
    f_ref = objective(op, x, torch.tensor(ref), th)
    assert (f_ours <= f_ref * (1 + 1e-6) + 1e-12).all()


@given(seed=st.integers(0, 10_000), n=st.integers(4, 20), m=st.integers(2, 30), frac=st.floats(0.05, 0.95))
def test_kkt_conditions_hold_at_solution(seed, n, m, frac):
    P, x = _problem(seed, n, m, 3, 1.0)
    lam = frac * (x @ P).abs().amax().item()
    op = LinearDictionary(weight=P).bind()
    th = SoftThreshold(lam)
    u = FISTA(max_iter=50_000, tol=1e-12, restart=True).solve(op, x, th).code
    corr = (x - u @ P.T) @ P  # P^T (x - P u)
    on = u != 0
    assert torch.all(corr.abs() <= lam * (1 + 1e-6) + 1e-9)
    assert torch.allclose(corr[on], lam * torch.sign(u[on]), rtol=1e-6, atol=1e-8)
    assert kkt_residual(op, x, u, th).max().item() <= 1e-7 * max(lam, 1.0)


def test_kkt_residual_detects_a_wrong_code():
    P, x = _problem(0, 10, 8, 2, 1.0)
    op = LinearDictionary(weight=P).bind()
    th = SoftThreshold(0.1)
    u = FISTA(max_iter=5000, tol=1e-12).solve(op, x, th).code
    assert kkt_residual(op, x, u, th).max() < 1e-8
    assert kkt_residual(op, x, u * 1.1, th).min() > 1e-4
