"""Runners scoring attention maps: PASCAL VOC foreground segmentation and MIT1003 NSS.

Both only call ``context.attention_fn(images_in_0_1) -> (B, h, w)``; the model owner decides which
layer/head average the map comes from. Per-image sums are all-reduced across ranks.
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from .attention_datasets import MIT1003FixationDataset, VOCForegroundDataset
from .attention_metrics import attention_nss, foreground_from_attention, segmentation_scores
from .benchmark_context import AttentionFn, BenchmarkContext
from .evaluation import all_reduce_sums
from .loading import distributed_context

__all__ = ["run_voc_segmentation", "run_mit1003_nss"]


def _attention_maps(
    attention_fn: AttentionFn, images: torch.Tensor | list[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    batches = [images] if isinstance(images, torch.Tensor) else [image[None] for image in images]
    maps: list[torch.Tensor] = []
    for batch in batches:
        batch = batch.to(device)
        output = attention_fn(batch)
        if not isinstance(output, torch.Tensor) or output.dim() != 3 or output.shape[0] != batch.shape[0]:
            raise ValueError(
                f"attention_fn must return a tensor (B, h, w) with B = {batch.shape[0]}, "
                f"got {getattr(output, 'shape', type(output).__name__)}"
            )
        maps.extend(output.detach().float().cpu().unbind(0))
    return maps


def _require_attention_fn(context: BenchmarkContext, benchmark: str) -> AttentionFn:
    if context.attention_fn is None or not callable(context.attention_fn):
        raise ValueError(f"the {benchmark} benchmark needs attention_fn(images) -> (B, h, w), got {context.attention_fn!r}")
    return context.attention_fn


def run_voc_segmentation(context: BenchmarkContext, *, threshold: float = 0.3) -> dict[str, Any]:
    """VOC 2012 val: class-agnostic foreground ``normalize(A) > threshold`` vs the mask; mean IoU / FP / FN.

    See :mod:`.attention_metrics` for the exact definitions (per-image, void pixels ignored).

    Args:
        context: The benchmark context (``attention_fn`` required).
        threshold: Foreground threshold on the normalised map.

    Returns:
        ``{"miou", "fp", "fn", "images", "failed", "threshold"}`` (percentages).
    """
    attention_fn = _require_attention_fn(context, "voc_segmentation")
    root = context.data_root.resolve("voc")

    def compute() -> dict[str, Any]:
        dataset = VOCForegroundDataset(root, context.preprocessing())
        device = torch.device(context.device)
        sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # iou, fp, fn, images, failed
        quiet = not context.progress or distributed_context()[0] != 0
        for batch in tqdm(context.loader(dataset), desc="voc", disable=quiet, leave=False):
            sums[4] += len(batch.failures)
            if batch.size == 0:
                continue
            images, masks = batch.fields
            with torch.no_grad():
                maps = _attention_maps(attention_fn, images, device)
            for attention, mask in zip(maps, masks):
                foreground = foreground_from_attention(attention, tuple(mask.shape), threshold)
                scores = segmentation_scores(foreground, mask)
                sums[0] += scores.iou
                sums[1] += scores.false_positive_rate
                sums[2] += scores.false_negative_rate
                sums[3] += 1
        iou, fp, fn, count, failed = all_reduce_sums(sums, device)
        if count == 0:
            raise ValueError(f"no VOC image under {root} could be scored ({int(failed)} unreadable)")
        return {
            "miou": 100.0 * iou / count,
            "fp": 100.0 * fp / count,
            "fn": 100.0 * fn / count,
            "images": int(round(count)),
            "failed": int(round(failed)),
            "threshold": threshold,
        }

    return context.recorder.run("all", compute)


def run_mit1003_nss(context: BenchmarkContext) -> dict[str, Any]:
    """MIT1003: mean NSS of the attention map resized to the (visible part of the) stimulus.

    Images whose visible region holds no fixation are skipped and counted (``no_fixations``).

    Args:
        context: The benchmark context (``attention_fn`` required).

    Returns:
        ``{"nss", "images", "no_fixations", "failed"}``.
    """
    attention_fn = _require_attention_fn(context, "mit1003_nss")
    root = context.data_root.resolve("mit1003")

    def compute() -> dict[str, Any]:
        dataset = MIT1003FixationDataset(root, context.preprocessing())
        device = torch.device(context.device)
        sums = [0.0, 0.0, 0.0, 0.0]  # nss, images, no_fixations, failed
        quiet = not context.progress or distributed_context()[0] != 0
        for batch in tqdm(context.loader(dataset), desc="mit1003", disable=quiet, leave=False):
            sums[3] += len(batch.failures)
            if batch.size == 0:
                continue
            images, fixations = batch.fields
            with torch.no_grad():
                maps = _attention_maps(attention_fn, images, device)
            for attention, fixated in zip(maps, fixations):
                if not bool(fixated.any()):
                    sums[2] += 1
                    continue
                sums[0] += attention_nss(attention, fixated)
                sums[1] += 1
        nss, count, no_fixations, failed = all_reduce_sums(sums, device)
        if count == 0:
            raise ValueError(f"no MIT1003 stimulus under {root} could be scored ({int(failed)} unreadable)")
        return {
            "nss": nss / count,
            "images": int(round(count)),
            "no_fixations": int(round(no_fixations)),
            "failed": int(round(failed)),
        }

    return context.recorder.run("all", compute)
