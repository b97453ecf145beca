"""The Gram matrix of a column-block matrix as one node (``sparsecode.dictionaries._block_gram``): the numbers and the
derivatives (first and second order) of the autograd composition of block products, for per-image blocks beside
blocks shared across the images, in any order, and the composition wherever the node does not apply."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode.dictionaries._block_gram import _layout, block_gram, block_gram_composed

F64 = torch.float64


def _parts(shapes, seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=F64).requires_grad_(requires_grad) for s in shapes]


LAYOUTS = [
    ([(3, 2, 7, 4), (2, 7, 5)], (3, 2)),  # random features beside static atoms (VARS-SD)
    ([(2, 7, 5), (3, 2, 7, 4)], (3, 2)),  # the shared part first
    ([(3, 2, 7, 4), (2, 7, 5), (3, 2, 7, 3), (2, 7, 2)], (3, 2)),  # interleaved, two of each
    ([(3, 2, 7, 4), (3, 2, 7, 5)], (3, 2)),  # no shared part
    ([(7, 4), (3, 7, 5)], (3,)),  # a single shared matrix
]


@pytest.mark.parametrize("shapes,batch", LAYOUTS)
def test_block_gram_is_the_gram_of_the_concatenation(shapes, batch):
    parts = _parts(shapes, 0)
    assert _layout(parts, batch) is not None
    gram, diagonal = block_gram(parts, batch)
    whole = torch.cat([p.expand(batch + tuple(p.shape[-2:])) for p in parts], dim=-1)
    torch.testing.assert_close(gram, whole.transpose(-1, -2) @ whole, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(diagonal, gram.diagonal(dim1=-2, dim2=-1), rtol=0, atol=0)
    assert gram.is_contiguous()


@pytest.mark.parametrize("shapes,batch", LAYOUTS)
def test_block_gram_has_exact_first_and_second_derivatives(shapes, batch):
    parts = _parts(shapes, 1)
    assert torch.autograd.gradcheck(lambda *p: block_gram(p, batch), parts)
    assert torch.autograd.gradcheck(lambda *p: block_gram(p, batch)[1], parts)  # the diagonal alone
    assert torch.autograd.gradgradcheck(lambda *p: block_gram(p, batch), parts)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), lead=st.integers(1, 4), inner=st.integers(1, 3), n=st.integers(1, 6),
       sizes=st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=4),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_block_gram_derivatives_equal_the_composition(seed, lead, inner, n, sizes, scale):
    """Any mix of per-image and shared parts: the values and the derivatives of both outputs (weighted at random)
    are those of the composition."""
    batch = (lead, inner)
    shapes = [((inner,) if shared else batch) + (n, m) for m, shared in sizes]
    g = torch.Generator().manual_seed(seed)
    base = [scale * torch.randn(*s, generator=g, dtype=F64) for s in shapes]
    m_total = sum(m for m, _ in sizes)
    w_gram = torch.randn(batch + (m_total, m_total), generator=g, dtype=F64)
    w_diag = torch.randn(batch + (m_total,), generator=g, dtype=F64)
    results = []
    for function in (block_gram, block_gram_composed):
        parts = [b.clone().requires_grad_() for b in base]
        gram, diagonal = function(parts, batch)
        ((gram * w_gram).sum() + (diagonal * w_diag).sum()).backward()
        results.append([gram.detach(), diagonal.detach()] + [p.grad for p in parts])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale ** 2)


def test_block_gram_uses_the_composition_where_the_node_does_not_apply():
    # batch shapes that are not one common suffix (a singleton to broadcast), mixed dtypes, autocast
    parts = _parts([(1, 2, 7, 4), (3, 2, 7, 5)], 2)
    assert _layout(parts, (3, 2)) is None
    assert _layout(_parts([(3, 2, 7, 4), (2, 7, 5), (7, 3)], 3), (3, 2)) is None
    mixed = [parts[1], torch.randn(3, 2, 7, 2, requires_grad=True)]
    assert _layout(mixed, (3, 2)) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _layout(_parts([(3, 2, 7, 4), (2, 7, 5)], 4), (3, 2)) is None
    gram, diagonal = block_gram(parts, (3, 2))
    whole = torch.cat([p.expand(3, 2, 7, p.shape[-1]) for p in parts], dim=-1)
    torch.testing.assert_close(gram, whole.transpose(-1, -2) @ whole)
