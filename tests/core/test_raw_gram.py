"""A dense operator P = W diag(s) given the raw Gram matrix R = WᵀW (atoms normalised through the Gram diagonal):
every product, step and bound equals the one computed from the formed G = DRD, with fewer full-size passes."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import DenseOperator
from sparsecode.dictionaries.dense import _ScaledStepMatrix

F64 = torch.float64


def _parts(seed, batch=(2, 3), n=9, m=5, rows=4):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(*batch, n, m, generator=g, dtype=F64)
    s = torch.rand(*batch, m, generator=g, dtype=F64) + 0.2
    u = torch.randn(*batch, rows, m, generator=g, dtype=F64)
    b = torch.randn(*batch, rows, m, generator=g, dtype=F64)
    return W, s, u, b


def _formed(W, s, **kw):
    R = W.transpose(-1, -2) @ W
    return DenseOperator(W, stacked=True, column_scale=s, gram_matrix=R * s.unsqueeze(-1) * s.unsqueeze(-2), **kw)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["perron", "row_sum", "exact"]))
def test_raw_gram_operator_matches_the_formed_gram(seed, mode):
    W, s, u, b = _parts(seed)
    raw = DenseOperator(W, stacked=True, column_scale=s, raw_gram=W.transpose(-1, -2) @ W, lipschitz=mode)
    formed = _formed(W, s, lipschitz=mode)
    L = formed.lipschitz()
    torch.testing.assert_close(raw.lipschitz(), L, rtol=1e-10, atol=0)
    torch.testing.assert_close(raw.gradient_step(u, b, L), formed.gradient_step(u, b, L), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(raw.gram_matrix(), formed.gram_matrix())
    torch.testing.assert_close(raw.decode(u), formed.decode(u))
    # a scalar L takes the same fused path
    L1 = L.amax()
    torch.testing.assert_close(raw.gradient_step(u, b, L1), formed.gradient_step(u, b, L1), rtol=1e-12, atol=1e-12)


def test_single_matrix_raw_gram_step():
    W, s, _, _ = _parts(1, batch=())
    g = torch.Generator().manual_seed(2)
    u, b = torch.randn(6, 5, generator=g, dtype=F64), torch.randn(6, 5, generator=g, dtype=F64)
    raw = DenseOperator(W, column_scale=s, raw_gram=W.T @ W)
    formed = DenseOperator(W, column_scale=s, gram_matrix=(W.T @ W) * s[:, None] * s[None, :])
    L = torch.tensor(7.0, dtype=F64)
    torch.testing.assert_close(raw.gradient_step(u, b, L), formed.gradient_step(u, b, L))


def test_the_step_matrix_has_exact_derivatives():
    W, s, _, _ = _parts(3, batch=(2,), m=4)
    R = (W.transpose(-1, -2) @ W).requires_grad_()
    s = s.requires_grad_()
    inv_sqrt_L = torch.tensor([[0.5], [0.3]], dtype=F64)
    torch.autograd.gradcheck(_ScaledStepMatrix.apply, (R, s, inv_sqrt_L))
    # and the value is I - D R D / L
    M = _ScaledStepMatrix.apply(R, s, inv_sqrt_L)
    expected = torch.eye(4, dtype=F64) - R * s.unsqueeze(-1) * s.unsqueeze(-2) * inv_sqrt_L.unsqueeze(-1) ** 2
    torch.testing.assert_close(M, expected)


def test_gradients_through_the_raw_path_match_the_formed_path():
    W0, s0, u, b = _parts(4)
    grads = []
    for use_raw in (True, False):
        W, s = W0.clone().requires_grad_(), s0.clone().requires_grad_()
        R = W.transpose(-1, -2) @ W
        if use_raw:
            op = DenseOperator(W, stacked=True, column_scale=s, raw_gram=R, lipschitz="perron")
        else:
            op = DenseOperator(W, stacked=True, column_scale=s, gram_matrix=R * s.unsqueeze(-1) * s.unsqueeze(-2),
                               lipschitz="perron")
        L = op.lipschitz()
        out = op.gradient_step(op.gradient_step(u, b, L), b, L)
        (out * torch.linspace(-1, 1, out.numel(), dtype=F64).reshape(out.shape)).sum().backward()
        grads.append((W.grad, s.grad))
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c)


def test_raw_gram_needs_a_column_scale_and_excludes_a_gram_matrix():
    W, s, _, _ = _parts(5)
    R = W.transpose(-1, -2) @ W
    with pytest.raises(ValueError, match="raw_gram needs column_scale"):
        DenseOperator(W, stacked=True, raw_gram=R)
    with pytest.raises(ValueError, match="raw_gram needs column_scale"):
        DenseOperator(W, stacked=True, column_scale=s, raw_gram=R, gram_matrix=R)
    with pytest.raises(ValueError, match="raw_gram must have shape"):
        DenseOperator(W, stacked=True, column_scale=s, raw_gram=R[..., :-1, :-1])
