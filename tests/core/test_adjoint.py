"""Every dictionary's encode is the exact adjoint of its decode; lipschitz() bounds ‖PᵀP‖₂ from above (tightly
by power iteration), checked against the SVD of the materialised matrix."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecode import (
    ConcatDictionary,
    ConvDictionary,
    DCTDictionary,
    FFTConvDictionary,
    LinearDictionary,
    PerformerDictionary,
    check_adjoint,
    materialize,
)

F64 = torch.float64
TOL = 1e-12


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 7), heads=st.one_of(st.none(), st.integers(1, 3)),
       batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_linear_adjoint(n, m, heads, batch, seed):
    d = LinearDictionary(n, m, n_heads=heads, generator=_gen(seed), dtype=F64)
    shape = (batch,) + ((heads,) if heads else ()) + (n,)
    assert check_adjoint(d, shape, generator=_gen(seed)) < TOL
    assert check_adjoint(d.bind(), shape, generator=_gen(seed)) < TOL


@settings(max_examples=6, deadline=None)
@given(size=st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 6), st.integers(1, 6))), seed=st.integers(0, 99))
def test_dct_adjoint(size, seed):
    d = DCTDictionary(size)
    shape = (2,) + ((size,) if isinstance(size, int) else size)
    assert check_adjoint(d, shape, dtype=F64, generator=_gen(seed)) < TOL


@st.composite
def conv_configs(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    atoms = groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    max_size = 9 if ndim < 3 else 5
    size = tuple(draw(st.integers(d * (kk - 1) + 1, max_size)) for kk, d in zip(k, dilation))
    return dict(ndim=ndim, groups=groups, in_channels=c_in, n_atoms=atoms, kernel_size=k, stride=stride,
                padding=padding, dilation=dilation, signal_size=size)


@settings(max_examples=15, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_conv_adjoint(cfg, seed):
    d = ConvDictionary(generator=_gen(seed), dtype=F64, **cfg)
    shape = (2, cfg["in_channels"]) + cfg["signal_size"]
    assert check_adjoint(d, shape, generator=_gen(seed)) < TOL
    assert tuple(d.decode(d.encode(torch.zeros(shape, dtype=F64))).shape) == shape  # decode returns the size


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 3), a=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       pointwise=st.booleans(), seed=st.integers(0, 2**16))
def test_fft_adjoint(c, a, h, w, pointwise, seed):
    d = FFTConvDictionary(c, a, (h, w), gram_mode="pointwise" if pointwise else "exact", init_std=1.0,
                          generator=_gen(seed), dtype=F64)
    assert check_adjoint(d, (2, c, h * w), generator=_gen(seed)) < TOL
    assert check_adjoint(d.bind(), (2, c, h * w), generator=_gen(seed)) < TOL


@settings(max_examples=10, deadline=None)
@given(heads=st.integers(1, 3), n_tok=st.integers(1, 7), hd=st.integers(1, 4), m=st.integers(1, 6),
       d=st.integers(1, 3), norm_in=st.booleans(), norm_atoms=st.booleans(), seed=st.integers(0, 2**16))
def test_performer_bound_adjoint(heads, n_tok, hd, m, d, norm_in, norm_atoms, seed):
    dic = PerformerDictionary(heads, hd, m, normalize_input=norm_in, normalize_atoms=norm_atoms, seed=seed,
                              dtype=F64)
    X = torch.randn(2, heads, n_tok, hd, generator=_gen(seed), dtype=F64)
    assert check_adjoint(dic.bind(X), (2, heads, d, n_tok), generator=_gen(seed)) < TOL


@settings(max_examples=8, deadline=None)
@given(heads=st.integers(1, 3), n_tok=st.integers(2, 7), m=st.integers(1, 5), m_static=st.integers(1, 5),
       normalize=st.booleans(), seed=st.integers(0, 2**16))
def test_concat_static_dynamic_adjoint(heads, n_tok, m, m_static, normalize, seed):
    dic = ConcatDictionary([PerformerDictionary(heads, 3, m, seed=seed, dtype=F64),
                            LinearDictionary(weight=torch.randn(heads, n_tok, m_static, generator=_gen(seed),
                                                                dtype=F64))], normalize_atoms=normalize)
    X = torch.randn(2, heads, n_tok, 3, generator=_gen(seed + 1), dtype=F64)
    op = dic.bind(X)
    assert op.weight.shape == (2, heads, n_tok, m + m_static)
    assert check_adjoint(op, (2, heads, 4, n_tok), generator=_gen(seed)) < TOL


def test_concat_generic_adjoint():
    parts = [ConvDictionary(2, 3, 3, ndim=1, padding=1, signal_size=8, generator=_gen(0), dtype=F64),
             ConvDictionary(2, 2, 5, ndim=1, padding=2, signal_size=8, generator=_gen(1), dtype=F64)]
    op = ConcatDictionary(parts).bind()
    assert check_adjoint(op, (2, 2, 8), generator=_gen(2)) < TOL
    u = torch.randn(2, 5, 8, generator=_gen(3), dtype=F64)
    u1, u2 = op.split(u)
    assert torch.allclose(op.decode(u), parts[0].decode(u1) + parts[1].decode(u2))


def test_materialize_matches_decode():
    d = ConvDictionary(2, 3, 3, ndim=2, padding=1, stride=2, signal_size=(5, 6), generator=_gen(0), dtype=F64)
    P = materialize(d, (1, 2, 5, 6))
    u = torch.randn(d.code_shape((1, 2, 5, 6)), generator=_gen(1), dtype=F64)
    assert P.shape == (60, u.numel())
    assert torch.allclose(P @ u.reshape(-1), d.decode(u).reshape(-1))
    assert torch.allclose(P.T @ torch.ones(60, dtype=F64), d.encode(torch.ones(1, 2, 5, 6, dtype=F64)).reshape(-1))


def _top(P: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(P, ord=2) ** 2)


# (name, operator factory, single-sample signal shape, power iteration?)
LIPSCHITZ_CASES = [
    ("linear", lambda: LinearDictionary(6, 9, generator=_gen(0), dtype=F64), (1, 6), True),
    ("linear_exact", lambda: LinearDictionary(6, 9, generator=_gen(0), dtype=F64, lipschitz="exact"), (1, 6), False),
    ("dct2", lambda: DCTDictionary((3, 4)), (1, 3, 4), False),
    ("conv1d", lambda: ConvDictionary(2, 4, 3, ndim=1, stride=2, padding=1, signal_size=9, generator=_gen(0),
                                      dtype=F64), (1, 2, 9), True),
    ("conv2d", lambda: ConvDictionary(2, 4, 3, ndim=2, padding=1, groups=2, signal_size=(5, 4), generator=_gen(0),
                                      dtype=F64), (1, 2, 5, 4), True),
    ("conv3d", lambda: ConvDictionary(1, 2, 2, ndim=3, signal_size=(3, 3, 3), generator=_gen(0), dtype=F64),
     (1, 1, 3, 3, 3), True),
    ("fft_exact", lambda: FFTConvDictionary(2, 3, (4, 4), generator=_gen(0), dtype=F64), (1, 2, 16), False),
    ("fft_power", lambda: FFTConvDictionary(2, 3, (3, 4), lipschitz="power", generator=_gen(0), dtype=F64),
     (1, 2, 12), True),
    ("performer", lambda: PerformerDictionary(2, 3, 5, seed=1, dtype=F64).bind(
        torch.randn(1, 2, 6, 3, generator=_gen(0), dtype=F64)), (1, 2, 1, 6), True),
    ("concat_dense", lambda: ConcatDictionary([
        PerformerDictionary(2, 3, 4, seed=1, dtype=F64),
        LinearDictionary(weight=torch.randn(2, 6, 3, generator=_gen(0), dtype=F64))], normalize_atoms=True).bind(
        torch.randn(1, 2, 6, 3, generator=_gen(1), dtype=F64)), (1, 2, 1, 6), True),
    ("concat_generic", lambda: ConcatDictionary([
        ConvDictionary(1, 2, 3, ndim=1, padding=1, signal_size=7, generator=_gen(0), dtype=F64),
        ConvDictionary(1, 1, 3, ndim=1, padding=1, signal_size=7, generator=_gen(1), dtype=F64)]).bind(),
     (1, 1, 7), False),
]


@pytest.mark.parametrize("name,factory,shape,power", LIPSCHITZ_CASES, ids=[c[0] for c in LIPSCHITZ_CASES])
def test_lipschitz_upper_bound_and_tight_by_power_iteration(name, factory, shape, power):
    torch.manual_seed(0)
    op = factory()
    true = _top(materialize(op, shape, dtype=F64))
    L = float(torch.as_tensor(op.lipschitz()).max())
    assert L >= true * (1 - 1e-10), (name, L, true)
    if power:
        assert L <= true * 1.01, (name, L, true)
