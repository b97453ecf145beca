"""The SparseReconstruction layer: the contract of its API, dtypes, devices and autocast."""
from __future__ import annotations

import pytest
import torch

from sparsecode import (DCTDictionary, FISTA, ISTA, LCA, HardThreshold, LinearDictionary, NonNegSoftThreshold,
                        SmoothSoftThreshold, SoftThreshold, SparseReconstruction, objective)


def test_readme_contract():
    layer = SparseReconstruction(dictionary=LinearDictionary(n_features=64, n_atoms=128),
                                 solver=FISTA(max_iter=200, tol=1e-6),
                                 threshold=SoftThreshold(lam=0.1), residual=False)
    x = torch.randn(5, 64)
    z = layer(x)
    assert z.shape == (5, 64)
    res = layer.solve(x, trace=True)
    assert res.code.shape == (5, 128)
    assert isinstance(res.n_iter, int) and 1 <= res.n_iter <= 200
    assert res.converged.shape == (5,) and res.converged.dtype == torch.bool
    assert res.trace.objective.shape == (res.n_iter, 5) and res.trace.kkt.shape == (res.n_iter, 5)
    assert torch.allclose(z, layer.dictionary.decode(res.code), atol=1e-5)


def test_solver_and_threshold_by_class_and_name():
    d = LinearDictionary(6, 4)
    a = SparseReconstruction(d, solver=ISTA, threshold="nonneg_soft", lam=0.3)
    assert isinstance(a.solver, ISTA) and isinstance(a.threshold, NonNegSoftThreshold)
    assert a.threshold.lam.item() == pytest.approx(0.3)
    b = SparseReconstruction(d, solver="lca")
    assert isinstance(b.solver, LCA) and isinstance(b.threshold, SoftThreshold)


def test_residual_adds_the_input():
    layer = SparseReconstruction(LinearDictionary(6, 4), solver=FISTA(max_iter=3), residual=True)
    x = torch.randn(2, 6)
    plain = SparseReconstruction(layer.dictionary, solver=FISTA(max_iter=3))
    assert torch.allclose(layer(x), plain(x) + x, atol=1e-6)


def test_any_leading_dims_and_heads():
    layer = SparseReconstruction(LinearDictionary(8, 6, n_heads=4), solver=FISTA(max_iter=10))
    x = torch.randn(2, 3, 4, 8)
    res = layer.solve(x)
    assert res.code.shape == (2, 3, 4, 6) and layer(x).shape == x.shape
    # each head solves its own problem
    single = SparseReconstruction(LinearDictionary(weight=layer.dictionary.weight[1].detach()), solver=FISTA(max_iter=10),
                                  threshold=SoftThreshold(0.1))
    single.dictionary._power_vector = None
    h1 = single.solve(x[:, :, 1].reshape(6, 8)).code
    assert h1.shape == (6, 6)


def test_images_with_a_2d_dct():
    layer = SparseReconstruction(DCTDictionary((8, 8)), solver=ISTA(max_iter=1), lam=0.5)
    x = torch.randn(2, 3, 8, 8)
    z = layer(x)
    assert z.shape == x.shape
    assert (layer.solve(x).code == 0).float().mean() > 0.2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [SoftThreshold, NonNegSoftThreshold, HardThreshold, SmoothSoftThreshold])
def test_dtypes_are_preserved(dtype, threshold):
    layer = SparseReconstruction(LinearDictionary(10, 12, dtype=dtype), solver=FISTA(max_iter=20),
                                 threshold=threshold(0.1))
    x = torch.randn(3, 10, dtype=dtype)
    z = layer(x)
    assert z.dtype == dtype and torch.isfinite(z).all()


@pytest.mark.parametrize("solver", [lambda: ISTA(max_iter=10), lambda: FISTA(max_iter=10), lambda: LCA(max_iter=10)])
def test_bfloat16_autocast_produces_no_nan(solver):
    layer = SparseReconstruction(LinearDictionary(32, 48), solver=solver(), lam=0.1, residual=True)
    x = torch.randn(8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer(x)
        z.float().sum().backward()
    assert torch.isfinite(z).all()
    assert torch.isfinite(layer.dictionary.weight.grad).all()


def test_hard_threshold_reaches_a_fixed_point_that_lowers_the_objective():
    g = torch.Generator().manual_seed(0)
    P = torch.randn(20, 10, generator=g, dtype=torch.float64)
    x = torch.randn(4, 20, generator=g, dtype=torch.float64)
    d = LinearDictionary(weight=P)
    th = HardThreshold(0.5)
    res = ISTA(max_iter=500, tol=1e-10).solve(d.bind(), x, th)
    assert bool(res.converged.all())
    f, f0 = objective(d.bind(), x, res.code, th), objective(d.bind(), x, torch.zeros_like(res.code), th)
    assert torch.all(f <= f0) and torch.any(f < f0)  # zero is a fixed point too, for some samples


def test_learnable_lambda_per_atom():
    th = SoftThreshold(torch.full((12,), 0.1), learnable=True)
    layer = SparseReconstruction(LinearDictionary(10, 12), solver=FISTA(max_iter=5), threshold=th)
    layer(torch.randn(3, 10)).sum().backward()
    assert th.lam_param.grad.shape == (12,)
