"""RVT* (Mao et al. 2021, "Towards robust vision transformer"), laid out as the original VARS code's ``rvt_tiny``.

Module names follow the original code so that its checkpoints load through
:func:`integrations.vision.checkpoints.convert_original_state_dict` with one documented rename
(``transformers.`` → ``stages.``).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from ..mixers import build_mixer
from .layers import ConvMlp, ImageClassifier, TokenMlp, TransformerBlock, check_model_options, drop_path_rates

__all__ = ["RVT", "RVTStem", "RVTStage", "RVT_SIZES", "RVTBlockBuilder", "build_rvt_block", "register_rvt_block"]

RVT_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "tiny": {"base_dims": (32, 32), "depth": (10, 2), "heads": (6, 12)},
    "small": {"base_dims": (64,), "depth": (12,), "heads": (6,)},
    "base": {"base_dims": (64,), "depth": (12,), "heads": (12,)},
}
"""Per-stage head width, depth and heads of RVT-Ti / -S / -B (stage width = base_dim · heads)."""


class RVTBlockBuilder(Protocol):
    """Signature of a block builder: one RVT block for a mixer kind."""

    def __call__(
        self,
        kind: str,
        dim: int,
        num_heads: int,
        grid_size: tuple[int, int],
        *,
        mlp_ratio: float,
        drop: float,
        attn_drop: float,
        drop_path: float,
        variant: str,
        seed: int,
        **mixer_kwargs: Any,
    ) -> nn.Module: ...


def build_rvt_block(
    kind: str,
    dim: int,
    num_heads: int,
    grid_size: tuple[int, int],
    *,
    mlp_ratio: float,
    drop: float,
    attn_drop: float,
    drop_path: float,
    variant: str,
    seed: int,
    **mixer_kwargs: Any,
) -> nn.Module:
    """The standard RVT block: :class:`TransformerBlock` with the mixer ``kind`` and RVT's MLP.

    The MLP is :class:`ConvMlp`, except at width 768 where — as in the original RVT / VARS code,
    kept for checkpoint compatibility — it is the token-wise :class:`TokenMlp`.

    Args:
        kind: mixer kind for :func:`build_mixer`.
        dim: token width.
        num_heads: attention heads.
        grid_size: token grid of the stage.
        mlp_ratio: MLP hidden width / token width.
        drop: dropout in the MLP and after the mixer's projection.
        attn_drop: attention-weight dropout.
        drop_path: stochastic-depth probability.
        variant: ``"original"`` or ``"paper"``.
        seed: seed of the mixer's fixed random quantities.
        **mixer_kwargs: kind-specific mixer options.
    """
    mixer = build_mixer(
        kind, dim, num_heads, grid_size, variant, qkv_bias=True, attn_drop=attn_drop, proj_drop=drop, seed=seed,
        **mixer_kwargs,
    )
    hidden = int(dim * mlp_ratio)
    mlp = TokenMlp(dim, hidden, drop) if dim == 768 else ConvMlp(dim, hidden, grid_size, drop)
    return TransformerBlock(dim, mixer, mlp, drop_path=drop_path, norm_eps=1e-6)


_BLOCK_BUILDERS: dict[str, RVTBlockBuilder] = {}


def register_rvt_block(kind: str, builder: RVTBlockBuilder, *, overwrite: bool = False) -> None:
    """Use ``builder`` instead of :func:`build_rvt_block` for the mixer ``kind`` in RVT models.

    For kinds whose original block is not "pre-norm mixer + MLP" (the original VARS-S block
    replaces the whole block, norms included).

    Args:
        kind: the mixer kind.
        builder: callable with the :class:`RVTBlockBuilder` signature.
        overwrite: replace an existing builder instead of raising.
    """
    if not callable(builder):
        raise TypeError(f"builder must be callable, got {type(builder).__name__}")
    if kind in _BLOCK_BUILDERS and not overwrite:
        raise ValueError(f"an RVT block builder for {kind!r} is already registered; pass overwrite=True")
    _BLOCK_BUILDERS[kind] = builder


def _stem_grid(img_size: int) -> int:
    """Side of the token grid after :class:`RVTStem` (conv 7/2 pad 2, max-pool 3/2 pad 1, conv 4/4)."""
    side = (img_size + 4 - 7) // 2 + 1
    side = (side + 2 - 3) // 2 + 1
    return (side - 4) // 4 + 1


class RVTStem(nn.Module):
    """RVT's patch embedding: Conv 7×7/2 (32 ch) → BatchNorm → MaxPool 3×3/2 → Conv 4×4/4 (``dim`` ch), total stride 16.

    Args:
        in_chans: image channels.
        dim: output width.
    """

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, 32, kernel_size=7, stride=2, padding=2),
            nn.BatchNorm2d(32),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(32, dim, kernel_size=4, stride=4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, in_chans, s, s)`` → feature maps ``(B, dim, h, h)``."""
        return self.proj(x)


