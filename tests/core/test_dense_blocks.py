"""A dense operator given by column blocks with different batch shapes (per-image features beside per-head static
atoms): every product, bound and gradient equals that of the concatenated matrix, without forming it."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import DenseOperator

F64 = torch.float64


def _blocks(seed, images, heads, n, m1, m2, grad=False):
    g = torch.Generator().manual_seed(seed)
    dynamic = torch.randn(images, heads, n, m1, generator=g, dtype=F64)
    static = torch.randn(heads, n, m2, generator=g, dtype=F64)
    if grad:
        dynamic.requires_grad_()
        static.requires_grad_()
    return dynamic, static


def _concatenated(dynamic, static):
    return torch.cat([dynamic, static.expand(dynamic.shape[:-1] + static.shape[-1:])], dim=-1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), images=st.integers(1, 3), heads=st.integers(1, 3), n=st.integers(1, 7),
       m1=st.integers(1, 5), m2=st.integers(1, 5), rows=st.integers(1, 4), extra=st.sampled_from([(), (2,)]),
       scaled=st.booleans())
def test_blocks_act_as_their_concatenation(seed, images, heads, n, m1, m2, rows, extra, scaled):
    dynamic, static = _blocks(seed, images, heads, n, m1, m2)
    g = torch.Generator().manual_seed(seed + 1)
    scale = torch.rand(images, heads, m1 + m2, generator=g, dtype=F64) + 0.5 if scaled else None
    whole = DenseOperator(_concatenated(dynamic, static), stacked=True, column_scale=scale, lipschitz="exact")
    split = DenseOperator(blocks=[dynamic, static], stacked=True, column_scale=scale, lipschitz="exact")
    assert split.batch_shape == whole.batch_shape and split.n_atoms == m1 + m2 and split.n_features == n
    x = torch.randn(*extra, images, heads, rows, n, generator=g, dtype=F64)
    u = torch.randn(*extra, images, heads, rows, m1 + m2, generator=g, dtype=F64)
    torch.testing.assert_close(split.encode(x), whole.encode(x))
    torch.testing.assert_close(split.decode(u), whole.decode(u))
    torch.testing.assert_close(split.gram(u), whole.gram(u))
    torch.testing.assert_close(split.lipschitz(), whole.lipschitz())
    torch.testing.assert_close(split.weight, whole.weight)


def test_a_signal_broadcast_over_the_images_is_encoded_as_by_the_concatenation():
    dynamic, static = _blocks(0, 3, 2, 5, 3, 4)
    x = torch.randn(1, 2, 4, 5, dtype=F64)  # one signal per head, shared by the three images
    whole = DenseOperator(_concatenated(dynamic, static), stacked=True)
    split = DenseOperator(blocks=[dynamic, static], stacked=True)
    torch.testing.assert_close(split.encode(x), whole.encode(x))


def test_gradients_reach_each_block_as_through_the_concatenation():
    grads = []
    for as_blocks in (True, False):
        dynamic, static = _blocks(1, 2, 3, 6, 4, 2, grad=True)
        op = (DenseOperator(blocks=[dynamic, static], stacked=True) if as_blocks
              else DenseOperator(_concatenated(dynamic, static), stacked=True))
        x = torch.linspace(-1, 1, 2 * 3 * 5 * 6, dtype=F64).reshape(2, 3, 5, 6)
        (op.decode(op.encode(x)) * x).sum().backward()
        grads.append((dynamic.grad, static.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_unstacked_blocks_go_through_the_concatenation():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 6, 2, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)
    split = DenseOperator(blocks=[a, b])
    whole = DenseOperator(torch.cat([a, b.expand(3, 6, 4)], dim=-1))
    x = torch.randn(5, 3, 6, generator=g, dtype=F64)
    torch.testing.assert_close(split.encode(x), whole.encode(x))
    torch.testing.assert_close(split.decode(split.encode(x)), whole.decode(whole.encode(x)))


def test_bad_blocks_are_named():
    a = torch.randn(2, 5, 3)
    with pytest.raises(TypeError, match="exactly one of weight and blocks"):
        DenseOperator(a, blocks=[a])
    with pytest.raises(TypeError, match="exactly one of weight and blocks"):
        DenseOperator()
    with pytest.raises(ValueError, match="share n_features"):
        DenseOperator(blocks=[a, torch.randn(4, 3)])
    with pytest.raises(ValueError, match="do not broadcast"):
        DenseOperator(blocks=[a, torch.randn(3, 5, 3)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        DenseOperator(blocks=[])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), images=st.integers(1, 3), heads=st.integers(1, 3), n=st.integers(2, 7),
       m1=st.integers(1, 5), m2=st.integers(1, 5), rows=st.integers(2, 4), blocks=st.booleans(),
       extra=st.sampled_from([(), (2,)]))
def test_transposed_signals_give_the_same_products_and_derivatives(seed, images, heads, n, m1, m2, rows, blocks,
                                                                   extra):
    """Signals that are the transpose of a row-major tensor (the VARS value channels, ``v.transpose(-1, -2)``) take the
    transposed products, and decode answers in their layout: the same numbers and derivatives as contiguous
    signals."""
    if extra and not blocks:
        extra = ()  # a whole-matrix operator takes signals of its own batch shape
    dynamic0, static0 = _blocks(seed, images, heads, n, m1, m2)
    g = torch.Generator().manual_seed(seed + 2)
    scale0 = torch.rand(images, heads, m1 + m2, generator=g, dtype=F64) + 0.5
    values0 = torch.randn(*extra, images, heads, n, rows, generator=g, dtype=F64)  # row-major (..., n, S)
    weights = torch.randn(*extra, images, heads, rows, n, generator=g, dtype=F64)
    results = []
    for transposed in (True, False):
        dynamic, static, scale, values = (t.clone().requires_grad_() for t in (dynamic0, static0, scale0, values0))
        if blocks:
            op = DenseOperator(blocks=[dynamic, static], stacked=True, column_scale=scale)
        else:
            op = DenseOperator(_concatenated(dynamic, static), stacked=True, column_scale=scale)
        x = values.transpose(-1, -2) if transposed else values.transpose(-1, -2).contiguous()
        b = op.encode(x)
        z = op.decode(b * b)
        assert op._signals_transposed is transposed
        if transposed:
            assert z.stride(-2) == 1  # decode answers in the signals' layout
        ((z * weights).sum() + b.square().sum()).backward()
        results.append([b.detach(), z.detach(), dynamic.grad, static.grad, scale.grad, values.grad])
    for a, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transpose", [False, True])
def test_weight_product_gives_the_weight_a_fresh_derivative(transpose):
    """Products of transposed signals with a batch of matrices hand the matrices a derivative that is not a view (so
    that autograd can add a dictionary's other derivatives into it in place), with the plain product's values and
    first and second derivatives."""
    from sparsecode.dictionaries.dense import _WeightProduct

    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5 if transpose else 4, 6, generator=g, dtype=torch.float64, requires_grad=True)  # folded
    out = _WeightProduct.apply(w, b, transpose)
    expected = (w.transpose(-1, -2) if transpose else w) @ b.reshape(2, 3, *b.shape[-2:])
    torch.testing.assert_close(out, expected.reshape(out.shape), rtol=1e-14, atol=1e-14)
    grad_w = torch.autograd.grad(out, w, torch.ones_like(out))[0]
    assert grad_w._base is None and grad_w.is_contiguous()
    assert torch.autograd.gradcheck(lambda w, b: _WeightProduct.apply(w, b, transpose), (w, b))
    assert torch.autograd.gradgradcheck(lambda w, b: _WeightProduct.apply(w, b, transpose), (w, b))
