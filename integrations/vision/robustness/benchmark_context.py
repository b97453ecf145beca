"""What every benchmark runner receives: the model, the data, the protocol settings and the recorder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data_root import DataRoot
from .imagenet_facts import IMAGENET_MEAN, IMAGENET_STD
from .loading import limit_dataset, make_loader
from .preprocessing import Preprocessing
from .result_store import EntryRecorder

__all__ = ["AttentionFn", "FinetuneFn", "BenchmarkContext"]

AttentionFn = Callable[[torch.Tensor], torch.Tensor]
"""``attention_fn(images in [0, 1], (B, 3, H, W)) -> attention maps (B, h, w)``; called under ``torch.no_grad()``."""

FinetuneFn = Callable[[nn.Module, Sequence[Dataset]], nn.Module]
"""``finetune_fn(model, train_datasets) -> fine-tuned model``; datasets yield ([0, 1] image, label)."""


@dataclass
class BenchmarkContext:
    """Inputs shared by the runners.

    Args:
        model: The classifier of normalised images (any ``nn.Module``).
        data_root: Where the data sets live.
        recorder: Stores finished entries of this benchmark (resume support).
        class_names: The label space in logit order (ImageNet wnids or the demo's classes).
        image_size: Model input side (224 for ImageNet), or None to keep images as they are.
        resize: Resize the short side to ``image_size · 256/224`` before cropping (the clean
            protocol); False for the demo's already-small images.
        mean: Normalisation mean (per channel).
        std: Normalisation standard deviation (per channel).
        device: Where the model runs.
        batch_size: Samples per batch.
        num_workers: DataLoader workers.
        max_images: Cap on images per entry (seeded subset), None for all.
        seed: Seed of subsets and random attack starts.
        progress: Show tqdm bars.
        attention_fn: Attention maps for VOC / MIT1003.
        finetune_fn: Fine-tuning for PACS.
        previous: Summaries of benchmarks already finished in this suite run.
    """

    model: nn.Module
    data_root: DataRoot
    recorder: EntryRecorder
    class_names: tuple[str, ...]
    image_size: int | None = 224
    resize: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    device: torch.device | str = "cpu"
    batch_size: int = 64
    num_workers: int = 0
    max_images: int | None = None
    seed: int = 0
    progress: bool = True
    attention_fn: AttentionFn | None = None
    finetune_fn: FinetuneFn | None = None
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)

    def preprocessing(self, *, resize: bool | None = None) -> Preprocessing:
        """The protocol's preprocessing at this resolution.

        Args:
            resize: Override of :attr:`resize` (False for ImageNet-C: center crop only).

        Returns:
            The :class:`Preprocessing`.
        """
        return Preprocessing.standard(self.image_size, resize=self.resize if resize is None else resize)

    def loader(self, dataset: Dataset) -> DataLoader:
        """A corrupt-tolerant, distributed-aware loader over at most :attr:`max_images` samples.

        Args:
            dataset: The dataset.

        Returns:
            The loader.
        """
        limited = limit_dataset(dataset, self.max_images, seed=self.seed)
        return make_loader(limited, batch_size=self.batch_size, num_workers=self.num_workers)
