"""Attention maps of any model built from our token mixers, read through forward hooks (paper §4.3).

Definition. For a mixer receiving tokens X = (x_1, …, x_N) on an ``h × w`` grid, the attention map is
the attention that the global-average token x̄ = (1/N) Σ_i x_i pays to each token, per head:

* softmax attention: a_h = softmax(q̄_h K_hᵀ / √d), q̄ = W_q x̄ + b_q;
* Performer attention: a_h = φ(q̄_h) φ(K_h)ᵀ normalised to unit L1 norm (φ: positive random features);
* GFNet's global filter (no query/key): the share of output norm at each token (see
  :meth:`integrations.vision.mixers.GlobalFilter.attention_map`);
* VARS mixers: their own ``attention_map`` method, under the same protocol.

A mixer takes part by implementing :class:`AttentionMapProvider`; no model surgery is needed.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["AttentionMapProvider", "attention_layers", "attention_maps", "attention_map"]


@runtime_checkable
class AttentionMapProvider(Protocol):
    """A token mixer that can say where its global-average token attends.

    ``attention_map(x)`` receives exactly the tokens ``(B, N, C)`` the mixer's ``forward`` received and
    returns non-negative weights ``(B, heads, N)`` that sum to one over the N tokens.
    """

    def attention_map(self, x: torch.Tensor) -> torch.Tensor: ...


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` implementing :class:`AttentionMapProvider`, in forward (registration) order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [module for module in model.modules() if isinstance(module, AttentionMapProvider)]


def attention_maps(model: nn.Module, images: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Per-head attention maps of the mean token at mixer ``layer``, on the token grid.

    The model runs once on ``images`` in eval mode without gradients (its training flag is restored
    afterwards); a forward pre-hook records the input tokens of the chosen mixer, whose
    ``attention_map`` is then evaluated on them.

    Args:
        model: a model containing mixers that implement :class:`AttentionMapProvider`.
        images: input batch ``(B, C, H_img, W_img)``.
        layer: index into :func:`attention_layers` (negative counts from the last mixer).

    Returns:
        ``(B, heads, H, W)`` maps on the square ``H × W`` token grid of that layer; each map sums to one.
    """
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no mixer implementing attention_map(x)")
    if not isinstance(layer, int) or not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer must be an int in [{-len(layers)}, {len(layers) - 1}], got {layer!r}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    mixer = layers[layer]
    captured: list[torch.Tensor] = []

    def record_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach())

    handle = mixer.register_forward_pre_hook(record_input)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images)
            if not captured:
                raise RuntimeError(f"mixer layer {layer} was not called during the forward pass")
            weights = mixer.attention_map(captured[-1])
    finally:
        handle.remove()
        model.train(was_training)
    batch, heads, tokens = weights.shape
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"mixer layer {layer} sees {tokens} tokens, which is not a square grid")
    return weights.reshape(batch, heads, side, side)


def attention_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention map of the mean token at the last mixer: mean_h attention_maps(model, images)[:, h].

    Args:
        model: a model containing mixers that implement :class:`AttentionMapProvider`.
        images: input batch ``(B, C, H_img, W_img)``.

    Returns:
        ``(B, H, W)`` maps on the last mixer's token grid, each summing to one.
    """
    return attention_maps(model, images, layer=-1).mean(dim=1)
