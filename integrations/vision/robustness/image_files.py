"""Reading image files: accepted extensions, decoding to RGB, and the errors that name the file.

Any extension PIL can open is accepted (``.JPEG``, ``.jpeg``, ``.png``, ...). A file that cannot be
decoded raises :class:`CorruptImageError` with its path, so that the evaluation can count it, warn,
and go on; a folder that is missing or laid out wrongly raises :class:`DatasetLayoutError`, whose
message states the layout that was expected.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CorruptImageError",
    "DatasetLayoutError",
    "image_extensions",
    "is_image_file",
    "list_image_files",
    "load_rgb",
    "load_array",
]


class DatasetLayoutError(ValueError):
    """A data set folder is missing or does not have the expected layout (the message states it)."""


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded.

    Args:
        path: The file that failed.
        reason: What the decoder reported.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode image file {self.path}: {reason}")


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """The lower-case file extensions (with the dot) that PIL has a decoder registered for.

    Returns:
        A frozen set such as ``{".jpeg", ".jpg", ".png", ...}``.
    """
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a regular file with an extension PIL can read (case-insensitive).

    Args:
        path: The candidate file.

    Returns:
        True for an image file.
    """
    return path.is_file() and path.suffix.lower() in image_extensions()


def list_image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Args:
        folder: A directory.

    Returns:
        The sorted list of image paths (possibly empty).
    """
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _open_decoded(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImageError(path, f"{type(error).__name__}: {error}") from error


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file fully and convert it to RGB.

    Args:
        path: The image file.

    Returns:
        The RGB PIL image.

    Raises:
        CorruptImageError: The file cannot be decoded (the error names it).
    """
    return _open_decoded(Path(path)).convert("RGB")


def load_array(path: str | Path, *, grayscale: bool = False) -> np.ndarray:
    """Decode an image file to a numpy array without colour conversion (palette PNGs keep their indices).

    Args:
        path: The image file.
        grayscale: Convert to 8-bit luminance ("L") first (for fixation-point JPEGs).

    Returns:
        A uint8 array (H, W) for palette/grey images, (H, W, C) otherwise.

    Raises:
        CorruptImageError: The file cannot be decoded (the error names it).
    """
    image = _open_decoded(Path(path))
    if grayscale:
        image = image.convert("L")
    return np.asarray(image)
