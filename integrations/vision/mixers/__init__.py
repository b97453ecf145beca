"""Token mixers and the one factory every model family builds them through.

A mixer maps tokens ``(B, N, C)`` to tokens ``(B, N, C)``. Mixer kinds are looked up by name
in a table of constructors; each constructor has the signature of :data:`MixerConstructor`::

    constructor(spec: MixerSpec, **extra) -> nn.Module

where :class:`MixerSpec` holds what every mixer is told (width, heads, grid, variant, biases, dropouts, seed) and
``extra`` the kind's own options.

Adding a kind is one call, ``register_mixer("my_kind", build_my_kind)``, followed by
:func:`integrations.vision.models.register_models` to publish the new timm model names. The VARS kinds
``vars_s``, ``vars_d`` and ``vars_sd`` (built from ``sparsecode`` parts, :mod:`.vars_d`, :mod:`.vars_s`) are in
the table from the start.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from .attention import PerformerAttention, SelfAttention, positive_random_features
from .global_filter import GlobalFilter
from .spec import MixerSpec, reject_extra
from .vars_config import VARS_D_CONFIGS, VARS_S_CONFIGS, SolveConfig
from .vars_d import VARS_D, VARS_SD, build_vars_d, build_vars_sd
from .vars_s import VARS_S, ChannelBatchNorm, build_vars_s

__all__ = [
    "MixerConstructor",
    "MixerSpec",
    "VARIANTS",
    "SelfAttention",
    "PerformerAttention",
    "GlobalFilter",
    "VARS_S",
    "VARS_D",
    "VARS_SD",
    "ChannelBatchNorm",
    "SolveConfig",
    "VARS_D_CONFIGS",
    "VARS_S_CONFIGS",
    "positive_random_features",
    "build_mixer",
    "register_mixer",
    "available_mixers",
]

VARIANTS: tuple[str, ...] = ("original", "paper")
"""Configurations a mixer kind may offer: ``original`` (the released VARS code) or ``paper`` (its equations)."""


class MixerConstructor(Protocol):
    """Signature of an entry of the mixer table: builds one ``(B, N, C) -> (B, N, C)`` module."""

    def __call__(self, spec: MixerSpec, **extra: Any) -> nn.Module: ...


def _build_self_attention(spec: MixerSpec, **extra: Any) -> nn.Module:
    """Softmax self-attention; grid, variant and seed do not affect it."""
    reject_extra("self", extra)
    return SelfAttention(spec.dim, spec.num_heads, qkv_bias=spec.qkv_bias, attn_drop=spec.attn_drop,
                         proj_drop=spec.proj_drop)


def _build_performer(spec: MixerSpec, **extra: Any) -> nn.Module:
    """Performer attention; ``extra`` may hold ``feature_ratio``."""
    reject_extra("perf", extra, allowed=("feature_ratio",))
    return PerformerAttention(spec.dim, spec.num_heads, qkv_bias=spec.qkv_bias, attn_drop=spec.attn_drop,
                              proj_drop=spec.proj_drop, seed=spec.seed, **extra)


def _build_global_filter(spec: MixerSpec, **extra: Any) -> nn.Module:
    """GFNet's global filter; it has no heads, no projections and no dropout, so those options are unused."""
    reject_extra("gfnet_filter", extra)
    return GlobalFilter(spec.dim, spec.grid_size, seed=spec.seed)


_MIXERS: dict[str, MixerConstructor] = {
    "self": _build_self_attention,
    "perf": _build_performer,
    "gfnet_filter": _build_global_filter,
    "vars_s": build_vars_s,
    "vars_d": build_vars_d,
    "vars_sd": build_vars_sd,
}


def available_mixers() -> tuple[str, ...]:
    """Names of the mixer kinds that :func:`build_mixer` can build now, in registration order."""
    return tuple(_MIXERS)


def register_mixer(kind: str, constructor: MixerConstructor, *, overwrite: bool = False) -> None:
    """Add ``kind`` → ``constructor`` to the mixer table.

    Args:
        kind: the name models and configs use (e.g. ``"vars_sd"``); lowercase letters, digits, ``_``.
        constructor: callable with the :data:`MixerConstructor` signature.
        overwrite: replace an existing entry instead of raising.
    """
    if not isinstance(kind, str) or not kind or not all(c.islower() or c.isdigit() or c == "_" for c in kind):
        raise ValueError(f"kind must be a non-empty lowercase identifier, got {kind!r}")
    if not callable(constructor):
        raise TypeError(f"constructor must be callable, got {type(constructor).__name__}")
    if kind in _MIXERS and not overwrite:
        raise ValueError(f"mixer kind {kind!r} is already registered; pass overwrite=True to replace it")
    _MIXERS[kind] = constructor


def build_mixer(
    kind: str,
    dim: int,
    num_heads: int,
    grid_size: int | tuple[int, int],
    variant: str = "original",
    *,
    qkv_bias: bool = True,
    attn_drop: float = 0.0,
    proj_drop: float = 0.0,
    seed: int = 0,
    **extra: Any,
) -> nn.Module:
    """Build the token mixer ``kind``: a module mapping tokens ``(B, N, dim)`` on an ``h × w`` grid to ``(B, N, dim)``.

    Args:
        kind: a name from :func:`available_mixers` (``"self"``, ``"perf"``, ``"gfnet_filter"``, …).
        dim: token width.
        num_heads: number of heads (ignored by head-less mixers such as the global filter).
        grid_size: token grid ``(h, w)`` or ``h`` for a square grid; N = h·w.
        variant: ``"original"`` (released VARS code) or ``"paper"`` (paper equations); only VARS kinds differ.
        qkv_bias: whether query/key/value projections have a bias.
        attn_drop: attention-weight dropout probability.
        proj_drop: output-projection dropout probability.
        seed: seed of any fixed random quantity of the mixer (e.g. the Performer projection).
        **extra: kind-specific options, passed to the constructor.

    Returns:
        The mixer module.
    """
    if kind not in _MIXERS:
        raise ValueError(f"unknown mixer kind {kind!r}; available kinds: {', '.join(available_mixers())}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if isinstance(grid_size, int) and not isinstance(grid_size, bool):
        grid = (grid_size, grid_size)
    elif isinstance(grid_size, (tuple, list)) and len(grid_size) == 2:
        grid = (int(grid_size[0]), int(grid_size[1]))
    else:
        raise ValueError(f"grid_size must be an int or a (height, width) pair, got {grid_size!r}")
    if min(grid) <= 0:
        raise ValueError(f"grid_size must be positive, got {grid_size!r}")
    spec = MixerSpec(dim, num_heads, grid, variant, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                     seed=seed)
    return _MIXERS[kind](spec, **extra)
