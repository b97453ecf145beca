"""Data for training: ImageFolder checks, timm transforms, a data manifest, samplers and loaders."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import to_pil_image

from .config import TrainConfig

__all__ = [
    "IMAGE_EXTENSIONS",
    "ShardSampler",
    "TransformedDataset",
    "WorkerSeeder",
    "build_eval_loader",
    "build_train_loader",
    "build_transform",
    "data_manifest",
    "dataset_num_classes",
    "image_folder",
    "validate_image_folder",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".pgm")


def validate_image_folder(root: Path | str, argument: str = "root") -> list[str]:
    """Check that ``root`` is an ImageFolder tree (``root/<class>/<image>``) and return its sorted class names.

    Args:
        root: Folder to check.
        argument: Name used for ``root`` in error messages.
    """
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{argument} must be an existing folder, got {str(path)!r} (missing or not a folder)")
    classes = sorted(entry.name for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(
            f"{argument} {str(path)!r} has no class sub-folders; expected the layout {path}/<class>/<image>"
        )
    empty = [name for name in classes if not any(_is_image(p) for p in (path / name).rglob("*"))]
    if empty:
        raise ValueError(f"{argument} {str(path)!r}: class folder(s) {empty} hold no image file {IMAGE_EXTENSIONS}")
    return classes


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def image_folder(
    root: Path | str, transform: Callable[[Image.Image], Any] | None, argument: str = "root"
) -> ImageFolder:
    """Validate ``root`` (see :func:`validate_image_folder`) and open it as a torchvision ``ImageFolder``.

    Args:
        root: ImageFolder tree.
        transform: Applied to each RGB PIL image.
        argument: Name used for ``root`` in error messages.
    """
    validate_image_folder(root, argument)
    return ImageFolder(str(root), transform=transform)


def data_manifest(roots: Sequence[Path | str]) -> str:
    """SHA-256 over (folder index, relative path, size) of every image under ``roots``: the data's identity.

    Args:
        roots: Folders to describe, in a fixed order.
    """
    digest = hashlib.sha256()
    for index, root in enumerate(roots):
        base = Path(root)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    continue
                full = os.path.join(dirpath, name)
                relative = os.path.relpath(full, base).replace(os.sep, "/")
                digest.update(f"{index}\0{relative}\0{os.path.getsize(full)}\n".encode())
    return digest.hexdigest()


def build_transform(config: TrainConfig, is_training: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The timm image transform of ``config``: augmentation + normalisation ``(x − mean) / std``.

    Training: ``RandomResizedCrop(img_size, scale=train_scale)``, horizontal flip, RandAugment or colour jitter,
    random erasing. Evaluation: resize to ``img_size / crop_pct`` and centre-crop ``img_size``.

    Args:
        config: The recipe.
        is_training: Training (augmented) or evaluation transform.
    """
    from timm.data import create_transform

    if is_training:
        return create_transform(
            input_size=config.img_size,
            is_training=True,
            scale=config.train_scale,
            hflip=config.hflip,
            color_jitter=config.color_jitter,
            auto_augment=config.auto_augment,
            interpolation=config.interpolation,
            mean=config.mean,
            std=config.std,
            re_prob=config.random_erasing,
            re_mode="pixel",
            re_count=1,
        )
    return create_transform(
        input_size=config.img_size,
        is_training=False,
        interpolation=config.interpolation,
        mean=config.mean,
        std=config.std,
        crop_pct=config.crop_pct,
    )


