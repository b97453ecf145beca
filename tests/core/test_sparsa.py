"""SpaRSA's own rules: the Barzilai–Borwein step, the non-monotone acceptance test and its fallback, float32."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import FISTA, LinearDictionary, SoftThreshold, SpaRSA, objective

from _lasso_problems import unit_norm_problem  # tests/core is on sys.path (pytest prepend import mode)

F64 = torch.float64


def _problem(seed: int, n: int = 30, m: int = 60, batch: int = 8, dtype=F64):
    return unit_norm_problem(seed, n, m, batch, dtype)


def _start(solver, op, x, threshold):
    b = op.encode(x)
    L = solver.lipschitz(op, x)
    return b, L, solver.init_state(op, x, b, threshold, L, torch.zeros_like(b))


@given(seed=st.integers(0, 10_000), frac=st.floats(0.05, 0.9))
@settings(max_examples=20)
def test_accepted_step_sets_the_barzilai_borwein_step(seed, frac):
    op, x, P = _problem(seed)
    threshold = SoftThreshold(frac * (x @ P).abs().amax().item())
    solver = SpaRSA(max_step=1e12)
    b, L, state = _start(solver, op, x, threshold)
    new, _ = solver.step(op, x, b, threshold, L, state, need_measure=False)
    s = new["u"] - state["u"]
    moved = s.abs().amax(dim=1) > 0
    gram = P.T @ P
    sy = ((s @ gram) * s).sum(dim=1)
    bb = (s * s).sum(dim=1) / sy
    # the first step is the ISTA step 1/L: always accepted, then the BB step (never below 1/L)
    expected = torch.where(moved, bb.clamp_min(1 / L.item()), torch.full_like(bb, 1 / L.item()))
    # the solver takes <s, P^T P s> as <s, g_new> - <s, g> (sharing <s, g> with the objective change): for a tiny
    # move that difference cancels, and its rounding error is a few eps times the two dot products (seed 1493: |s|
    # about 1e-8, relative error 5e-9)
    cancellation = (s * new["g"]).sum(dim=1).abs() + (s * state["g"]).sum(dim=1).abs()
    rtol = 1e-10 + 16 * torch.finfo(F64).eps * torch.where(moved, cancellation / sy.abs(), torch.zeros_like(sy))
    assert bool(((new["step"] - expected).abs() <= rtol * expected.abs()).all()), (new["step"], expected)
    assert bool((objective(op, x, new["u"], threshold) <= objective(op, x, state["u"], threshold) + 1e-12).all())


@given(seed=st.integers(0, 10_000))
@settings(max_examples=20)
def test_rejected_step_keeps_the_point_and_falls_back_to_ista(seed):
    op, x, P = _problem(seed)
    threshold = SoftThreshold(0.1 * (x @ P).abs().amax().item())
    solver = SpaRSA(memory=1)
    b, L, state = _start(solver, op, x, threshold)
    for _ in range(3):
        state, _ = solver.step(op, x, b, threshold, L, state, need_measure=False)
    state["step"] = torch.full_like(state["step"], 1e6 / L.item())  # absurdly long: the objective must rise
    new, _ = solver.step(op, x, b, threshold, L, state, need_measure=False)
    f_old = objective(op, x, state["u"], threshold)
    f_new = objective(op, x, new["u"], threshold)
    rejected = torch.isclose(new["step"], torch.full_like(new["step"], 1 / L.item()), rtol=1e-12, atol=0)
    assert bool(rejected.any())
    assert torch.equal(new["u"][rejected], state["u"][rejected])
    assert torch.equal(new["g"][rejected], state["g"][rejected])
    assert bool((f_new <= f_old + 1e-12).all())  # memory 1: monotone
    # the retry with 1/L is accepted
    after, _ = solver.step(op, x, b, threshold, L, new, need_measure=False)
    assert bool((objective(op, x, after["u"], threshold)[rejected] < f_old[rejected]).all())


def test_gradient_state_matches_the_point():
    op, x, P = _problem(5)
    threshold = SoftThreshold(0.2)
    res = SpaRSA(max_iter=40).solve(op, x, threshold)
    torch.testing.assert_close(res.state["g"], res.code @ (P.T @ P) - x @ P, rtol=1e-10, atol=1e-10)


def test_fewer_iterations_than_fista_on_a_well_conditioned_design():
    op, x, P = _problem(0, n=100, m=200, batch=64)
    threshold = SoftThreshold(0.3 * (x @ P).abs().amax(dim=1).median().item())
    ours = SpaRSA(max_iter=5000, tol=1e-9).solve(op, x, threshold)
    fista = FISTA(max_iter=5000, tol=1e-9, restart=True).solve(op, x, threshold)
    assert bool(ours.converged.all()) and bool(fista.converged.all())
    assert ours.n_iter_per_sample.float().mean() < 0.8 * fista.n_iter_per_sample.float().mean()
    f_ours, f_fista = objective(op, x, ours.code, threshold), objective(op, x, fista.code, threshold)
    torch.testing.assert_close(f_ours, f_fista, rtol=1e-8, atol=0)


def test_float32_reaches_the_float64_minimum():
    op64, x64, P = _problem(3, batch=32)
    lam = 0.2 * (x64 @ P).abs().amax().item()
    ref = FISTA(max_iter=20_000, tol=1e-12, restart=True).solve(op64, x64, SoftThreshold(lam)).code
    op32, x32, _ = _problem(3, batch=32, dtype=torch.float32)
    code = SpaRSA(max_iter=5000, tol=1e-5).solve(op32, x32, SoftThreshold(lam)).code
    f_ref = objective(op64, x64, ref, SoftThreshold(lam))
    f32 = objective(op64, x64, code.double(), SoftThreshold(lam))
    assert ((f32 - f_ref) / f_ref).max().item() < 1e-5


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="memory must be a positive int, got 0"):
        SpaRSA(memory=0)
    with pytest.raises(ValueError, match=r"sigma must be a number in \(0, 1\], got 2"):
        SpaRSA(sigma=2)
    with pytest.raises(ValueError, match="max_step must be a number >= 1"):
        SpaRSA(max_step=0.5)


def test_non_negative_lasso_from_an_infeasible_start():
    # init="encode" starts from P^T x, which has negative entries: SpaRSA projects it onto u >= 0 first
    from sparsecode import NonNegSoftThreshold

    op, x, P = _problem(7)
    threshold = NonNegSoftThreshold(0.1)
    assert bool(((x @ P) < 0).any())
    ours = SpaRSA(max_iter=20_000, tol=1e-10, init="encode").solve(op, x, threshold)
    ref = FISTA(max_iter=20_000, tol=1e-11, restart=True).solve(op, x, threshold)
    assert bool(ours.converged.all()) and bool((ours.code >= 0).all())
    torch.testing.assert_close(objective(op, x, ours.code, threshold), objective(op, x, ref.code, threshold),
                               rtol=1e-9, atol=0)


@pytest.mark.parametrize("n_features,n_atoms", [(30, 40), (10, 40)])  # cached Gram (fused) and wide (no Gram cached)
def test_dense_operator_gradient(n_features, n_atoms):
    g = torch.Generator().manual_seed(0)
    P = torch.randn(n_features, n_atoms, generator=g, dtype=F64)
    op = LinearDictionary(weight=P, learnable=False).bind()
    u = torch.randn(5, n_atoms, generator=g, dtype=F64)
    b = torch.randn(5, n_atoms, generator=g, dtype=F64)
    torch.testing.assert_close(op.gradient(u, b), u @ (P.T @ P) - b, rtol=1e-12, atol=1e-12)
