"""The one evaluation loop shared by every classification benchmark, distributed-aware.

For each batch of pixels ``x ∈ [0, 1]`` and labels ``y``: optionally ``x ← attack(f, x, y)``, then
count ``1[argmax f(x) = y]`` with ``f = NormalizedModel(model, mean, std)`` restricted to a logit
subset when given. Samples whose files failed to decode are counted as ``failed`` and skipped.
When ``torch.distributed`` is initialised, the counts of all ranks are summed (``all_reduce``);
the loader must then shard without duplicates (:func:`make_loader` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .classification_metrics import accuracy_percent, top1_correct
from .imagenet_facts import IMAGENET_MEAN, IMAGENET_STD
from .loading import Batch, distributed_context
from .normalized_model import LogitSubset, NormalizedModel

__all__ = ["Attack", "EvaluationCounts", "evaluate", "all_reduce_sums", "model_device"]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``attack(pixel_model, images, labels) -> adversarial images`` (pixel space, labels index pixel_model's logits)."""


@dataclass(frozen=True)
class EvaluationCounts:
    """Counts of one evaluation: ``correct`` of ``total`` scored samples, ``failed`` unreadable ones."""

    correct: int
    total: int
    failed: int

    @property
    def top1(self) -> float:
        """Top-1 accuracy in percent."""
        return accuracy_percent(self.correct, self.total)

    @property
    def error(self) -> float:
        """Top-1 error as a fraction (1 − accuracy)."""
        return 1.0 - self.correct / self.total if self.total else 1.0

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready ``{"top1", "correct", "total", "failed"}``.

        Returns:
            The dict.
        """
        return {"top1": self.top1, **asdict(self)}


def all_reduce_sums(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """``Σ_ranks values`` element-wise when ``torch.distributed`` is initialised (identity otherwise).

    Args:
        values: This rank's partial sums.
        device: Where the reduction tensor lives (CUDA for the NCCL backend).

    Returns:
        The summed values (float64 precision).
    """
    if distributed_context()[1] == 1:
        return [float(v) for v in values]
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter (``default`` for a parameterless model).

    Args:
        model: The model.
        default: Fallback device.

    Returns:
        The device.
    """
    for parameter in model.parameters():
        return parameter.device
    return torch.device(default)


def _unpack(batch: Batch | Sequence[object]) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    if isinstance(batch, Batch):
        if batch.size == 0:
            return None, None, len(batch.failures)
        return batch.fields[0], batch.fields[1], len(batch.failures)
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], torch.as_tensor(batch[1]), 0
    raise TypeError(f"loader must yield Batch objects or (images, labels) pairs, got {type(batch).__name__}")


def evaluate(
    model: nn.Module,
    loader: Iterable[Batch | Sequence[object]],
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    logit_subset: Sequence[int] | None = None,
    attack: Attack | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "evaluate",
) -> EvaluationCounts:
    """Top-1 counts of ``argmax_{k ∈ S} f(attack(x))_k = y`` over the loader (summed over ranks).

    Args:
        model: Any classifier of normalised images (B, 3, H, W) → logits (B, K); put in eval mode
            for the loop and restored afterwards.
        loader: Yields :class:`Batch` (from :func:`make_loader`) or ``(images, labels)`` pairs,
            images in [0, 1], labels indices into the K classes.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        logit_subset: Class indices ``S`` to score on (e.g. the 200 ImageNet-R classes), or None.
        attack: Optional ``attack(pixel_model, images, labels)``; with a subset it sees the
            subset logits and labels re-indexed into ``S``.
        device: Where the model runs.
        progress: Show a tqdm bar (rank 0 only).
        desc: The bar's label.

    Returns:
        The :class:`EvaluationCounts` (global when distributed).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if attack is not None and not callable(attack):
        raise TypeError(f"attack must be callable or None, got {type(attack).__name__}")
    device = torch.device(device)
    pixel_model: nn.Module = NormalizedModel(model, mean, std).to(device)
    position_of: torch.Tensor | None = None
    if logit_subset is not None:
        subset = [int(i) for i in logit_subset]
        pixel_model = LogitSubset(pixel_model, subset).to(device)
        position_of = torch.full((max(subset) + 1,), -1, dtype=torch.long, device=device)
        position_of[torch.tensor(subset, device=device)] = torch.arange(len(subset), device=device)
    was_training = model.training
    model.eval()
    correct = total = failed = 0
    rank = distributed_context()[0]
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress or rank != 0, leave=False):
            images, labels, batch_failed = _unpack(batch)
            failed += batch_failed
            if images is None:
                continue
            images, labels = images.to(device), labels.to(device)
            if position_of is not None:
                if int(labels.max()) >= position_of.numel() or bool((position_of[labels] < 0).any()):
                    raise ValueError(f"labels {labels.tolist()} are not all inside logit_subset")
                labels = position_of[labels]
            if attack is not None:
                images = attack(pixel_model, images, labels)
            with torch.no_grad():
                logits = pixel_model(images)
            correct += top1_correct(logits, labels)
            total += int(labels.numel())
    finally:
        model.train(was_training)
    correct, total, failed = (int(round(v)) for v in all_reduce_sums([correct, total, failed], device))
    return EvaluationCounts(correct=correct, total=total, failed=failed)
