"""Loading batches that survive corrupt files, and sharding without duplicates across processes.

* :class:`SkipCorruptImages` wraps a dataset: a sample whose file cannot be decoded becomes a
  :class:`FailedSample` naming the file (and a warning) instead of an exception.
* :func:`collate_dropping_failures` stacks the good samples and returns the failures beside them,
  so the evaluation counts them and goes on.
* :class:`UnpaddedDistributedSampler` gives rank ``r`` of ``W`` the indices ``r, r + W, r + 2W, ...``:
  unlike torch's ``DistributedSampler`` it never pads the tail with duplicates, so every sample
  is counted exactly once when counts are summed over ranks.
* :func:`make_loader` assembles the three, choosing the sampler when ``torch.distributed`` is
  initialised.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .image_files import CorruptImageError

__all__ = [
    "FailedSample",
    "Batch",
    "SkipCorruptImages",
    "collate_dropping_failures",
    "UnpaddedDistributedSampler",
    "distributed_context",
    "limit_dataset",
    "make_loader",
]


@dataclass(frozen=True)
class FailedSample:
    """A sample that could not be loaded: its index, file and the decoder's complaint."""

    index: int
    path: str
    reason: str


@dataclass
class Batch:
    """A collated batch: ``fields[k]`` is the k-th sample element over the good samples.

    Tensors of equal shape are stacked, ints become a long tensor, anything else stays a list.
    ``fields`` is empty when every sample of the batch failed.
    """

    fields: tuple[Any, ...]
    failures: list[FailedSample]

    @property
    def size(self) -> int:
        """Number of good samples."""
        return 0 if not self.fields else len(self.fields[0])


class SkipCorruptImages(Dataset):
    """``dataset[i]`` when it decodes, else ``FailedSample(i, path, reason)`` (and a warning naming the file).

    Args:
        dataset: Any map-style dataset whose decode failures raise :class:`CorruptImageError`.
    """

    def __init__(self, dataset: Dataset) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style Dataset, got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except CorruptImageError as error:
            warnings.warn(f"skipping unreadable image {error.path}: {error.reason}", RuntimeWarning, stacklevel=2)
            return FailedSample(index=index, path=error.path, reason=error.reason)


def _collate_field(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            return torch.stack(values)
        return list(values)
    if isinstance(first, (int, bool)) and all(isinstance(v, (int, bool)) for v in values):
        return torch.tensor(values, dtype=torch.long)
    return list(values)


def collate_dropping_failures(samples: Sequence[Any]) -> Batch:
    """Collate tuple samples, dropping :class:`FailedSample` entries and returning them separately.

    Args:
        samples: Items from a :class:`SkipCorruptImages` dataset (tuples or failures).

    Returns:
        The :class:`Batch` of good samples and the list of failures.
    """
    failures = [s for s in samples if isinstance(s, FailedSample)]
    good = [s for s in samples if not isinstance(s, FailedSample)]
    if not good:
        return Batch(fields=(), failures=failures)
    width = len(good[0])
    fields = tuple(_collate_field([sample[k] for sample in good]) for k in range(width))
    return Batch(fields=fields, failures=failures)


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``W`` iterates indices ``{i : i ≡ r (mod W)}`` in order — no shuffling, no padding.

    Ranks get ``⌈(N − r)/W⌉`` samples, so the union over ranks is every index exactly once.

    Args:
        dataset: The dataset to shard.
        num_replicas: World size ``W`` (default: from the process group).
        rank: This process's rank ``r`` (default: from the process group).
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = max(0, math.ceil((len(self.dataset) - self.rank) / self.num_replicas))
        self.total_size = len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, or ``(0, 1)`` without one.

    Returns:
        The rank and world size.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def limit_dataset(dataset: Dataset, max_images: int | None, *, seed: int = 0) -> Dataset:
    """At most ``max_images`` samples: a seeded uniform subset kept in original order (all when None).

    Args:
        dataset: The dataset.
        max_images: The cap, or None for no cap.
        seed: Seed of the subset choice.

    Returns:
        ``dataset`` itself or a :class:`torch.utils.data.Subset` of it.
    """
    if max_images is None:
        return dataset
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images <= 0:
        raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
    if max_images >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(dataset), generator=generator)[:max_images].sort().values
    return Subset(dataset, chosen.tolist())


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    distributed: bool | None = None,
) -> DataLoader:
    """A DataLoader over ``SkipCorruptImages(dataset)`` with :func:`collate_dropping_failures`, in order.

    Args:
        dataset: The dataset (each sample a tuple whose first element is the image tensor).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        distributed: Shard with :class:`UnpaddedDistributedSampler`; None means "when
            ``torch.distributed`` is initialised".

    Returns:
        The loader; its batches are :class:`Batch` objects.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    wrapped = SkipCorruptImages(dataset)
    if distributed is None:
        distributed = distributed_context()[1] > 1
    sampler = UnpaddedDistributedSampler(wrapped) if distributed else None
    return DataLoader(
        wrapped,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_dropping_failures,
    )
