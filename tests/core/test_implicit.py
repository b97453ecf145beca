"""Implicit differentiation agrees with unrolling at convergence and with finite differences, with memory
independent of the iteration count; truncated differentiation backpropagates through the last k iterations only."""
from __future__ import annotations

import pytest
import torch

from sparsecode import (
    FISTA,
    ISTA,
    LCA,
    ConvDictionary,
    FFTConvDictionary,
    LinearDictionary,
    NonNegSoftThreshold,
    SoftThreshold,
    SparseReconstruction,
    materialize,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grads(mode, dictionary_factory, threshold_factory, solver_factory, x, weight_name="weight"):
    dictionary = dictionary_factory()
    threshold = threshold_factory()
    layer = SparseReconstruction(dictionary, solver=solver_factory(), threshold=threshold,
                                 differentiation=mode, backward_tol=1e-13)
    x = x.clone().requires_grad_(True)
    out = layer(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=F64).reshape(out.shape)
    loss = (out * weights).sum() + 0.5 * out.square().sum()
    return out.detach(), torch.autograd.grad(loss, [x, getattr(dictionary, weight_name), threshold.lam_param])


SOFT = lambda: SoftThreshold(0.8, learnable=True).double()  # noqa: E731
NONNEG = lambda: NonNegSoftThreshold(0.5, learnable=True).double()  # noqa: E731


@pytest.mark.parametrize("threshold_factory,solver_factory", [
    (SOFT, lambda: FISTA(max_iter=3000)),
    (NONNEG, lambda: FISTA(max_iter=3000)),
    pytest.param(SOFT, lambda: LCA(max_iter=6000), marks=pytest.mark.slow),
], ids=["fista-soft", "fista-nonneg", "lca-soft"])
def test_implicit_matches_unrolled_gradients_at_convergence(threshold_factory, solver_factory):
    P = torch.randn(10, 12, generator=_gen(0), dtype=F64)  # well conditioned on the active sets
    x = torch.randn(3, 10, generator=_gen(1), dtype=F64)
    L = float(torch.linalg.matrix_norm(P, ord=2) ** 2) * 1.01

    def dictionary():
        return LinearDictionary(weight=P, lipschitz=L)

    out_u, g_unroll = _grads("unroll", dictionary, threshold_factory, solver_factory, x)
    out_i, g_implicit = _grads("implicit", dictionary, threshold_factory, solver_factory, x)
    assert torch.allclose(out_u, out_i, atol=1e-9)
    for a, b in zip(g_unroll, g_implicit):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


def _conv_factory():
    weight = torch.randn(3, 1, 3, generator=_gen(0), dtype=F64)
    probe = ConvDictionary(1, weight=weight, ndim=1, padding=1, signal_size=7)
    L = float(torch.linalg.matrix_norm(materialize(probe, (1, 1, 7)), ord=2) ** 2) * 1.01
    return lambda: ConvDictionary(1, weight=weight, ndim=1, padding=1, signal_size=7, lipschitz=L), (2, 1, 7)


def _fft_factory():  # per-channel step sizes
    kernel = 0.5 * torch.randn(2, 2, 1, 3, 2, 2, generator=_gen(0), dtype=F64)
    return lambda: FFTConvDictionary(2, 2, (3, 3), kernel=kernel), (2, 2, 9)


@pytest.mark.parametrize("factory", [_conv_factory, _fft_factory], ids=["conv", "fft"])
def test_implicit_matches_unrolled_with_structured_dictionaries(factory):
    dictionary, shape = factory()
    x = torch.randn(shape, generator=_gen(1), dtype=F64)
    threshold = lambda: SoftThreshold(0.3, learnable=True).double()  # noqa: E731
    solver = lambda: FISTA(max_iter=3000)  # noqa: E731
    weight_name = "kernel" if "fft" in factory.__name__ else "weight"
    _, g_unroll = _grads("unroll", dictionary, threshold, solver, x, weight_name)
    _, g_implicit = _grads("implicit", dictionary, threshold, solver, x, weight_name)
    for a, b in zip(g_unroll, g_implicit):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("threshold_factory", [SOFT, NONNEG], ids=["soft", "nonneg"])
def test_fixed_point_and_cg_backward_solves_agree(threshold_factory):
    P = torch.randn(10, 12, generator=_gen(0), dtype=F64)
    x = torch.randn(3, 10, generator=_gen(1), dtype=F64)
    L = float(torch.linalg.matrix_norm(P, ord=2) ** 2) * 1.01

    def grads(method):
        threshold = threshold_factory()
        dictionary = LinearDictionary(weight=P, lipschitz=L)
        layer = SparseReconstruction(dictionary, solver=FISTA(max_iter=800), threshold=threshold,
                                     differentiation="implicit", backward_method=method, backward_max_iter=20000,
                                     backward_tol=1e-14)
        xg = x.clone().requires_grad_(True)
        loss = (layer(xg) * torch.linspace(-1, 1, 10, dtype=F64)).sum()
        return torch.autograd.grad(loss, [xg, dictionary.weight, threshold.lam_param])

    for a, b in zip(grads("cg"), grads("fixed_point")):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), (a - b).abs().max()


