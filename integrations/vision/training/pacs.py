"""PACS domain generalisation: fine-tune on three source domains, evaluate top-1 on the held-out target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets import ImageFolder

from .config import TrainConfig, preset
from .data import TransformedDataset, build_transform, data_manifest, dataset_num_classes, validate_image_folder
from .distributed import DistributedContext
from .engine import Trainer, TrainResult, seed_everything
from .models import build_model, load_initial_weights

__all__ = ["PACS_DOMAINS", "finetune_pacs", "pacs_domain_folders", "train_pacs"]

PACS_DOMAINS: tuple[str, ...] = ("photo", "art_painting", "cartoon", "sketch")


def pacs_domain_folders(pacs_root: Path | str, target: str) -> tuple[list[Path], Path, list[str]]:
    """Split ``pacs_root/<domain>/<class>/*`` into the source domain folders, the target folder and the classes.

    Args:
        pacs_root: Folder holding one ImageFolder tree per domain.
        target: Held-out domain (one of the domain folders, usually ``photo``, ``art_painting``, ``cartoon`` or
            ``sketch``).
    """
    root = Path(pacs_root)
    if not root.is_dir():
        raise ValueError(f"pacs_root must be an existing folder, got {str(root)!r}")
    domains = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if target not in domains:
        raise ValueError(f"pacs target must be one of the domain folders {domains} of {str(root)!r}, got {target!r}")
    if len(domains) < 2:
        raise ValueError(f"pacs_root {str(root)!r} needs at least one source domain besides the target {target!r}")
    classes = validate_image_folder(root / target, f"PACS domain {target!r}")
    sources = [root / d for d in domains if d != target]
    for folder in sources:
        found = validate_image_folder(folder, f"PACS domain {folder.name!r}")
        if found != classes:
            raise ValueError(f"PACS domain {folder.name!r} has classes {found}, target {target!r} has {classes}")
    return sources, root / target, classes


def _fit_head(model: nn.Module, num_classes: int) -> None:
    current = getattr(model, "num_classes", None)
    if current == num_classes:
        return
    if not callable(getattr(model, "reset_classifier", None)):
        raise ValueError(
            f"model has {current} outputs and no reset_classifier(); build it with num_classes={num_classes}")
    model.reset_classifier(num_classes)


def finetune_pacs(
    model: nn.Module,
    source_datasets: Sequence[Dataset],
    config: TrainConfig | None = None,
    *,
    num_classes: int | None = None,
    val_dataset: Dataset | None = None,
    out_dir: Path | str | None = None,
    model_name: str | None = None,
    context: DistributedContext | None = None,
    progress: bool = True,
) -> nn.Module:
    """Fine-tune ``model`` on the union of ``source_datasets`` with the ``pacs`` recipe and return it in eval mode.

    The classifier head is reset (``model.reset_classifier(num_classes)``, seeded by ``config.seed``) when its size
    differs from the number of classes. Datasets yield ``(image, label)`` with RAW images (PIL, ``(C, H, W)`` uint8
    or [0, 1] tensors, or ``(H, W, C)`` uint8 arrays); the recipe's transforms and normalisation are applied here.
    Usable as the PACS benchmark's ``finetune_fn``.

    Args:
        model: The pretrained model (unwrapped).
        source_datasets: One dataset per source domain, with the same labels.
        config: The recipe; ``None`` means ``preset("pacs")``.
        num_classes: Number of classes; ``None`` reads it from the datasets (``classes`` / ``targets``).
        val_dataset: Held-out images to report accuracy on after each epoch, or ``None``.
        out_dir: Folder for checkpoints and logs, or ``None`` to write nothing.
        model_name: Name recorded in checkpoints (defaults to the class name).
        context: Process placement; ``None`` for one process on the model's device.
        progress: Show progress bars.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(source_datasets, Dataset) or not isinstance(source_datasets, Sequence) or not source_datasets:
        raise TypeError("source_datasets must be a non-empty sequence of datasets (one per source domain)")
    config = config if config is not None else preset("pacs")
    if num_classes is None:
        num_classes = max(dataset_num_classes(d) for d in source_datasets)
    seed_everything(config.seed)
    _fit_head(model, num_classes)
    train_transform = build_transform(config, is_training=True)
    train_set = ConcatDataset([TransformedDataset(d, train_transform) for d in source_datasets])
    val_set = TransformedDataset(val_dataset, build_transform(config, False)) if val_dataset is not None else None
    if context is None:
        device = next(model.parameters()).device
        context = DistributedContext(0, 1, 0, device, None)
    trainer = Trainer(model, model_name or type(model).__name__, config, train_set, val_set, out_dir,
                      context=context, classes=[str(i) for i in range(num_classes)], progress=progress)
    return trainer.fit().model.eval()


def train_pacs(
    model_name: str,
    pacs_root: Path | str,
    target: str,
    out_dir: Path | str | None,
    config: TrainConfig,
    *,
    context: DistributedContext | None = None,
    resume: Path | str | None = None,
    overwrite: bool = False,
    init_weights: Path | str | None = None,
    progress: bool = True,
    max_epochs: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    compile_model: bool = False,
) -> TrainResult:
    """The trainer's PACS mode: build ``model_name`` (7-way head), optionally load pretrained weights, fine-tune
    on every domain but ``target`` and report top-1 on ``target`` after each epoch.

    Args:
        model_name: A timm-registered model name.
        pacs_root: Folder with ``<domain>/<class>/*``.
        target: Held-out domain.
        out_dir: Run folder, or ``None``.
        config: The recipe (usually ``preset("pacs")``).
        context: Process placement; ``None`` for one CPU process.
        resume: Checkpoint or run folder to continue from.
        overwrite: Replace another run's checkpoint in ``out_dir``.
        init_weights: Pretrained weights file (head skipped when its shape differs).
        progress: Show progress bars.
        max_epochs: Stop after this many epochs in this call.
        model_kwargs: Further model constructor arguments.
        compile_model: Train through ``torch.compile`` (see :class:`~integrations.vision.training.engine.Trainer`).
    """
    sources, target_folder, classes = pacs_domain_folders(pacs_root, target)
    train_transform = build_transform(config, is_training=True)
    train_set = ConcatDataset([ImageFolder(str(folder), transform=train_transform) for folder in sources])
    val_set = ImageFolder(str(target_folder), transform=build_transform(config, is_training=False))
    kwargs = dict(model_kwargs or {})
    seed_everything(config.seed)
    model = build_model(model_name, num_classes=len(classes), img_size=config.img_size, drop_path=config.drop_path,
                        **kwargs)
    if init_weights is not None:
        load_initial_weights(model, init_weights)
    is_main = context is None or context.is_main  # only rank 0 checks and records the run's identity
    manifest = data_manifest(sources + [target_folder]) if is_main else ""
    trainer = Trainer(model, model_name, config, train_set, val_set, out_dir, context=context, model_kwargs=kwargs,
                      data_manifest=f"pacs:{target}:{manifest}", classes=classes, resume=resume, overwrite=overwrite,
                      progress=progress, compile_model=compile_model)
    return trainer.fit(max_epochs=max_epochs)

