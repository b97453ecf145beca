"""A small synthetic ImageFolder tree (coloured noise, one colour per class) for smoke tests and examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_synthetic_image_folder"]


def write_synthetic_image_folder(
    root: Path | str,
    num_classes: int = 4,
    per_class: int = 8,
    size: int = 32,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
) -> Path:
    """Write ``root/<split>/class_<k>/<i>.png``: uniform noise in [0, 60) plus a class-dependent colour offset.

    Class ``k`` adds ``120 + 60·(k // 3)`` to channel ``k mod 3``, so the classes are separable by colour and a
    small model learns them well above chance in a few steps.

    Args:
        root: Destination folder (created).
        num_classes: Number of class folders.
        per_class: Images per class and split.
        size: Image side in pixels.
        seed: Seed of the noise.
        splits: Split folders to write.
    """
    for name, value in (("num_classes", num_classes), ("per_class", per_class), ("size", size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if num_classes > 6:
        raise ValueError(f"num_classes must be at most 6 (distinct colour offsets), got {num_classes}")
    rng = np.random.default_rng(seed)
    base = Path(root)
    for split in splits:
        for k in range(num_classes):
            folder = base / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                pixels[..., k % 3] += np.uint8(120 + 60 * (k // 3))
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return base