def test_implicit_gradcheck():
    P = torch.randn(5, 7, generator=_gen(3), dtype=F64)
    L = float(torch.linalg.matrix_norm(P, ord=2) ** 2) * 1.01
    layer = SparseReconstruction(LinearDictionary(weight=P, lipschitz=L),
                                 solver=FISTA(max_iter=5000, tol=1e-12, restart=True),
                                 threshold=SoftThreshold(0.15, learnable=True), differentiation="implicit",
                                 backward_tol=1e-14).double()

    def f(x_, w_, lam_):
        return torch.func.functional_call(layer, {"dictionary.weight": w_, "threshold.lam_param": lam_}, (x_,))

    inputs = (torch.randn(2, 5, generator=_gen(4), dtype=F64, requires_grad=True), P.clone().requires_grad_(True),
              torch.tensor(0.15, dtype=F64, requires_grad=True))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def _saved_bytes(layer, x) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    out.sum().backward()
    return sum(seen.values())


def test_implicit_memory_does_not_grow_with_iterations_but_unroll_does():
    def layer(mode, n_iter):
        return SparseReconstruction(LinearDictionary(16, 32, generator=_gen(0), lipschitz="exact"),
                                    solver=FISTA(max_iter=n_iter), threshold=SoftThreshold(0.1),
                                    differentiation=mode, backward_max_iter=50, backward_tol=1e-6)

    x = torch.randn(32, 16, generator=_gen(1))
    implicit = {n: _saved_bytes(layer("implicit", n), x) for n in (5, 50)}
    unroll = {n: _saved_bytes(layer("unroll", n), x) for n in (5, 50)}
    assert implicit[50] <= 1.2 * implicit[5]
    assert unroll[50] >= 3 * unroll[5]


def test_implicit_forward_without_grad_returns_the_solver_code():
    d = LinearDictionary(6, 8, generator=_gen(0), lipschitz="exact")
    x = torch.randn(3, 6, generator=_gen(1))
    implicit = SparseReconstruction(d, solver=ISTA(max_iter=7), differentiation="implicit")
    unroll = SparseReconstruction(d, solver=ISTA(max_iter=7))
    with torch.no_grad():
        assert torch.equal(implicit(x), unroll(x))


def test_truncated_backpropagates_through_the_last_steps_only():
    P = torch.randn(6, 9, generator=_gen(0), dtype=F64)
    L = float(torch.linalg.matrix_norm(P, ord=2) ** 2) * 1.01
    x = torch.randn(3, 6, generator=_gen(1), dtype=F64, requires_grad=True)

    def run(mode, **kw):
        layer = SparseReconstruction(LinearDictionary(weight=P, lipschitz=L), solver=ISTA(max_iter=12),
                                     threshold=SoftThreshold(0.1), differentiation=mode, **kw)
        out = layer(x)
        return out, torch.autograd.grad(out.square().sum(), x)[0]

    out_unroll, g_unroll = run("unroll")
    out_trunc, g_trunc = run("truncated", truncate_steps=3)
    out_all, g_all = run("truncated", truncate_steps=12)
    assert torch.equal(out_unroll, out_trunc)
    assert torch.allclose(g_all, g_unroll)
    assert not torch.allclose(g_trunc, g_unroll)
    # reference: 9 steps without a graph, then 3 differentiated steps from there
    layer = SparseReconstruction(LinearDictionary(weight=P, lipschitz=L), solver=ISTA(max_iter=9),
                                 threshold=SoftThreshold(0.1))
    with torch.no_grad():
        u9 = layer.solve(x).code
    op = layer.bind()
    u = ISTA(max_iter=3).solve(op, x, layer.threshold, init=u9).code
    g_ref = torch.autograd.grad(op.decode(u).square().sum(), x)[0]
    assert torch.allclose(g_trunc, g_ref, atol=1e-12)


def test_bad_differentiation_arguments():
    d = LinearDictionary(3, 4)
    with pytest.raises(ValueError, match="differentiation"):
        SparseReconstruction(d, differentiation="adjoint")
    with pytest.raises(ValueError, match="truncate_steps"):
        SparseReconstruction(d, differentiation="truncated")
    with pytest.raises(ValueError, match="truncate_steps"):
        SparseReconstruction(d, differentiation="unroll", truncate_steps=2)
    with pytest.raises(ValueError, match="backward_tol"):
        SparseReconstruction(d, differentiation="implicit", backward_tol=0)
    with pytest.raises(ValueError, match="grad_steps"):
        ISTA(max_iter=3).solve(d.bind(), torch.randn(2, 3), SoftThreshold(0.1), grad_steps=0)
    with pytest.raises(ValueError, match="lam"):
        SoftThreshold(-0.1)
