"""Train a named model on an ImageFolder data set (``<root>/train/<class>/*``, ``<root>/val/<class>/*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainConfig
from .data import build_transform, data_manifest, image_folder, validate_image_folder
from .distributed import DistributedContext
from .engine import Trainer, TrainResult, seed_everything
from .models import build_model, load_initial_weights

__all__ = ["train_image_folder"]


def train_image_folder(
    model_name: str,
    data_root: Path | str,
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
    """Build ``model_name`` with one output per class folder of ``data_root/train`` and train it with ``config``.

    The model is created after ``seed_everything(config.seed)``, so every process builds the same weights.

    Args:
        model_name: A timm-registered model name.
        data_root: Folder with ``train/`` and (optionally) ``val/`` ImageFolder trees sharing their classes.
        out_dir: Run folder for checkpoints and logs, or ``None``.
        config: The recipe.
        context: Process placement; ``None`` for one CPU process.
        resume: Checkpoint or run folder to continue from.
        overwrite: Replace another run's checkpoint in ``out_dir``.
        init_weights: Weights file to initialise the model from (shape-mismatched tensors such as the head skipped).
        progress: Show progress bars.
        max_epochs: Stop after this many epochs in this call.
        model_kwargs: Further model constructor arguments.
        compile_model: Train through ``torch.compile`` (see :class:`~integrations.vision.training.engine.Trainer`).
    """
    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"data_root must be an existing folder, got {str(root)!r}")
    classes = validate_image_folder(root / "train", "data_root/train")
    val_root = root / "val"
    if val_root.exists():
        val_classes = validate_image_folder(val_root, "data_root/val")
        if val_classes != classes:
            raise ValueError(f"data_root/val classes {val_classes} differ from data_root/train classes {classes}")
    train_set = image_folder(root / "train", build_transform(config, is_training=True), "data_root/train")
    val_set = image_folder(val_root, build_transform(config, is_training=False), "data_root/val") \
        if val_root.exists() else None
    roots = [root / "train"] + ([val_root] if val_set is not None else [])
    kwargs = dict(model_kwargs or {})
    seed_everything(config.seed)
    model = build_model(model_name, num_classes=len(classes), img_size=config.img_size, drop_path=config.drop_path,
                        **kwargs)
    if init_weights is not None:
        load_initial_weights(model, init_weights)
    is_main = context is None or context.is_main  # only rank 0 checks and records the run's identity
    trainer = Trainer(model, model_name, config, train_set, val_set, out_dir, context=context, model_kwargs=kwargs,
                      data_manifest=data_manifest(roots) if is_main else "", classes=classes, resume=resume,
                      overwrite=overwrite, progress=progress,
                      compile_model=compile_model)
    return trainer.fit(max_epochs=max_epochs)
