"""Structured and dynamic dictionaries: shapes, the FFT self-conjugate-column subtlety, the released VARS-S Gram and
step-size buffer, random features, concatenation, bad input and low precision."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsecode import (
    DICTIONARIES,
    ConcatDictionary,
    ConvDictionary,
    DCTDictionary,
    DenseOperator,
    FFTConvDictionary,
    FISTA,
    LinearDictionary,
    PerformerDictionary,
    SoftThreshold,
    SparseReconstruction,
)
from sparsecode.dictionaries import ConcatOperator, hermitian_projection

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_by_name():
    for name, cls in [("conv", ConvDictionary), ("fft_conv", FFTConvDictionary), ("performer", PerformerDictionary),
                      ("concat", ConcatDictionary)]:
        assert DICTIONARIES[name] is cls


# --- convolution ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_conv_shapes_and_decode_size(ndim):
    size = (7,) * ndim
    d = ConvDictionary(4, 6, 3, ndim=ndim, stride=2, padding=1, groups=2, signal_size=size, dtype=F64)
    x = torch.randn((2, 4) + size, dtype=F64)
    u = d.encode(x)
    assert u.shape == d.code_shape(x.shape) == (2, 6) + (4,) * ndim
    assert d.decode(u).shape == x.shape
    # without signal_size, decode returns the smallest signal with that code size (here 7 -> code 4 -> 7)
    d2 = ConvDictionary(4, 6, 3, ndim=ndim, stride=2, padding=1, groups=2, weight=d.weight, dtype=F64)
    assert torch.equal(d2.decode(u), d.decode(u))


def test_conv_signal_size_resolves_stride_ambiguity():
    # sizes 8 and 7 both give a 4-long code with k=3, stride 2, padding 1
    d8 = ConvDictionary(1, 2, 3, ndim=1, stride=2, padding=1, signal_size=8, generator=_gen(0), dtype=F64)
    x = torch.randn(3, 1, 8, dtype=F64)
    assert d8.decode(d8.encode(x)).shape == x.shape
    plain = ConvDictionary(1, 2, 3, ndim=1, stride=2, padding=1, weight=d8.weight, dtype=F64)
    with pytest.raises(ValueError, match="signal_size"):
        plain.check_signal(x)
    plain.check_signal(torch.randn(3, 1, 7, dtype=F64))


def test_conv_normalized_atoms_and_explicit_weight():
    w = torch.randn(5, 2, 3, 3, generator=_gen(0), dtype=F64) * 3
    d = ConvDictionary(2, weight=w, normalize_atoms=True)
    assert torch.allclose(d.kernel().flatten(1).norm(dim=1), torch.ones(5, dtype=F64))
    assert d.n_atoms == 5 and d.kernel_size == (3, 3)


def test_conv_bad_input():
    d = ConvDictionary(3, 4, 3, padding=1, signal_size=(6, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        d.check_signal(torch.randn(2, 2, 6, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        d.check_signal(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="signal_size"):
        d.check_signal(torch.randn(2, 3, 5, 6))
    with pytest.raises(ValueError, match="u must have shape"):
        d.decode(torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match="groups"):
        ConvDictionary(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="ndim"):
        ConvDictionary(3, 4, 3, ndim=4)
    with pytest.raises(ValueError, match="kernel_size"):
        ConvDictionary(3, 4, (3, 3, 3), ndim=2)
    with pytest.raises(ValueError, match="smaller than"):
        ConvDictionary(3, 4, 5, signal_size=(3, 3))
    with pytest.raises(ValueError, match="signal_size=... for lipschitz='power'"):
        ConvDictionary(3, 4, 3).lipschitz()
    assert float(ConvDictionary(3, 4, 3, lipschitz=2.5).lipschitz()) == 2.5
    layer = SparseReconstruction(d, solver=FISTA(max_iter=2))
    with pytest.raises(ValueError, match="static"):
        layer(torch.randn(1, 3, 6, 6), context=torch.randn(1))


# --- FFT convolution ----------------------------------------------------------------------------------------------
def _released_fft_conv(x: torch.Tensor, weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    # the released VARS-S grouped FFT convolution, written from its description: weight (G, out, in, h, w//2+1)
    group, out_c, in_c = weight.shape[:3]
    B, _, N = x.shape
    xf = torch.fft.rfftn(x.reshape(B, group, 1, in_c, *grid), dim=(-2, -1), norm="ortho")
    z = (xf * weight.reshape(1, group, out_c, in_c, *weight.shape[-2:])).sum(dim=3)
    return torch.fft.irfftn(z, s=grid, dim=(-2, -1), norm="ortho").reshape(B, group * out_c, N)


def _released_gram(kernel: torch.Tensor) -> torch.Tensor:
    return (kernel.permute(0, 3, 4, 1, 2).unsqueeze(-1) * kernel.conj().permute(0, 3, 4, 2, 1).unsqueeze(3)).sum(
        dim=-2).permute(0, 3, 4, 1, 2)


@pytest.mark.parametrize("grid", [(4, 6), (5, 5), (3, 4), (4, 1)])
def test_fft_effective_kernel_leaves_encode_decode_unchanged_and_gram_exact(grid):
    h, w = grid
    d = FFTConvDictionary(2, 3, grid, init_std=1.0, generator=_gen(1), dtype=F64)
    raw, eff = d.complex_kernel(), d.effective_kernel()
    x = torch.randn(2, 2, h * w, generator=_gen(2), dtype=F64)
    u = torch.randn(2, 6, h * w, generator=_gen(3), dtype=F64)
    assert not torch.allclose(raw, eff)  # the random kernel is not Hermitian on the self-conjugate columns
    assert torch.allclose(_released_fft_conv(x, eff, grid), d.encode(x), atol=1e-12)
    assert torch.allclose(_released_fft_conv(u, eff.conj().transpose(1, 2), grid), d.decode(u), atol=1e-12)
    composed = d.encode(d.decode(u))
    assert torch.allclose(d.gram(u), composed, atol=1e-12)
    assert torch.allclose(d.bind().gram(u), composed, atol=1e-12)
    pointwise = FFTConvDictionary(2, 3, grid, kernel=raw, gram_mode="pointwise")
    assert not torch.allclose(pointwise.gram(u), composed, atol=1e-6)  # the released Gram differs there


def test_hermitian_projection_is_idempotent_and_changes_only_self_conjugate_columns():
    k = torch.randn(1, 2, 1, 5, 4, dtype=torch.complex128, generator=_gen(0))
    p = hermitian_projection(k, 6)
    assert torch.allclose(hermitian_projection(p, 6), p)
    assert torch.equal(p[..., 1:3], k[..., 1:3])
    p_odd = hermitian_projection(k, 7)
    assert torch.equal(p_odd[..., 1:], k[..., 1:])


def test_fft_pointwise_mode_is_the_released_code():
    # the "original" VARS-S configuration: 5 atoms per channel on a 14x14 grid, float32; encode and decode are the
    # released products bit for bit, the Gram is applied in its rank-one form (equal up to rounding)
    d = FFTConvDictionary(6, 5, 14, gram_mode="pointwise", lipschitz="running", generator=_gen(0))
    kernel = torch.view_as_complex(d.kernel)
    x = torch.randn(2, 6, 196, generator=_gen(1))
    u = torch.randn(2, 30, 196, generator=_gen(2))
    assert torch.equal(d.encode(x), _released_fft_conv(x, kernel, (14, 14)))
    assert torch.equal(d.decode(u), _released_fft_conv(u, kernel.conj().transpose(1, 2), (14, 14)))
    released = _released_fft_conv(u, _released_gram(kernel), (14, 14))
    torch.testing.assert_close(d.gram(u), released, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d.bind().gram(u), released, rtol=1e-5, atol=1e-6)


def test_fft_running_step_size_buffer():
    d = FFTConvDictionary(3, 2, (4, 5), gram_mode="pointwise", lipschitz="running", init_std=0.5,
                          generator=_gen(0), dtype=F64)
    gram = _released_gram(d.complex_kernel().detach())  # (C, A, A, h, w')
    sigma = torch.linalg.svdvals(gram.permute(0, 3, 4, 1, 2)).reshape(3, -1).amax(dim=1)
    assert torch.allclose(d.L, sigma, rtol=1e-12)  # set with momentum 1 at construction
    L_code = d.lipschitz()
    assert L_code.shape == (1, 6, 1)
    assert torch.allclose(L_code.flatten(), sigma.repeat_interleave(2), rtol=1e-12)  # per channel, over its atoms
    with torch.no_grad():
        d.kernel.mul_(2)
    d.refresh_step_size(momentum=0.25)
    assert torch.allclose(d.L, 0.75 * sigma + 0.25 * 4 * sigma)
    assert "L" in d.state_dict() and d.state_dict()["kernel"].shape == (3, 2, 1, 4, 3, 2)
    with pytest.raises(ValueError, match="momentum"):
        d.refresh_step_size(momentum=1.5)


def test_fft_bad_input():
    with pytest.raises(ValueError, match="kernel must have shape"):
        FFTConvDictionary(2, 3, (4, 4), kernel=torch.randn(2, 3, 1, 4, 4, 2))
    with pytest.raises(ValueError, match="gram_mode"):
        FFTConvDictionary(2, 3, 4, gram_mode="fast")
    with pytest.raises(ValueError, match="grid"):
        FFTConvDictionary(2, 3, (4, 0))
    with pytest.raises(ValueError, match="lipschitz"):
        FFTConvDictionary(2, 3, 4, lipschitz="row_sum")
    d = FFTConvDictionary(2, 3, (4, 4))
    with pytest.raises(ValueError, match=r"x must have"):
        d.check_signal(torch.randn(2, 2, 15))
    with pytest.raises(ValueError, match=r"x must have"):
        d.check_signal(torch.randn(2, 16))
    complex_kernel = torch.randn(2, 3, 1, 4, 3, dtype=torch.complex64)
    assert torch.equal(FFTConvDictionary(2, 3, 4, kernel=complex_kernel).complex_kernel(), complex_kernel)


# --- random features ----------------------------------------------------------------------------------------------
def test_performer_features_and_options():
    d = PerformerDictionary(2, 4, 6, seed=3, dtype=F64)
    assert torch.equal(d.projection, PerformerDictionary(2, 4, 6, seed=3, dtype=F64).projection)
    assert not torch.equal(d.projection, PerformerDictionary(2, 4, 6, seed=4, dtype=F64).projection)
    X = torch.randn(3, 2, 5, 4, generator=_gen(0), dtype=F64)
    phi = d.features(X)
    h, i = 1, 2
    expected = torch.exp(X[0, h, i] @ d.projection[h] - X[0, h, i].square().sum() / 2) / 6 ** 0.5
    assert torch.allclose(phi[0, h, i], expected)
    d_in = PerformerDictionary(2, 4, 6, seed=3, normalize_input=True, dtype=F64)
    assert torch.allclose(d_in.features(X), d.features(F.normalize(X, dim=-1)))
    d_at = PerformerDictionary(2, 4, 6, seed=3, normalize_atoms=True, dtype=F64)
    assert torch.allclose(d_at.features(X).norm(dim=-2), torch.ones(3, 2, 6, dtype=F64))
    op = d.bind(X)
    assert isinstance(op, DenseOperator) and op.stacked and op.weight.shape == (3, 2, 5, 6)
    v_t = torch.randn(3, 2, 7, 5, dtype=F64)
    assert op.encode(v_t).shape == (3, 2, 7, 6) and op.decode(op.encode(v_t)).shape == v_t.shape


def test_performer_bad_input():
    d = PerformerDictionary(2, 4, 6)
    with pytest.raises(ValueError, match="dynamic"):
        d.bind()
    with pytest.raises(ValueError, match="context"):
        d.bind(torch.randn(3, 2, 5, 3))
    with pytest.raises(ValueError, match="bind"):
        d.decode(torch.randn(1, 2, 3, 6))
    layer = SparseReconstruction(d, solver=FISTA(max_iter=2))
    with pytest.raises(ValueError, match="dynamic"):
        layer(torch.randn(1, 2, 4, 5))
    with pytest.raises(ValueError, match="x must have trailing shape"):
        layer(torch.randn(1, 2, 4, 7), context=torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="input_scale"):
        PerformerDictionary(2, 4, 6, input_scale=0.0)


# --- concatenation ------------------------------------------------------------------------------------------------
def test_concat_dense_is_one_normalised_operator_like_vars_sd():
    perf = PerformerDictionary(2, 3, 4, seed=0, dtype=F64)
    K = torch.randn(2, 6, 5, generator=_gen(0), dtype=F64)
    d = ConcatDictionary([perf, LinearDictionary(weight=K)], normalize_atoms=True)
    X = torch.randn(3, 2, 6, 3, generator=_gen(1), dtype=F64)
    op = d.bind(X)
    expected = F.normalize(torch.cat([perf.features(X), K.expand(3, 2, 6, 5)], dim=-1), p=2, dim=-2)
    assert isinstance(op, DenseOperator) and op.stacked
    assert torch.allclose(op.weight, expected)
    assert torch.allclose(op.gram_matrix(), expected.transpose(-1, -2) @ expected)
    assert d.code_shape((3, 2, 7, 6)) == (3, 2, 7, 9)


def test_concat_generic_and_bad_input():
    c1 = ConvDictionary(2, 3, 3, ndim=1, padding=1)
    c2 = ConvDictionary(2, 2, 5, ndim=1, padding=2)
    d = ConcatDictionary([c1, c2])
    assert isinstance(d.bind(), ConcatOperator)
    assert d.code_shape((4, 2, 8)) == (4, 5, 8)
    x = torch.randn(4, 2, 8)
    assert d.encode(x).shape == (4, 5, 8) and d.decode(d.encode(x)).shape == x.shape
    with pytest.raises(ValueError, match="static"):
        d.bind(torch.randn(1))
    with pytest.raises(ValueError, match="dense"):
        ConcatDictionary([c1, c2], normalize_atoms=True).bind()
    with pytest.raises(TypeError, match="at least two"):
        ConcatDictionary([c1])
    with pytest.raises(TypeError, match="n_atoms"):
        ConcatDictionary([c1, DCTDictionary(8)]).bind()
    dyn = ConcatDictionary([PerformerDictionary(2, 3, 4), LinearDictionary(weight=torch.randn(2, 6, 5))])
    with pytest.raises(ValueError, match="dynamic"):
        dyn.bind()
    with pytest.raises(ValueError, match="signal dimensions differ"):
        ConcatDictionary([PerformerDictionary(2, 3, 4), LinearDictionary(weight=torch.randn(2, 7, 5))]).bind(
            torch.randn(1, 2, 6, 3))


# --- precision ----------------------------------------------------------------------------------------------------
PRECISION_CASES = [
    ("linear", lambda: LinearDictionary(8, 12, generator=_gen(0)), (2, 8), None),
    ("dct", lambda: DCTDictionary((4, 4)), (2, 4, 4), None),
    ("conv1d", lambda: ConvDictionary(2, 4, 3, ndim=1, padding=1, signal_size=8, generator=_gen(0)), (2, 2, 8), None),
    ("conv2d", lambda: ConvDictionary(2, 4, 3, stride=2, padding=1, signal_size=(6, 6), generator=_gen(0)),
     (2, 2, 6, 6), None),
    ("conv3d", lambda: ConvDictionary(1, 2, 3, ndim=3, padding=1, signal_size=(4, 4, 4), generator=_gen(0)),
     (2, 1, 4, 4, 4), None),
    ("fft", lambda: FFTConvDictionary(3, 2, (4, 4), generator=_gen(0)), (2, 3, 16), None),
    ("performer", lambda: PerformerDictionary(2, 4, 8, normalize_atoms=True), (2, 2, 4, 6), (2, 2, 6, 4)),
    ("concat", lambda: ConcatDictionary([PerformerDictionary(2, 4, 8),
                                         LinearDictionary(weight=torch.randn(2, 6, 4, generator=_gen(0)))],
                                        normalize_atoms=True), (2, 2, 4, 6), (2, 2, 6, 4)),
]


@pytest.mark.parametrize("name,factory,shape,context_shape", PRECISION_CASES, ids=[c[0] for c in PRECISION_CASES])
def test_float32_float64_and_bf16_autocast_are_finite(name, factory, shape, context_shape):
    for dtype in (torch.float32, torch.float64):
        layer = SparseReconstruction(factory(), solver=FISTA(max_iter=10), threshold=SoftThreshold(0.05)).to(dtype)
        x = torch.randn(shape, generator=_gen(1)).to(dtype)
        ctx = None if context_shape is None else (0.5 * torch.randn(context_shape, generator=_gen(2))).to(dtype)
        z = layer(x, ctx)
        assert z.dtype == dtype and z.shape == x.shape and torch.isfinite(z).all()
    layer = SparseReconstruction(factory(), solver=FISTA(max_iter=10), threshold=SoftThreshold(0.05))
    x = torch.randn(shape, generator=_gen(1))
    ctx = None if context_shape is None else 0.5 * torch.randn(context_shape, generator=_gen(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer(x, ctx)
    assert torch.isfinite(z.float()).all()


def test_performer_features_of_normalised_tokens_equal_the_formula():
    """The features take |x|^2 from the tokens' normalisation (no second pass): the same numbers as
    exp(W^T x - |x|^2/2)/sqrt(m) with x = t/max(|t|, eps), zero tokens included, and the same derivatives."""
    import math

    from sparsecode import PerformerDictionary
    from sparsecode.dictionaries.performer import positive_random_features

    g = torch.Generator().manual_seed(0)
    d = PerformerDictionary(2, 4, 6, normalize_input=True, input_scale=1.5, generator=g).double()
    tokens = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64)
    tokens[0, 1, 2] = 0.0  # a zero token: x = 0, |x|^2 = 0
    t1, t2 = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    phi = d.features(t1)
    x = 1.5 * t2 / t2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    expected = torch.exp(x @ d.projection - x.square().sum(-1, keepdim=True) / 2) / math.sqrt(6)
    torch.testing.assert_close(phi, expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(positive_random_features(x, d.projection), expected, rtol=1e-13, atol=1e-15)
    weights = torch.randn(phi.shape, generator=g, dtype=torch.float64)
    (phi * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(t1.grad, t2.grad, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_normalised_features_node_has_exact_first_and_second_derivatives(scale):
    """The features of normalised tokens are one node (ρ(tW) + c, then exp in place; the backward written out): the
    composition's values and derivatives, for strided tokens (a view of a larger projection, as in the mixers),
    zero and tiny tokens (the clamped norm), and second derivatives through a replay of the composition."""
    from sparsecode import PerformerDictionary
    from sparsecode.dictionaries.performer import _NormalizedPositiveFeatures, _normalized_positive_features

    g = torch.Generator().manual_seed(3)
    d = PerformerDictionary(3, 4, 5, normalize_input=True, input_scale=scale, generator=g).double()
    projected = torch.randn(2, 6, 2, 3, 4, generator=g, dtype=torch.float64)  # (B, N, q/v, heads, head_dim)
    projected[0, 2, 0, 1] = 0.0
    projected[1, 4, 0, 2] = 1e-14  # |t| below eps: the norm is clamped
    projected.requires_grad_()
    tokens = projected.unbind(2)[0].transpose(1, 2)  # strided (B, heads, N, head_dim)
    assert not tokens.is_contiguous()
    weights = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    fused = d.features(tokens)
    grad_fused = torch.autograd.grad((fused * weights).sum(), projected)[0]
    reference = _normalized_positive_features(tokens, d.projection, scale)
    grad_reference = torch.autograd.grad((reference * weights).sum(), projected)[0]
    torch.testing.assert_close(fused, reference, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-11, atol=1e-13)
    assert grad_fused[1, 4, 0, 2].abs().max() > 1e6  # the clamped token's (large) derivative is there

    t = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def node(t):
        return _NormalizedPositiveFeatures.apply(t, d.projection, scale)

    assert torch.autograd.gradcheck(node, (t,))
    assert torch.autograd.gradgradcheck(node, (t,))


def test_normalised_features_take_the_composition_where_the_node_does_not_apply():
    """Without a graph, with a projection that needs a gradient, or under autocast, the features are the composition:
    the same numbers."""
    from sparsecode import PerformerDictionary
    from sparsecode.dictionaries.performer import _normalized_positive_features

    g = torch.Generator().manual_seed(4)
    d = PerformerDictionary(2, 4, 6, normalize_input=True, generator=g)
    tokens = torch.randn(2, 2, 5, 4, generator=g, requires_grad=True)
    expected = _normalized_positive_features(tokens, d.projection).detach()
    with torch.no_grad():
        torch.testing.assert_close(d.features(tokens), expected)
    projection = d.projection.clone().requires_grad_()
    d.projection = projection
    phi = d.features(tokens)
    torch.testing.assert_close(phi, expected)
    phi.sum().backward()
    assert projection.grad is not None and torch.isfinite(projection.grad).all()
