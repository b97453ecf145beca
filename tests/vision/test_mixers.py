"""Token mixers: softmax attention, Performer attention, global filter, and the mixer factory."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from integrations.vision.mixers import (
    GlobalFilter,
    PerformerAttention,
    SelfAttention,
    available_mixers,
    build_mixer,
    positive_random_features,
    register_mixer,
)


def _reference_self_attention(module: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(QKᵀ/√d)V, written independently of the module's fused path."""
    batch, tokens, channels = x.shape
    heads, head_dim = module.num_heads, module.head_dim
    q, k, v = module.qkv(x).split(channels, dim=-1)
    q, k, v = (t.reshape(batch, tokens, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels)
    return module.proj(out)


@given(
    batch=st.integers(1, 3),
    tokens=st.integers(1, 20),
    heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([4, 8]),
    seed=st.integers(0, 2**16),
)
def test_self_attention_matches_explicit_softmax(batch: int, tokens: int, heads: int, head_dim: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = SelfAttention(heads * head_dim, heads, qkv_bias=True).double().eval()
    x = torch.randn(batch, tokens, heads * head_dim, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(module(x), _reference_self_attention(module, x))
    module.fused = False
    torch.testing.assert_close(module(x), _reference_self_attention(module, x))


@given(
    batch=st.integers(1, 3),
    tokens=st.integers(1, 20),
    heads=st.sampled_from([1, 3]),
    head_dim=st.sampled_from([4, 8]),
    seed=st.integers(0, 2**16),
)
def test_performer_linear_path_equals_quadratic_definition(
    batch: int, tokens: int, heads: int, head_dim: int, seed: int
) -> None:
    """φ(Q)(φ(K)ᵀV)/(φ(Q)φ(K)ᵀ1) must equal the row-L1-normalised quadratic attention."""
    torch.manual_seed(seed)
    module = PerformerAttention(heads * head_dim, heads, qkv_bias=True, seed=seed).double().eval()
    x = torch.randn(batch, tokens, heads * head_dim, dtype=torch.float64)
    qkv = module.qkv(x).reshape(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    phi_q = positive_random_features(qkv[0], module.rand_matrix)
    phi_k = positive_random_features(qkv[1], module.rand_matrix)
    attn = phi_q @ phi_k.transpose(-2, -1)
    attn = attn / attn.sum(dim=-1, keepdim=True)
    expected = module.proj((attn @ qkv[2]).transpose(1, 2).reshape(batch, tokens, heads * head_dim))
    torch.testing.assert_close(module(x), expected)


def test_positive_random_features_follow_the_original_definition() -> None:
    """φ(x) = exp(x̂W − ‖x̂‖²/2)/√m with x̂ the L2-normalised rows; the input scale must not matter."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 8, generator=generator, dtype=torch.float64)
    projection = torch.randn(2, 8, 16, generator=generator, dtype=torch.float64)
    x_hat = x / x.norm(dim=-1, keepdim=True)
    expected = torch.exp(x_hat @ projection - 0.5) / 4.0
    torch.testing.assert_close(positive_random_features(x, projection), expected)
    torch.testing.assert_close(positive_random_features(7.0 * x, projection), expected)
    assert (positive_random_features(x, projection) > 0).all()


def test_positive_random_features_estimate_the_exponential_kernel() -> None:
    """E[φ(a)·φ(b)] = exp(â·b̂): check the Monte-Carlo estimate with many features."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 1, 6, generator=generator, dtype=torch.float64)
    projection = torch.randn(1, 6, 200_000, generator=generator, dtype=torch.float64)
    estimate = (positive_random_features(a, projection) * positive_random_features(b, projection)).sum()
    exact = torch.exp((a / a.norm()) @ (b / b.norm()).transpose(-2, -1)).squeeze()
    assert abs(estimate.item() - exact.item()) < 0.03 * exact.item()


def test_performer_projection_is_seeded_and_shaped() -> None:
    first = PerformerAttention(48, 3, seed=5)
    again = PerformerAttention(48, 3, seed=5)
    other = PerformerAttention(48, 3, seed=6)
    assert first.rand_matrix.shape == (3, 16, 32)
    assert torch.equal(first.rand_matrix, again.rand_matrix)
    assert not torch.equal(first.rand_matrix, other.rand_matrix)
    assert not first.rand_matrix.requires_grad
    assert "rand_matrix" in first.state_dict()
    assert PerformerAttention(48, 3, feature_ratio=3).rand_matrix.shape == (3, 16, 48)


def test_performer_attention_dropout_path_trains() -> None:
    module = PerformerAttention(32, 2, attn_drop=0.5).train()
    x = torch.randn(2, 9, 32, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind", ["self", "perf", "gfnet_filter"])
def test_attention_map_is_a_distribution_over_tokens(kind: str) -> None:
    mixer = build_mixer(kind, 32, 4, (3, 4)).eval()
    maps = mixer.attention_map(torch.randn(2, 12, 32))
    heads = 1 if kind == "gfnet_filter" else 4
    assert maps.shape == (2, heads, 12)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(dim=-1), torch.ones(2, heads))


def test_self_attention_map_is_the_mean_token_query_against_all_keys() -> None:
    """a_h = softmax(q̄_h K_hᵀ/√d) with q̄ = W_q x̄ + b_q, computed here from the raw weights."""
    mixer = SelfAttention(16, 2, qkv_bias=True).double().eval()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    w_q, w_k, _ = mixer.qkv.weight.split(16)
    b_q, b_k, _ = mixer.qkv.bias.split(16)
    q_mean = (x.mean(dim=1) @ w_q.T + b_q).reshape(1, 2, 1, 8)
    keys = (x @ w_k.T + b_k).reshape(1, 6, 2, 8).transpose(1, 2)
    expected = torch.softmax(q_mean @ keys.transpose(-2, -1) / math.sqrt(8), dim=-1).squeeze(-2)
    torch.testing.assert_close(mixer.attention_map(x), expected)


@given(shift_h=st.integers(0, 3), shift_w=st.integers(0, 4), seed=st.integers(0, 1000))
def test_global_filter_is_linear_and_translation_equivariant(shift_h: int, shift_w: int, seed: int) -> None:
    mixer = GlobalFilter(6, (4, 5), seed=seed).double()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 20, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(2, 20, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(mixer(2.0 * x - y), 2.0 * mixer(x) - mixer(y))

    def roll(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(2, 4, 5, 6).roll((shift_h, shift_w), dims=(1, 2)).reshape(2, 20, 6)

    torch.testing.assert_close(mixer(roll(x)), roll(mixer(x)))


def test_global_filter_identity_filter_is_identity() -> None:
    """With K = 1 (real, all frequencies) the orthonormal FFT round trip returns the input."""
    mixer = GlobalFilter(3, 4)
    with torch.no_grad():
        mixer.complex_weight.zero_()
        mixer.complex_weight[..., 0] = 1.0
    x = torch.randn(2, 16, 3)
    torch.testing.assert_close(mixer(x), x)


@pytest.mark.parametrize("kind", ["self", "perf", "gfnet_filter"])
def test_mixers_under_bf16_autocast_stay_finite(kind: str) -> None:
    mixer = build_mixer(kind, 32, 4, 4)
    x = torch.randn(2, 16, 32) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mixer(x)
        maps = mixer.attention_map(x)
    assert out.shape == x.shape
    assert torch.isfinite(out.float()).all() and torch.isfinite(maps.float()).all()


def test_factory_lists_kinds_and_rejects_unknown_ones() -> None:
    assert {"self", "perf", "gfnet_filter"} <= set(available_mixers())
    with pytest.raises(ValueError, match="available kinds: .*perf"):
        build_mixer("vars_unknown", 32, 4, 4)
    with pytest.raises(ValueError, match="variant"):
        build_mixer("self", 32, 4, 4, variant="other")
    with pytest.raises(ValueError, match="grid_size"):
        build_mixer("self", 32, 4, (0, 3))
    with pytest.raises(TypeError, match="extra options"):
        build_mixer("self", 32, 4, 4, lam=0.3)
    with pytest.raises(ValueError, match="already registered"):
        register_mixer("self", lambda *args, **kwargs: torch.nn.Identity())
    with pytest.raises(ValueError, match="kind"):
        register_mixer("Bad Name", lambda *args, **kwargs: torch.nn.Identity())


def test_mixer_argument_validation() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SelfAttention(30, 4)
    with pytest.raises(ValueError, match="num_heads"):
        PerformerAttention(32, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, N, 32\)"):
        SelfAttention(32, 4)(torch.randn(2, 5, 31))
    with pytest.raises(ValueError, match="x must have shape"):
        GlobalFilter(8, 3)(torch.randn(1, 8, 8))


@pytest.mark.parametrize("mixer_class", [SelfAttention, PerformerAttention])
def test_attention_matrix_reproduces_the_forward_pass(mixer_class: type) -> None:
    """Y = proj(A V) with A from attention_matrix: the matrix is the one the forward pass applies."""
    mixer = mixer_class(24, 3, qkv_bias=True).double().eval()
    x = torch.randn(2, 10, 24, dtype=torch.float64)
    attn = mixer.attention_matrix(x)
    assert attn.dtype == torch.float64
    assert attn.shape == (2, 3, 10, 10)
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 3, 10, dtype=torch.float64))
    v = mixer.qkv(x)[..., 48:].reshape(2, 10, 3, 8).transpose(1, 2)
    expected = mixer.proj((attn @ v).transpose(1, 2).reshape(2, 10, 24))
    torch.testing.assert_close(mixer(x), expected)
