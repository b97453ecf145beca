"""Attention token mixers: softmax self-attention and Performer (positive random feature) attention.

Both mixers map tokens ``(B, N, C)`` to tokens ``(B, N, C)`` and implement the attention-map
protocol of :mod:`integrations.vision.attention_maps`: ``attention_map(x) -> (B, heads, N)``,
the attention of the global-average token over the ``N`` tokens (paper §4.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsecode.dictionaries.performer import positive_random_features as library_positive_random_features

__all__ = ["SelfAttention", "PerformerAttention", "positive_random_features"]


def _check_dims(dim: int, num_heads: int) -> int:
    """Validate ``dim`` / ``num_heads`` and return the per-head width ``dim // num_heads``."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads <= 0:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    if dim % num_heads != 0:
        raise ValueError(f"dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}")
    return dim // num_heads


def _check_tokens(x: torch.Tensor, dim: int) -> None:
    """Raise a clear error unless ``x`` is a ``(B, N, dim)`` floating tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, N, {dim}), got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f"x must have shape (B, N, {dim}), got {tuple(x.shape)}")


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Promote half-precision tensors to float32 (normalisations are done at least in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def positive_random_features(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """Positive random features of row-normalised inputs, as in the original VARS code.

    With x̂ = x / max(‖x‖₂, 1e-12) (each row L2-normalised first) and W the ``(d, m)`` projection,

        φ(x) = exp(x̂ W − ‖x̂‖² / 2) / √m,

    so that E[φ(a)·φ(b)] = exp(â·b̂) for W with i.i.d. N(0, 1) entries (Choromanski et al. 2021).
    The features themselves are :func:`sparsecode.dictionaries.performer.positive_random_features`,
    the one implementation shared with the VARS dictionaries; only the row normalisation is done here.

    Args:
        x: rows to embed, shape ``(..., heads, N, d)``.
        projection: random projection, shape ``(heads, d, m)`` (broadcast over leading dims).

    Returns:
        Features of shape ``(..., heads, N, m)``, all strictly positive.
    """
    return library_positive_random_features(F.normalize(x, dim=-1), projection)


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention (Vaswani et al. 2017).

    For tokens X ∈ R^{N×C} and each head h with Q_h = X W_q^h, K_h = X W_k^h, V_h = X W_v^h,

        A_h = softmax(Q_h K_hᵀ / √d),    Y = concat_h(A_h V_h) W_o + b_o.

    The forward pass uses the fused ``scaled_dot_product_attention`` kernel when ``fused`` is true
    (the default) and the explicit softmax otherwise (e.g. for FLOP counting); the attention map
    recomputes A for the mean token explicitly.

    Args:
        dim: token width C.
        num_heads: number of heads; ``dim`` must be divisible by it.
        qkv_bias: whether the Q/K/V projection has a bias.
        attn_drop: dropout probability on the attention weights (training only).
        proj_drop: dropout probability after the output projection.
        qk_scale: logit scale; ``None`` means ``head_dim ** -0.5``.
        fused: use the fused attention kernel (same result up to rounding).
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        qk_scale: float | None = None,
        fused: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        head_dim = _check_dims(dim, num_heads)
        if not 0.0 <= attn_drop < 1.0:
            raise ValueError(f"attn_drop must be in [0, 1), got {attn_drop!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = qk_scale if qk_scale is not None else head_dim**-0.5
        self.attn_drop_p = float(attn_drop)
        self.fused = fused
        factory = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **factory)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **factory)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``(B, N, C)`` tokens to q, k, v of shape ``(B, heads, N, head_dim)``."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens ``x`` of shape ``(B, N, C)``; returns ``(B, N, C)``."""
        _check_tokens(x, self.dim)
        batch, tokens, channels = x.shape
        q, k, v = self._split_heads(x)
        if self.fused:
            dropout = self.attn_drop_p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        else:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = self.attn_drop(attn) @ v
        out = out.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))

    def attention_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The full attention A_h = softmax(Q_h K_hᵀ / √d), shape ``(B, heads, N, N)``, rows summing to one.

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.
        """
        _check_tokens(x, self.dim)
        q, k, _ = self._split_heads(x)
        return _at_least_float32((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention of the mean token: a_h = softmax(q̄_h K_hᵀ / √d), q̄ = W_q mean_i(x_i) + b_q.

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.

        Returns:
            ``(B, heads, N)`` non-negative weights summing to one over the tokens.
        """
        _check_tokens(x, self.dim)
        _, k, _ = self._split_heads(x)
        q_mean, _, _ = self._split_heads(x.mean(dim=1, keepdim=True))
        logits = (q_mean @ k.transpose(-2, -1)) * self.scale
        return _at_least_float32(logits).softmax(dim=-1).squeeze(-2)


