"""Unrolled differentiation: gradients w.r.t. the input, a learnable lambda and the dictionary pass gradcheck."""
from __future__ import annotations

import pytest
import torch

from sparsecode import FISTA, ISTA, LCA, LinearDictionary, SmoothSoftThreshold, SoftThreshold, SparseReconstruction


@pytest.mark.parametrize("solver", [lambda: ISTA(max_iter=15), lambda: FISTA(max_iter=15),
                                    lambda: LCA(max_iter=15, form="rozell"), lambda: LCA(max_iter=15)])
@pytest.mark.parametrize("threshold", [lambda: SoftThreshold(0.2, learnable=True),
                                       lambda: SmoothSoftThreshold(0.2, learnable=True)])
def test_unrolled_gradients_pass_gradcheck(solver, threshold):
    g = torch.Generator().manual_seed(0)
    P = torch.randn(6, 4, generator=g, dtype=torch.float64)
    layer = SparseReconstruction(
        LinearDictionary(weight=P, lipschitz=float(torch.linalg.matrix_norm(P, ord=2) ** 2) * 1.1),
        solver=solver(), threshold=threshold(), residual=True).double()
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = layer.dictionary.weight
    lam = layer.threshold.lam_param

    def f(x_, w_, lam_):
        with torch.no_grad():
            w.copy_(w_)
            lam.copy_(lam_)
        # route the gradient through the parameters via a functional call
        return torch.func.functional_call(layer, {"dictionary.weight": w_, "threshold.lam_param": lam_}, (x_,))

    inputs = (x, P.clone().requires_grad_(), torch.tensor(0.2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_gradient_reaches_every_parameter():
    layer = SparseReconstruction(LinearDictionary(8, 12), solver=FISTA(max_iter=5),
                                 threshold=SoftThreshold(0.05, learnable=True))
    x = torch.randn(4, 8, requires_grad=True)
    layer(x).square().sum().backward()
    assert layer.dictionary.weight.grad is not None and layer.dictionary.weight.grad.abs().sum() > 0
    assert layer.threshold.lam_param.grad is not None
    assert x.grad is not None and x.grad.abs().sum() > 0
