"""The released RVT block of VARS-S: the whole block is replaced (no norm before the mixer, batch norms after).

    x ← x + DropPath(proj(BN₁(F2(P u*(W_v x)))))      (the :class:`~integrations.vision.mixers.VARS_S` mixer
                                                        with ``norm = BN₁``),
    x ← x + DropPath(MLP(BN₂(x))),

BN₁, BN₂ batch normalisations over channels (:class:`~integrations.vision.mixers.vars_s.ChannelBatchNorm`),
MLP RVT's convolutional MLP (token-wise at width 768, as the released code). State-dict keys are the released
``VARS_S_Block``'s, flat at the block level (``kernel``, ``L``, ``kernel_norm``, ``kernel2``, ``v``, ``proj``,
``norm1``, ``norm2``, ``mlp``): the mixer's keys are published without its ``attn.`` prefix and its
``norm`` as ``norm1``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from ..mixers.state_aliases import alias_state_dict_keys
from ..mixers.vars_s import VARS_S, ChannelBatchNorm
from .layers import ConvMlp, TokenMlp

__all__ = ["VARS_S_Block", "build_vars_s_block"]


class VARS_S_Block(nn.Module):  # noqa: N801 - the released class name
    """RVT block with VARS-S: x ← x + DropPath(VARS_S(x)), x ← x + DropPath(MLP(BN₂(x))) (see module docstring).

    Args:
        dim: token width C.
        grid_size: the token grid ``(h, w)``.
        mlp_ratio: MLP hidden width / token width.
        drop: dropout in the MLP (the released block has none after the mixer's projection).
        drop_path: stochastic-depth probability.
        variant: ``"original"`` or ``"paper"`` configuration of the mixer.
        qkv_bias: bias of the value projection.
        seed: seed of the random initial filters.
        **mixer_kwargs: ``atoms_per_channel``, ``lam``, ``num_steps`` of :class:`VARS_S`.
    """

    def __init__(
        self,
        dim: int,
        grid_size: tuple[int, int],
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        variant: str = "original",
        qkv_bias: bool = True,
        seed: int = 0,
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.attn = VARS_S(dim, grid_size, variant=variant, qkv_bias=qkv_bias, proj_drop=0.0, seed=seed,
                           norm=ChannelBatchNorm(dim), **mixer_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = ChannelBatchNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = TokenMlp(dim, hidden, drop) if dim == 768 else ConvMlp(dim, hidden, self.attn.grid_size, drop)
        public = ("kernel", "L", "kernel_norm", "kernel2", "v", "proj")
        alias_state_dict_keys(self, {**{name: f"attn.{name}" for name in public}, "norm1": "attn.norm"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to tokens ``(B, N, dim)``."""
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def build_vars_s_block(
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
    """RVT block builder for ``"vars_s"`` (:class:`VARS_S_Block`; heads and attention dropout do not apply).

    Args:
        kind: must be ``"vars_s"``.
        dim: token width.
        num_heads: unused (VARS-S works per channel).
        grid_size: token grid of the stage.
        mlp_ratio: MLP hidden width / token width.
        drop: MLP dropout.
        attn_drop: must be in [0, 1); unused.
        drop_path: stochastic-depth probability.
        variant: ``"original"`` or ``"paper"``.
        seed: seed of the random initial filters.
        **mixer_kwargs: options of :class:`VARS_S`.
    """
    if kind != "vars_s":
        raise ValueError(f"build_vars_s_block builds the 'vars_s' block, got kind={kind!r}")
    if not 0.0 <= attn_drop < 1.0:
        raise ValueError(f"attn_drop must be in [0, 1), got {attn_drop!r}")
    return VARS_S_Block(dim, tuple(grid_size), mlp_ratio=mlp_ratio, drop=drop, drop_path=drop_path, variant=variant,
                        qkv_bias=True, seed=seed, **mixer_kwargs)