class PerformerAttention(nn.Module):
    """Performer attention with positive random features, row-L1-normalised (original VARS code).

    With φ from :func:`positive_random_features` and a fixed projection ``rand_matrix``
    ``(heads, head_dim, m)``, for each head

        A_h = D⁻¹ φ(Q_h) φ(K_h)ᵀ,   D = diag(φ(Q_h) φ(K_h)ᵀ 1),   Y = concat_h(A_h V_h) W_o + b_o.

    Since φ > 0, the row L1 normalisation equals division by the row sum, so the product is
    evaluated in linear time as φ(Q)(φ(K)ᵀV) / (φ(Q)(φ(K)ᵀ1)); the quadratic form is used only
    when attention dropout is active. The 1/√d logit scale of the original cancels because the
    rows are L2-normalised before the features.

    Args:
        dim: token width C.
        num_heads: number of heads; ``dim`` must be divisible by it.
        qkv_bias: whether the Q/K/V projection has a bias.
        attn_drop: dropout probability on the attention weights (training only).
        proj_drop: dropout probability after the output projection.
        seed: seed of the random projection ``rand_matrix`` (drawn i.i.d. N(0, 1) on the CPU).
        feature_ratio: m / head_dim, the number of random features per head dimension.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        seed: int = 0,
        feature_ratio: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        head_dim = _check_dims(dim, num_heads)
        if not isinstance(feature_ratio, int) or isinstance(feature_ratio, bool) or feature_ratio <= 0:
            raise ValueError(f"feature_ratio must be a positive int, got {feature_ratio!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not 0.0 <= attn_drop < 1.0:
            raise ValueError(f"attn_drop must be in [0, 1), got {attn_drop!r}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.num_features = head_dim * feature_ratio
        self.seed = seed
        self.attn_drop_p = float(attn_drop)
        factory = {"device": device, "dtype": dtype}
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **factory)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **factory)
        self.proj_drop = nn.Dropout(proj_drop)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        projection = torch.randn(num_heads, head_dim, self.num_features, generator=generator, device="cpu")
        self.register_buffer("rand_matrix", projection.to(device=device, dtype=dtype))

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return φ(q), φ(k) of shape ``(B, heads, N, m)`` and v of shape ``(B, heads, N, head_dim)``."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        projection = self.rand_matrix.to(qkv.dtype)
        return positive_random_features(qkv[0], projection), positive_random_features(qkv[1], projection), qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens ``x`` of shape ``(B, N, C)``; returns ``(B, N, C)``."""
        _check_tokens(x, self.dim)
        batch, tokens, channels = x.shape
        phi_q, phi_k, v = self._features(x)
        if self.training and self.attn_drop_p > 0.0:
            attn = F.normalize(phi_q @ phi_k.transpose(-2, -1), p=1, dim=-1)
            out = self.attn_drop(attn) @ v
        else:
            numerator = phi_q @ (phi_k.transpose(-2, -1) @ v)
            row_sums = phi_q @ phi_k.sum(dim=-2).unsqueeze(-1)
            out = numerator / row_sums.clamp_min(1e-12)
        out = out.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))

    def attention_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """The full attention A_h = D⁻¹ φ(Q_h) φ(K_h)ᵀ, shape ``(B, heads, N, N)``, rows summing to one.

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.
        """
        _check_tokens(x, self.dim)
        phi_q, phi_k, _ = self._features(x)
        return F.normalize(_at_least_float32(phi_q @ phi_k.transpose(-2, -1)), p=1, dim=-1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Random-feature attention of the mean token: a_h = φ(q̄_h) φ(K_h)ᵀ / ‖φ(q̄_h) φ(K_h)ᵀ‖₁.

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.

        Returns:
            ``(B, heads, N)`` non-negative weights summing to one over the tokens.
        """
        _check_tokens(x, self.dim)
        _, phi_k, _ = self._features(x)
        phi_q_mean, _, _ = self._features(x.mean(dim=1, keepdim=True))
        weights = _at_least_float32(phi_q_mean @ phi_k.transpose(-2, -1))
        return F.normalize(weights, p=1, dim=-1).squeeze(-2)