class TransformedDataset(Dataset):
    """``(transform(image), label)`` for each ``(image, label)`` of ``dataset``.

    Images may be PIL images, ``(C, H, W)`` tensors (uint8, or float in [0, 1]) or ``(H, W, C)`` uint8 arrays;
    they are turned into RGB PIL images before ``transform``.

    Args:
        dataset: Source of ``(image, label)`` pairs.
        transform: Image transform (e.g. :func:`build_transform`).
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Image.Image], Any]) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style dataset with __len__, got {type(dataset).__name__}")
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        return self.transform(_as_pil(image)), int(label)


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"image tensors must be (C, H, W), got shape {tuple(image.shape)}")
        return to_pil_image(image).convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"dataset images must be PIL images, tensors or numpy arrays, got {type(image).__name__}")


def dataset_num_classes(dataset: Dataset) -> int:
    """Number of classes of ``dataset``: ``len(dataset.classes)`` (or ``class_names``), else the largest label + 1.

    Labels are read from ``dataset.targets`` or ``dataset.samples`` (``(path, label)`` pairs); wrappers exposing
    ``datasets`` (ConcatDataset) or ``dataset`` are looked through.

    Args:
        dataset: A dataset exposing ``classes``, ``class_names``, ``targets`` or ``samples``.
    """
    for attribute in ("classes", "class_names"):
        names = getattr(dataset, attribute, None)
        if names is not None and not isinstance(names, str):
            return len(names)
    targets = getattr(dataset, "targets", None)
    if targets is None and isinstance(getattr(dataset, "samples", None), list):
        targets = [sample[1] for sample in dataset.samples]
    if targets is not None and len(targets) > 0:
        return int(max(int(t) for t in targets)) + 1
    inner = getattr(dataset, "datasets", None) or ([dataset.dataset] if hasattr(dataset, "dataset") else None)
    if inner:
        return max(dataset_num_classes(d) for d in inner)
    raise ValueError(
        f"cannot tell the number of classes of a {type(dataset).__name__}: give it `classes` or `targets`, "
        "or pass num_classes explicitly"
    )


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(length)``: every sample exactly once over all ranks.

    Unlike ``DistributedSampler`` it never pads, so summed evaluation counts are exact.

    Args:
        length: Dataset length.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class WorkerSeeder:
    """``worker_init_fn`` seeding ``torch``, ``numpy``, ``random`` in a worker from (seed, rank, epoch, worker id).

    Set :attr:`epoch` before each epoch's iteration; workers are re-created each epoch, so augmentations depend
    only on these four numbers and a resumed run sees the same ones.

    Args:
        seed: Base seed of the run.
        rank: Process rank.
    """

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank, self.epoch = seed, rank, 0

    def __call__(self, worker_id: int) -> None:
        mixed = np.random.SeedSequence([self.seed, self.rank, self.epoch, worker_id]).generate_state(2)
        value = int(mixed[0]) << 32 | int(mixed[1])
        torch.manual_seed(value)
        random.seed(value)
        np.random.seed(int(mixed[0]))


def build_train_loader(
    dataset: Dataset,
    config: TrainConfig,
    per_process_batch: int,
    rank: int,
    world_size: int,
    pin_memory: bool = False,
) -> tuple[DataLoader, Sampler, WorkerSeeder]:
    """Training loader: shuffled by a ``DistributedSampler`` (or timm's ``RepeatAugSampler``), last batch dropped.

    The sampler's permutation depends only on ``(config.seed, epoch)``, so with ``world_size`` processes rank ``r``
    sees positions ``r, r + world_size, ...`` of the permutation a single process would see: the union of the
    ranks' ``k``-th batches equals the single-process ``k``-th batch of ``world_size × per_process_batch`` images.

    Args:
        dataset: Training dataset (transform applied).
        config: The recipe (seed, workers, repeated augmentation).
        per_process_batch: Images per step on this process.
        rank: This process's rank.
        world_size: Number of processes.
        pin_memory: Pin host memory (CUDA).
    """
    if config.repeated_augmentation > 1:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler: Sampler = RepeatAugSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                            num_repeats=config.repeated_augmentation)
    else:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=config.seed, drop_last=False)
    seeder = WorkerSeeder(config.seed, rank)
    loader = DataLoader(
        dataset,
        batch_size=per_process_batch,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        worker_init_fn=seeder if config.num_workers > 0 else None,
        persistent_workers=False,
    )
    if len(loader) == 0:
        raise ValueError(
            f"the training set ({len(dataset)} images over {world_size} process(es)) is smaller than one batch of "
            f"{per_process_batch} per process; lower batch_size"
        )
    return loader, sampler, seeder


def build_eval_loader(
    dataset: Dataset, config: TrainConfig, per_process_batch: int, rank: int, world_size: int, pin_memory: bool = False
) -> DataLoader:
    """Evaluation loader: each rank reads a disjoint, unpadded shard (:class:`ShardSampler`) in order.

    Args:
        dataset: Evaluation dataset (transform applied).
        config: The recipe (number of workers).
        per_process_batch: Images per batch on this process.
        rank: This process's rank.
        world_size: Number of processes.
        pin_memory: Pin host memory (CUDA).
    """
    return DataLoader(
        dataset,
        batch_size=per_process_batch,
        sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=config.num_workers,
        pin_memory=pin_memory,
        drop_last=False,
    )
