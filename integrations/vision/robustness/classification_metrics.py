"""Top-1 accuracy of a classifier, optionally restricted to a subset of its logits.

ImageNet-R and ImageNet-A cover 200 of the 1000 ImageNet classes; a 1000-way classifier is scored
on them by taking the arg-max over those 200 logits only (labels stay in the 1000-class order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["top1_correct", "accuracy_percent"]


def top1_correct(logits: torch.Tensor, labels: torch.Tensor, logit_subset: Sequence[int] | None = None) -> int:
    """Count ``Σ_i 1[ŷ_i = y_i]`` with ``ŷ_i = argmax_{k ∈ S} logits[i, k]`` (``S`` = all classes when None).

    Args:
        logits: Scores (B, K).
        labels: True class indices (B,) into the K classes.
        logit_subset: The allowed classes ``S`` (indices into K), or None for all.

    Returns:
        The number of correct predictions.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    if logit_subset is None:
        predictions = logits.argmax(dim=1)
    else:
        subset = torch.as_tensor(list(logit_subset), dtype=torch.long, device=logits.device)
        if subset.numel() == 0 or int(subset.min()) < 0 or int(subset.max()) >= logits.shape[1]:
            raise ValueError(f"logit_subset must be non-empty indices in [0, {logits.shape[1]}), got {subset.tolist()[:10]}")
        predictions = subset[logits.index_select(1, subset).argmax(dim=1)]
    return int((predictions == labels.to(predictions.device)).sum())


def accuracy_percent(correct: int, total: int) -> float:
    """``100 · correct / total`` (0 when ``total`` is 0).

    Args:
        correct: Number of correct predictions.
        total: Number of scored samples.

    Returns:
        The accuracy in percent.
    """
    if correct < 0 or total < 0 or correct > total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    return 100.0 * correct / total if total else 0.0
