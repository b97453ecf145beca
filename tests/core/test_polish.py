"""The support polish (``polish_every``): exact on the right face, refused on a wrong one, the same answers as the
plain solvers (and scikit-learn), fewer iterations on sparse codes, clear errors where it cannot apply."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.linear_model import Lasso

from sparsecode import (ADMM, FISTA, HardThreshold, LearnedISTA, LinearDictionary, NonNegSoftThreshold, SoftThreshold,
                        SpaRSA, kkt_residual, objective)
from sparsecode.solvers.polish import SupportPolish, max_polish_support, polish_on_support

from _lasso_problems import unit_norm_problem  # tests/core is on sys.path (pytest prepend import mode)


def _sklearn(P, x, lam, positive=False):
    n = P.shape[0]
    out = [Lasso(alpha=lam / n, fit_intercept=False, tol=1e-15, max_iter=200_000, positive=positive)
           .fit(P.numpy(), xi).coef_ for xi in x.numpy()]
    return torch.tensor(np.array(out))


def _lam(b, frac, nonneg=False):
    return frac * float((b.clamp_min(0) if nonneg else b.abs()).amax(dim=1).median())


@pytest.mark.parametrize("make", [lambda: SpaRSA(max_iter=20_000, tol=1e-10, polish_every=2),
                                  lambda: ADMM(max_iter=20_000, tol=1e-10, polish_every=3),
                                  lambda: FISTA(max_iter=50_000, tol=1e-10, restart=True, polish_every=4)],
                         ids=["sparsa", "admm", "fista"])
@pytest.mark.parametrize("nonneg", [False, True])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 30), ratio=st.floats(0.5, 3.0), frac=st.floats(0.05, 0.9),
       batch=st.integers(1, 6))
def test_polished_solvers_match_sklearn(make, nonneg, seed, n, ratio, frac, batch):
    m = max(2, int(n * ratio))
    op, x, P = unit_norm_problem(seed, n, m, batch)
    lam = _lam(x @ P, frac, nonneg) or 0.1  # (all of P^T x negative: no scale from it for the non-negative Lasso)
    threshold = NonNegSoftThreshold(lam) if nonneg else SoftThreshold(lam)
    with torch.no_grad():
        res = make().solve(op, x, threshold)
    ref = _sklearn(P, x, lam, positive=nonneg)
    f_ours, f_ref = objective(op, x, res.code, threshold), objective(op, x, ref, threshold)
    assert (((f_ours - f_ref) / f_ref.abs().clamp_min(1e-300)).abs() <= 1e-8).all(), (f_ours - f_ref)
    assert bool(res.converged.all())
    # rows the polish certified meet the KKT test at 1e-10; the others stopped on the solver's own measure
    scale = (x @ P).abs().amax(dim=1)
    assert (kkt_residual(op, x, res.code, threshold) <= 1e-8 * scale + 1e-300).all()


def test_polish_is_exact_on_the_right_face_and_refused_on_a_wrong_one():
    op, x, P = unit_norm_problem(3, 40, 80, 5)
    lam = _lam(x @ P, 0.4)
    threshold = SoftThreshold(lam)
    with torch.no_grad():
        exact = FISTA(max_iter=100_000, tol=1e-13, restart=True).solve(op, x, threshold).code
    b, gram = x @ P, P.T @ P
    # a point on the minimiser's face but far from it: the polish lands on the minimiser
    start = torch.sign(exact) * (exact.abs() + 0.3) * (exact != 0)
    bound = torch.full((5,), 1e-9)
    code, ok = polish_on_support(gram, b, start, threshold, bound)
    assert bool(ok.all())
    torch.testing.assert_close(code, exact, atol=1e-9, rtol=0)
    # a face missing one atom of the support (in the first row): not certified, that row is left as it was
    wrong = start.clone()
    wrong[0, wrong[0].nonzero()[0]] = 0
    code, ok = polish_on_support(gram, b, wrong, threshold, bound)
    assert not bool(ok[0]) and bool(ok[1:].all())
    assert torch.equal(code[0], wrong[0])
    # a flipped sign: not certified
    flipped = start.clone()
    flipped[1, flipped[1].nonzero()[0]] *= -1
    assert not bool(polish_on_support(gram, b, flipped, threshold, bound)[1][1])


def test_polish_leaves_out_supports_above_the_cap():
    m = 8
    cap = max_polish_support(m)
    assert cap == int((3 * m * m) ** (1 / 3)) and cap < m
    op, x, P = unit_norm_problem(0, 12, m, 2)
    u = torch.zeros(2, m, dtype=torch.float64)
    u[0, : cap + 1] = 1.0  # one atom too many
    u[1, :1] = 1.0
    code, ok = polish_on_support(P.T @ P, x @ P, u, SoftThreshold(0.0), torch.full((2,), 1e30))
    assert not bool(ok[0]) and torch.equal(code[0], u[0]) and bool(ok[1])


def test_support_polish_waits_for_a_stable_face():
    op, x, P = unit_norm_problem(1, 20, 30, 3)
    threshold = SoftThreshold(_lam(x @ P, 0.5))
    with torch.no_grad():
        exact = FISTA(max_iter=100_000, tol=1e-13, restart=True).solve(op, x, threshold).code
    polisher = SupportPolish(P.T @ P, threshold, 5)
    ids, bound = torch.tensor([4, 0, 2]), torch.full((3,), 1e-9)
    assert polisher(ids, exact, x @ P, bound).numel() == 0  # first sight of these faces (the record starts at 0)
    assert torch.equal(polisher.apply(exact), exact)
    start = exact + 0.1 * (exact != 0)  # the same faces again, away from the minimiser: polished and certified
    assert polisher(ids, start, x @ P, bound).tolist() == [0, 1, 2]
    assert polisher.done.tolist() == [True, False, True, False, True]
    batch = torch.zeros(5, exact.shape[1], dtype=exact.dtype)
    batch[ids] = start
    torch.testing.assert_close(polisher.apply(batch)[ids], exact, atol=1e-9, rtol=0)


@pytest.mark.parametrize("make", [lambda **kw: SpaRSA(max_iter=5000, tol=1e-9, **kw),
                                  lambda **kw: ADMM(max_iter=5000, tol=1e-9, **kw)], ids=["sparsa", "admm"])
def test_polish_ends_sparse_samples_early_with_the_same_codes(make):
    # 300 signals: the CPU loop over rows; trace=True: the general loop. Both polish.
    op, x, P = unit_norm_problem(7, 50, 100, 300)
    threshold = SoftThreshold(_lam(x @ P, 0.5))
    with torch.no_grad():
        plain = make().solve(op, x, threshold)
        rows = make(polish_every=3).solve(op, x, threshold)
        general = make(polish_every=3).solve(op, x[:40], threshold, trace=True)
    assert bool(plain.converged.all() and rows.converged.all() and general.converged.all())
    assert rows.n_iter_per_sample.float().mean() < 0.8 * plain.n_iter_per_sample.float().mean()
    f_plain, f_rows = objective(op, x, plain.code, threshold), objective(op, x, rows.code, threshold)
    assert (f_rows <= f_plain + 1e-12 * f_plain.abs()).all()
    torch.testing.assert_close(general.code, rows.code[:40], atol=1e-8, rtol=0)
    # the trace reports the polished codes from the iteration that certified them
    assert torch.equal(general.trace.objective[-1], objective(op, x[:40], general.code, threshold))


def test_polish_in_float32():
    op, x, P = unit_norm_problem(2, 64, 128, 200, dtype=torch.float32)
    threshold = SoftThreshold(_lam(x.double() @ P, 0.5))
    with torch.no_grad():
        res = ADMM(max_iter=3000, tol=1e-5, polish_every=5).solve(op, x, threshold)
    ref = _sklearn(P, x.double(), float(threshold.lam))
    op64 = LinearDictionary(weight=P, learnable=False).bind()
    f_ours = objective(op64, x.double(), res.code.double(), threshold)
    f_ref = objective(op64, x.double(), ref, threshold)
    assert ((f_ours - f_ref) / f_ref <= 1e-6).all()


def test_bad_polish_arguments():
    with pytest.raises(ValueError, match="polish_every must be"):
        FISTA(tol=1e-6, polish_every=0)
    with pytest.raises(ValueError, match="polish_every needs a tolerance"):
        FISTA(polish_every=5)
    op, x, P = unit_norm_problem(0, 10, 20, 4)
    with pytest.raises(ValueError, match="l1-type threshold"), torch.no_grad():
        FISTA(tol=1e-6, polish_every=2).solve(op, x, HardThreshold(0.1))
    with pytest.raises(ValueError, match="lambda shared by the samples"), torch.no_grad():
        FISTA(tol=1e-6, polish_every=2).solve(op, x, SoftThreshold(torch.full((4, 1), 0.1)))
    with torch.no_grad():  # one lambda per atom is fine
        per_atom = FISTA(max_iter=5000, tol=1e-9, polish_every=2).solve(op, x, SoftThreshold(torch.full((20,), 0.1)))
        shared = FISTA(max_iter=5000, tol=1e-9).solve(op, x, SoftThreshold(0.1))
    f_atom = objective(op, x, per_atom.code, SoftThreshold(0.1))
    f_shared = objective(op, x, shared.code, SoftThreshold(0.1))
    assert ((f_atom - f_shared).abs() <= 1e-9 * f_shared).all()
    weight = P.clone().requires_grad_(True)
    learnable = LinearDictionary(weight=weight).bind()
    with pytest.raises(ValueError, match="without an autograd graph"):
        FISTA(tol=1e-6, polish_every=2).solve(learnable, x, SoftThreshold(0.1))
    stacked = LinearDictionary(weight=P.expand(4, 10, 20).clone(), learnable=False).bind()
    with pytest.raises(ValueError, match="single dense dictionary"), torch.no_grad():
        FISTA(tol=1e-6, polish_every=2).solve(stacked, x.unsqueeze(1), SoftThreshold(0.1))
    assert LearnedISTA(4).polish_every is None  # a learned iteration does not minimise: it never polishes


def test_implicit_layer_trains_through_polished_codes():
    from sparsecode import SparseReconstruction

    grads = []
    for polish_every in (None, 3):
        g = torch.Generator().manual_seed(0)
        dictionary = LinearDictionary(20, 40, generator=g, dtype=torch.float64)
        x = torch.randn(64, 20, generator=g, dtype=torch.float64)
        layer = SparseReconstruction(dictionary, ADMM(max_iter=5000, tol=1e-11, polish_every=polish_every),
                                     SoftThreshold(0.3), differentiation="implicit")
        layer(x).square().sum().backward()
        grads.append(dictionary.weight.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-7, rtol=1e-7)
