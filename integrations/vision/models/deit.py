"""DeiT* (Touvron et al. 2021, as modified in the VARS paper): convolutional patch embedding, swappable token mixer."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..mixers import build_mixer
from .layers import ConvStemTokenClassifier, TokenMlp, TransformerBlock, check_model_options, drop_path_rates

__all__ = ["DeiT", "DEIT_SIZES"]

DEIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
}
"""DeiT-Ti / -S / -B widths, depths and heads (Touvron et al. 2021, Table 1)."""


class DeiT(ConvStemTokenClassifier):
    """DeiT*: a plain vision transformer on the token grid of a convolutional stem, classified by average pooling.

    For an image I of side s, with the ``(s/16)²`` tokens of :class:`ConvStem` and a learned position embedding E,

        X⁰ = flatten(stem(I)) + E,   Xˡ = Block_l(Xˡ⁻¹) (:class:`TransformerBlock`),
        logits = W · mean_i LN(Xᴸ)_i + b.

    There is no class token: the token set is exactly the patch grid, so grid-structured mixers
    (global filters, VARS static dictionaries) apply unchanged and attention maps cover the image.

    Args:
        img_size: side of the square input images (divisible by ``patch_size``).
        num_classes: number of classes (0: no head).
        in_chans: image channels.
        embed_dim: token width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / token width.
        attention: token mixer kind (see :func:`integrations.vision.mixers.available_mixers`).
        variant: ``"original"`` or ``"paper"`` configuration of VARS mixers.
        qkv_bias: bias in the query/key/value projections.
        drop_rate: dropout after the position embedding, in the MLPs and before the head.
        attn_drop_rate: attention-weight dropout.
        drop_path_rate: largest stochastic-depth rate (linear over the blocks).
        seed: seed of the mixers' fixed random quantities (block l uses ``seed + l``).
        patch_size: stride of the convolutional stem (16 as in the paper; 8 gives a 4× finer token grid).
        mixer_kwargs: extra kind-specific options passed to :func:`build_mixer`.
    """

    def __init__(
        self,
        img_size: int = 224,
        num_classes: int = 1000,
        in_chans: int = 3,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        attention: str = "self",
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
        hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.ModuleList(
            TransformerBlock(
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
                TokenMlp(embed_dim, hidden, drop_rate),
                drop_path=rate,
            )
            for index, rate in enumerate(drop_path_rates(drop_path_rate, depth))
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()
