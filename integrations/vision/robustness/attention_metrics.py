"""Scores of attention maps against human ground truth: VOC foreground masks and MIT1003 fixations.

Segmentation (paper §4.3, Table 4; class-agnostic, following Caron et al., 2021): the map ``A`` is
min-max normalised per image, ``Â = (A − min A)/(max A − min A)`` (all zeros for a constant map),
bilinearly resized to the mask, and pixels with ``Â > 0.3`` are foreground. Over the pixels that
are not void (mask value 255), with TP/FP/FN counted against "mask ∉ {0, 255}":

* ``IoU = TP / (TP + FP + FN)`` (1 when prediction and truth are both empty),
* ``FP rate = FP / (TP + FP)``: the fraction of the predicted foreground that is background
  (0 when nothing is predicted),
* ``FN rate = FN / (TP + FN)``: the fraction of the true foreground that is missed (0 when the
  image has no foreground).

These definitions match the paper's reading of Table 4: self-attention (RVT*) spreads over the
background (FP 49%, almost half of what it marks is background) while missing little of the
object (FN 4%), and VARS "is more selective", i.e. misses more of the object (higher FN) while
marking far less background. mIoU, FP and FN of a data set are per-image means, in percent.

Saliency (Table 5): NSS (Peters et al., 2005) ``= mean_{p ∈ F} (S(p) − μ_S) / σ_S`` with ``S`` the
map bilinearly resized to the image, ``μ_S, σ_S`` its mean and population standard deviation,
and ``F`` the fixated pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "SegmentationScores",
    "normalize_attention",
    "resize_map",
    "foreground_from_attention",
    "segmentation_scores",
    "mean_segmentation_scores",
    "normalized_scanpath_saliency",
    "attention_nss",
]


@dataclass(frozen=True)
class SegmentationScores:
    """Per-image IoU, false-positive rate and false-negative rate (fractions in [0, 1])."""

    iou: float
    false_positive_rate: float
    false_negative_rate: float


def normalize_attention(attention: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling ``(A − min A)/(max A − min A)`` over the last two dims (constant map → 0).

    Args:
        attention: Maps (..., h, w).

    Returns:
        Float maps of the same shape in [0, 1].
    """
    if attention.dim() < 2:
        raise ValueError(f"attention must have shape (..., h, w), got {tuple(attention.shape)}")
    values = attention.float()
    flat = values.flatten(-2)
    low = flat.min(dim=-1).values[..., None, None]
    high = flat.max(dim=-1).values[..., None, None]
    span = high - low
    return torch.where(span > 0, (values - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(values))


def resize_map(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of a map (h, w) to ``size`` = (H, W).

    Args:
        attention: One map (h, w).
        size: Target (H, W).

    Returns:
        The float map (H, W).
    """
    if attention.dim() != 2:
        raise ValueError(f"attention must have shape (h, w), got {tuple(attention.shape)}")
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be a positive (H, W), got {size}")
    if tuple(attention.shape) == tuple(size):
        return attention.float()
    return F.interpolate(attention.float()[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


def foreground_from_attention(attention: torch.Tensor, size: tuple[int, int], threshold: float = 0.3) -> torch.Tensor:
    """Foreground ``resize(normalize(A)) > threshold`` at the mask's size.

    Args:
        attention: One attention map (h, w).
        size: The mask's (H, W).
        threshold: Foreground threshold on the normalised map (0.3 in the paper).

    Returns:
        A bool mask (H, W).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return resize_map(normalize_attention(attention), size) > threshold


def segmentation_scores(foreground: torch.Tensor, mask: torch.Tensor, ignore_index: int = 255) -> SegmentationScores:
    """IoU, FP rate ``FP/(TP+FP)`` and FN rate ``FN/(TP+FN)`` of a class-agnostic prediction (see module doc).

    Args:
        foreground: Predicted foreground, bool (H, W).
        mask: Ground-truth labels (H, W): 0 background, ``ignore_index`` void, anything else object.
        ignore_index: The void label, excluded from every count.

    Returns:
        The per-image :class:`SegmentationScores`.
    """
    if foreground.shape != mask.shape or foreground.dim() != 2:
        raise ValueError(
            f"foreground and mask must be (H, W) of equal shape, got {tuple(foreground.shape)} and {tuple(mask.shape)}"
        )
    valid = mask != ignore_index
    truth = (mask != 0) & valid
    predicted = foreground.bool() & valid
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth & valid).sum())
    union = tp + fp + fn
    return SegmentationScores(
        iou=tp / union if union else 1.0,
        false_positive_rate=fp / (tp + fp) if tp + fp else 0.0,
        false_negative_rate=fn / (tp + fn) if tp + fn else 0.0,
    )


def mean_segmentation_scores(scores: Iterable[SegmentationScores]) -> dict[str, float]:
    """Per-image means in percent: ``{"miou", "fp", "fn", "images"}``.

    Args:
        scores: Per-image scores.

    Returns:
        The data-set summary.
    """
    items = list(scores)
    if not items:
        raise ValueError("scores must hold at least one image")
    n = len(items)
    return {
        "miou": 100.0 * sum(s.iou for s in items) / n,
        "fp": 100.0 * sum(s.false_positive_rate for s in items) / n,
        "fn": 100.0 * sum(s.false_negative_rate for s in items) / n,
        "images": n,
    }


def normalized_scanpath_saliency(saliency: torch.Tensor, fixations: torch.Tensor) -> float:
    """NSS ``= mean_{p ∈ F} (S(p) − μ_S)/σ_S`` (population σ; a constant map scores 0).

    Args:
        saliency: Map ``S`` (H, W) at the image's resolution.
        fixations: Bool (H, W), True at fixated pixels ``F``.

    Returns:
        The NSS value.

    Raises:
        ValueError: Shapes differ or there is no fixated pixel.
    """
    if saliency.shape != fixations.shape or saliency.dim() != 2:
        raise ValueError(
            f"saliency and fixations must be (H, W) of equal shape, got {tuple(saliency.shape)} and {tuple(fixations.shape)}"
        )
    fixated = fixations.bool()
    if not bool(fixated.any()):
        raise ValueError("fixations must mark at least one fixated pixel")
    values = saliency.double()
    std = values.std(unbiased=False)
    if float(std) == 0.0:
        return 0.0
    return float(((values - values.mean()) / std)[fixated].mean())


def attention_nss(attention: torch.Tensor, fixations: torch.Tensor) -> float:
    """NSS of an attention map (h, w) bilinearly resized to the fixation image (H, W).

    Args:
        attention: One attention map (h, w).
        fixations: Bool (H, W) fixated pixels.

    Returns:
        The NSS value.
    """
    return normalized_scanpath_saliency(resize_map(attention, tuple(fixations.shape)), fixations)