class RVTStage(nn.Module):
    """A stage of RVT blocks acting on a feature map: ``(B, C, h, w)`` → tokens → blocks → ``(B, C, h, w)``.

    Args:
        blocks: the stage's blocks, each mapping tokens ``(B, h·w, C)`` to the same shape.
    """

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the blocks to the flattened feature map."""
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class RVT(ImageClassifier):
    """RVT*: stages of transformer blocks with conv MLPs, joined by depth-wise stride-2 pooling convolutions.

    For an image I: F⁰ = stem(I); for stage s, Fˢ = Stage_s(Fˢ⁻¹) followed (between stages) by a
    depth-wise 3×3/2 convolution doubling the width; logits = W · LN(mean_{h,w} Fᴸ) + b.
    Stage widths are ``base_dims[s] · heads[s]``.

    Args:
        img_size: side of the square input images.
        num_classes: number of classes (0: no head).
        in_chans: image channels.
        base_dims: per-stage head width.
        depth: per-stage number of blocks.
        heads: per-stage number of heads.
        mlp_ratio: MLP hidden width / token width.
        attention: token mixer kind (see :func:`integrations.vision.mixers.available_mixers`).
        variant: ``"original"`` or ``"paper"`` configuration of VARS mixers.
        drop_rate: dropout after the stem and inside blocks.
        attn_drop_rate: attention-weight dropout.
        drop_path_rate: largest stochastic-depth rate (linear over all blocks).
        seed: seed of the mixers' fixed random quantities (the l-th block overall uses ``seed + l``).
        mixer_kwargs: extra kind-specific options passed to the mixer factory.
    """

    def __init__(
        self,
        img_size: int = 224,
        num_classes: int = 1000,
        in_chans: int = 3,
        base_dims: tuple[int, ...] = (32, 32),
        depth: tuple[int, ...] = (10, 2),
        heads: tuple[int, ...] = (6, 12),
        mlp_ratio: float = 4.0,
        attention: str = "self",
        variant: str = "original",
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        seed: int = 0,
        mixer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_model_options(img_size, num_classes, in_chans, drop_rate, drop_path_rate)
        if not (len(base_dims) == len(depth) == len(heads) >= 1):
            raise ValueError(
                f"base_dims, depth and heads must have the same length >= 1, got {base_dims}, {depth}, {heads}"
            )
        grid = _stem_grid(img_size)
        grids = [grid]
        for _ in range(len(depth) - 1):
            grids.append((grids[-1] + 2 - 3) // 2 + 1)
        if min(grids) < 1:
            raise ValueError(f"img_size={img_size} is too small for {len(depth)} RVT stages (token grids {grids})")
        widths = [b * h for b, h in zip(base_dims, heads)]
        super().__init__(img_size, in_chans, num_classes, widths[-1], drop_rate=0.0)
        self.attention = attention
        self.grid_sizes = [(g, g) for g in grids]
        self.patch_embed = RVTStem(in_chans, widths[0])
        self.pos_drop = nn.Dropout(drop_rate)
        builder = _BLOCK_BUILDERS.get(attention, build_rvt_block)
        rates = drop_path_rates(drop_path_rate, sum(depth))
        self.stages = nn.ModuleList()
        self.pools = nn.ModuleList()
        first = 0
        for stage, (width, stage_depth, stage_heads) in enumerate(zip(widths, depth, heads)):
            blocks = [
                builder(
                    attention,
                    width,
                    stage_heads,
                    self.grid_sizes[stage],
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rates[first + index],
                    variant=variant,
                    seed=seed + first + index,
                    **(mixer_kwargs or {}),
                )
                for index in range(stage_depth)
            ]
            first += stage_depth
            self.stages.append(RVTStage(blocks))
            if stage < len(depth) - 1:
                self.pools.append(_DepthwisePool(width, widths[stage + 1]))
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images → LayerNorm of the average final feature map ``(B, width)``."""
        self.check_images(x)
        x = self.pos_drop(self.patch_embed(x))
        for stage, pool in zip(self.stages, self.pools):
            x = pool(stage(x))
        x = self.stages[-1](x)
        return self.norm(x.mean(dim=(2, 3)))


class _DepthwisePool(nn.Module):
    """Between stages: grouped 3×3/2 convolution (padding 1, groups = input width) widening ``c_in`` → ``c_out``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, groups=c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the spatial size of ``(B, c_in, h, w)``."""
        return self.conv(x)
