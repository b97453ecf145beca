"""GFNet* (Rao et al. 2021, "Global filter networks"), with the convolutional stem of the VARS paper's "*" models."""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from ..mixers import build_mixer
from .layers import ConvStemTokenClassifier, TokenMlp, check_model_options, drop_path_rates

__all__ = ["GFNet", "GFNetBlock", "GFNET_SIZES"]

GFNET_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 256, "depth": 12, "num_heads": 4},
    "small": {"embed_dim": 384, "depth": 19, "num_heads": 6},
    "base": {"embed_dim": 512, "depth": 19, "num_heads": 8},
}
"""GFNet-Ti / -S / -B widths and depths (Rao et al. 2021, Table 1); the heads (width / 64) apply to attention mixers."""


class GFNetBlock(nn.Module):
    """GFNet block: one residual branch through the mixer and the MLP,

        x ← x + DropPath(MLP(LN₂(mixer(LN₁(x))))).

    Args:
        dim: token width.
        mixer: the token mixer (the global filter by default), ``(B, N, dim) -> (B, N, dim)``.
        mlp_ratio: MLP hidden width / token width.
        drop: MLP dropout.
        drop_path: stochastic-depth probability.
    """

    def __init__(
        self, dim: int, mixer: nn.Module, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to tokens ``(B, N, dim)``."""
        return x + self.drop_path(self.mlp(self.norm2(self.mixer(self.norm1(x)))))


class GFNet(ConvStemTokenClassifier):
    """GFNet*: global-filter blocks over the token grid of a convolutional stem, classified by average pooling.

    X⁰ = flatten(stem(I)) + E,  Xˡ = GFNetBlock_l(Xˡ⁻¹),  logits = W · mean_i LN(Xᴸ)_i + b.
    The mixer defaults to GFNet's global filter (``"gfnet_filter"``); any other kind of the mixer
    factory (softmax, Performer, VARS) replaces it inside the same block.

    Args:
        img_size: side of the square input images (divisible by ``patch_size``).
        num_classes: number of classes (0: no head).
        in_chans: image channels.
        embed_dim: token width.
        depth: number of blocks.
        num_heads: heads of attention mixers (unused by the global filter).
        mlp_ratio: MLP hidden width / token width.
        attention: token mixer kind.
        variant: ``"original"`` or ``"paper"`` configuration of VARS mixers.
        qkv_bias: bias in the query/key/value projections of attention mixers.
        drop_rate: dropout after the position embedding, in the MLPs and before the head.
        attn_drop_rate: attention-weight dropout.
        drop_path_rate: largest stochastic-depth rate (linear over the blocks).
        seed: seed of the mixers' random initialisation / fixed random quantities (block l: ``seed + l``).
        patch_size: stride of the convolutional stem (16 as in the paper; 8 gives a 4× finer token grid).
        mixer_kwargs: extra kind-specific options passed to the mixer factory.
    """

    def __init__(
        self,
        img_size: int = 224,
        num_classes: int = 1000,
        in_chans: int = 3,
        embed_dim: int = 256,
        depth: int = 12,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        attention: str = "gfnet_filter",
        variant: str = "original",
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        seed: int = 0,
        patch_size: int = 16,
        mixer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_model_options(img_size, num_classes, in_chans, drop_rate, drop_path_rate)
        super().__init__(img_size, in_chans, num_classes, embed_dim, drop_rate)
        self._build_stem(img_size, in_chans, embed_dim, patch_size, drop_rate)
        self.attention = attention
        self.blocks = nn.ModuleList(
            GFNetBlock(
                embed_dim,
                build_mixer(
                    attention,
                    embed_dim,
                    num_heads,
                    self.grid_size,
                    variant,
                    qkv_bias=qkv_bias,
                    attn_drop=attn_drop_rate,
                    proj_drop=drop_rate,
                    seed=seed + index,
                    **(mixer_kwargs or {}),
                ),
                mlp_ratio=mlp_ratio,
                drop=drop_rate,
                drop_path=rate,
            )
            for index, rate in enumerate(drop_path_rates(drop_path_rate, depth))
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()
