"""Tiny synthetic data trees in the exact on-disk layouts of every benchmark, for smoke tests.

Images of class ``k`` are a class colour plus seeded noise, so a linear classifier over pooled
pixels can learn them. VOC and MIT1003 images show one bright square on a dark background; its
mask (with a void border) and its fixations are written alongside, so a brightness "attention
map" segments and predicts them well. Every random choice is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .imagenet_facts import PACS_DOMAINS

__all__ = [
    "class_colour_image",
    "write_class_folder_tree",
    "write_imagenet_c_tree",
    "write_pacs_tree",
    "write_voc_tree",
    "write_mit1003_tree",
]


def class_colour_image(label: int, size: int, rng: np.random.Generator, *, noise: float = 0.08) -> np.ndarray:
    """An (size, size, 3) uint8 image: colour ``c_k`` (from a fixed per-label seed) + N(0, noise²), clipped.

    Args:
        label: Class index ``k``.
        size: Side in pixels.
        rng: Source of the noise.
        noise: Noise standard deviation in [0, 1] units.

    Returns:
        The image array.
    """
    colour = np.random.default_rng(10_000 + label).uniform(0.1, 0.9, size=3)
    pixels = colour[None, None, :] + rng.normal(0.0, noise, size=(size, size, 3))
    return (np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)


def write_class_folder_tree(
    root: str | Path,
    class_names: Sequence[str],
    labels: Sequence[int],
    *,
    per_class: int = 3,
    size: int = 32,
    extension: str = ".JPEG",
    seed: int = 0,
) -> Path:
    """Write ``root/<class_names[k]>/<k>_<i><extension>`` for every ``k`` in ``labels``.

    Args:
        root: Destination folder.
        class_names: The label space.
        labels: Which classes get a folder.
        per_class: Images per folder.
        size: Image side.
        extension: File extension (its format is inferred by PIL: ``.JPEG``, ``.png``, ...).
        seed: Noise seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in labels:
        folder = root / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.fromarray(class_colour_image(label, size, rng))
            image.save(folder / f"{label}_{i}{extension}", quality=95)
    return root


def write_imagenet_c_tree(
    root: str | Path,
    class_names: Sequence[str],
    labels: Sequence[int],
    corruptions: Sequence[str],
    *,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    per_class: int = 2,
    size: int = 32,
    extension: str = ".JPEG",
    seed: int = 0,
) -> Path:
    """Write ``root/<corruption>/<severity>/<class>/*`` trees (noise grows with severity).

    Args:
        root: Destination folder.
        class_names: The label space.
        labels: Which classes get a folder.
        corruptions: Corruption folder names.
        severities: Severity folders.
        per_class: Images per class folder.
        size: Image side.
        extension: File extension.
        seed: Noise seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    for c_index, corruption in enumerate(corruptions):
        for severity in severities:
            rng = np.random.default_rng(seed + 100 * c_index + severity)
            for label in labels:
                folder = root / corruption / str(severity) / class_names[label]
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    pixels = class_colour_image(label, size, rng, noise=0.05 + 0.1 * severity)
                    Image.fromarray(pixels).save(folder / f"{label}_{i}{extension}")
    return root


def write_pacs_tree(
    root: str | Path, classes: Sequence[str], *, per_class: int = 2, size: int = 32, extension: str = ".jpg", seed: int = 0
) -> Path:
    """Write ``root/<domain>/<class>/*`` for the four PACS domains (domain shifts the noise level).

    Args:
        root: Destination folder.
        classes: Class folder names (7 in PACS).
        per_class: Images per class and domain.
        size: Image side.
        extension: File extension.
        seed: Noise seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    for d_index, domain in enumerate(PACS_DOMAINS):
        rng = np.random.default_rng(seed + d_index)
        for label, name in enumerate(classes):
            folder = root / domain / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = class_colour_image(label, size, rng, noise=0.04 * (d_index + 1))
                Image.fromarray(pixels).save(folder / f"{label}_{i}{extension}")
    return root


def _square_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    side = int(min(height, width) * rng.uniform(0.3, 0.5))
    top = int(rng.integers(0, height - side))
    left = int(rng.integers(0, width - side))
    pixels = rng.uniform(0.0, 0.15, size=(height, width, 3))
    pixels[top : top + side, left : left + side] = rng.uniform(0.85, 1.0, size=(side, side, 3))
    return (pixels * 255).round().astype(np.uint8), (top, left, side, side)


def write_voc_tree(
    root: str | Path, *, images: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0, mask_folder: str = "SegmentationClass"
) -> Path:
    """Write a VOC2012 folder: ``JPEGImages/<id>.jpg``, palette ``<mask_folder>/<id>.png``, ``ImageSets/Segmentation/val.txt``.

    The mask is 0 outside the square, class 1..20 inside, and 255 (void) on a 1-pixel border.

    Args:
        root: The ``VOC2012`` folder to create.
        images: Number of images.
        size: (height, width) of every image.
        seed: Scene seed.
        mask_folder: ``SegmentationClass`` or ``SegmentationObject``.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / mask_folder).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(images)]
    palette = [0, 0, 0] + [v for k in range(1, 256) for v in ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)]
    for image_id in ids:
        pixels, (top, left, h, w) = _square_scene(rng, *size)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = np.zeros(size, dtype=np.uint8)
        mask[max(0, top - 1) : top + h + 1, max(0, left - 1) : left + w + 1] = 255
        mask[top : top + h, left : left + w] = int(rng.integers(1, 21))
        mask_image = Image.fromarray(mask, mode="P")
        mask_image.putpalette(palette)
        mask_image.save(root / mask_folder / f"{image_id}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def write_mit1003_tree(root: str | Path, *, images: int = 3, size: tuple[int, int] = (36, 48), seed: int = 0) -> Path:
    """Write ``ALLSTIMULI/<name>.jpeg``, ``ALLFIXATIONMAPS/<name>_fixPts.jpg`` and ``<name>_fixMap.jpg``.

    Fixations are 5 pixels inside the bright square (white on black in ``_fixPts``).

    Args:
        root: The ``MIT1003`` folder to create.
        images: Number of stimuli.
        size: (height, width) of every stimulus.
        seed: Scene seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "ALLSTIMULI").mkdir(parents=True, exist_ok=True)
    (root / "ALLFIXATIONMAPS").mkdir(parents=True, exist_ok=True)
    for index in range(images):
        name = f"i{index:04d}_static_scene"
        pixels, (top, left, h, w) = _square_scene(rng, *size)
        Image.fromarray(pixels).save(root / "ALLSTIMULI" / f"{name}.jpeg", quality=95)
        points = np.zeros(size, dtype=np.uint8)
        ys = rng.integers(top + 1, top + h - 1, size=5)
        xs = rng.integers(left + 1, left + w - 1, size=5)
        points[ys, xs] = 255
        Image.fromarray(points).save(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", quality=100)
        blurred = np.zeros(size, dtype=np.uint8)
        blurred[top : top + h, left : left + w] = 200
        Image.fromarray(blurred).save(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg")
    return root
