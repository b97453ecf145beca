"""Classifiers that take pixels in [0, 1]: normalisation inside the model, and a logit subset.

Attacks and the evaluation work in pixel space, so ε = 1/255 means one grey level; the wrapped
model still receives ``(x − μ)/σ`` per channel, as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .imagenet_facts import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["NormalizedModel", "LogitSubset"]


def _as_channel_vector(name: str, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    if tensor.numel() == 0:
        raise ValueError(f"{name} must hold one value per channel, got an empty sequence")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor


class NormalizedModel(nn.Module):
    """``f(x) = model((x − μ) / σ)`` with per-channel μ, σ: a classifier of pixels ``x ∈ [0, 1]``.

    Args:
        model: The classifier of normalised images.
        mean: Per-channel mean μ (ImageNet's by default).
        std: Per-channel standard deviation σ (all > 0; ImageNet's by default).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
        std: Sequence[float] | torch.Tensor = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        mean_t, std_t = _as_channel_vector("mean", mean), _as_channel_vector("std", std)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"mean and std must have the same length, got {mean_t.numel()} and {std_t.numel()}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        self.model = model
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise (B, C, H, W) pixels and classify them.

        Args:
            images: Pixels in [0, 1], C equal to the length of ``mean``.

        Returns:
            The model's logits.
        """
        if images.dim() != 4 or images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"images must have shape (B, {self.mean.shape[1]}, H, W), got {tuple(images.shape)}"
            )
        mean = self.mean.to(device=images.device, dtype=images.dtype)
        std = self.std.to(device=images.device, dtype=images.dtype)
        return self.model((images - mean) / std)


class LogitSubset(nn.Module):
    """``g(x) = model(x)[:, S]``: keeps the logits of the class indices ``S`` (in the given order).

    Args:
        model: A classifier.
        indices: The class indices ``S`` to keep (distinct, non-negative).
    """

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        index_list = [int(i) for i in indices]
        if not index_list or min(index_list) < 0 or len(set(index_list)) != len(index_list):
            raise ValueError(f"indices must be distinct non-negative ints, got {index_list[:10]}")
        self.model = model
        self.register_buffer("indices", torch.tensor(index_list, dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classify and keep the selected logits.

        Args:
            images: Input batch for ``model``.

        Returns:
            Logits (B, |S|).
        """
        logits = self.model(images)
        if int(self.indices.max()) >= logits.shape[-1]:
            raise ValueError(
                f"logit subset index {int(self.indices.max())} is out of range for {logits.shape[-1]} logits"
            )
        return logits.index_select(-1, self.indices.to(logits.device))
