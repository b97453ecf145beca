"""The CPU demo: train a small model with the ``demo`` preset, or load it when that exact run already finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import find_checkpoint, load_model_weights, read_run_record
from .config import preset
from .data import data_manifest, validate_image_folder
from .engine import run_fingerprint, seed_everything
from .image_folder import train_image_folder
from .models import build_model

__all__ = ["train_demo"]


def train_demo(
    model_name: str,
    data_root: Path | str,
    out_dir: Path | str,
    *,
    epochs: int | None = None,
    img_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Train ``model_name`` on ``data_root`` with the ``demo`` preset and return it in ``eval()`` mode, cached.

    Writes to ``out_dir``: the checkpoint, ``metrics.jsonl`` (per-epoch loss / accuracy), ``step_losses.jsonl`` and
    ``training_curve.png``. When ``out_dir`` already holds the FINISHED checkpoint of the same run — same model name
    and kwargs, same config, same data manifest (paths and sizes of every image) — the weights are loaded instead
    of trained; an unfinished one of the same run is resumed. Another run's checkpoint is an error unless
    ``overwrite``.

    Args:
        model_name: A timm-registered model name.
        data_root: ImageFolder tree with ``train/`` and ``val/``.
        out_dir: Run folder (cache).
        epochs: Number of epochs; ``None`` keeps the preset's.
        img_size: Image side (also passed to the model as ``img_size`` when it accepts it).
        seed: Seed of initialisation, sampling and augmentation.
        progress: Show the tqdm progress bar.
        overwrite: Replace another run's checkpoint in ``out_dir``.
        **model_kwargs: Further model constructor arguments.
    """
    overrides: dict[str, Any] = {"img_size": img_size, "seed": seed}
    if epochs is not None:
        overrides["epochs"] = epochs
        overrides["warmup_epochs"] = min(preset("demo").warmup_epochs, float(epochs))
    config = preset("demo", **overrides)
    root, run_dir = Path(data_root), Path(out_dir)
    classes = validate_image_folder(root / "train", "data_root/train")
    roots = [root / "train"] + ([root / "val"] if (root / "val").exists() else [])
    fingerprint = run_fingerprint(model_name, model_kwargs, config, data_manifest(roots))
    existing = find_checkpoint(run_dir)
    resume = None
    if existing is not None:
        record = read_run_record(existing)
        if record.get("fingerprint") == fingerprint:
            if record.get("finished"):
                seed_everything(seed)
                model = build_model(model_name, num_classes=len(classes), img_size=img_size,
                                    drop_path=config.drop_path, **model_kwargs)
                load_model_weights(model, existing)
                return model.eval()
            resume = run_dir
    result = train_image_folder(model_name, root, run_dir, config, resume=resume, overwrite=overwrite,
                                progress=progress, model_kwargs=model_kwargs)
    return result.model.to(torch.device("cpu")).eval()
