"""Real photographic textures for the demo backgrounds, cut from scikit-image's bundled images.

A background is ``B = J(resize(crop(I_k)))``: a random source image ``I_k`` (only those shipped inside
the scikit-image wheel, so everything works offline), a random square crop whose side is a random
fraction of the source, an area-averaging resize to the target size, a random flip / quarter turn, and a
photometric jitter ``J`` (grey sources get a random colour tint; all get a random gain and offset).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["COLOUR_TEXTURE_SOURCES", "GREY_TEXTURE_SOURCES", "TextureBank"]

#: Colour photographs bundled with scikit-image (no download needed).
COLOUR_TEXTURE_SOURCES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
)
#: Grey-level images and textures bundled with scikit-image (no download needed).
GREY_TEXTURE_SOURCES: tuple[str, ...] = (
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "horse",
)


def _load_source(name: str) -> np.ndarray:
    """One scikit-image sample image as float32 RGB in [0, 1], shape ``(H, W, 3)``."""
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None:
        raise ValueError(f"skimage.data has no image called {name!r}")
    image = np.asarray(loader())
    if image.dtype == bool:
        image = np.where(image, 200, 60).astype(np.uint8)
    image = image.astype(np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


class TextureBank:
    """The loaded texture sources and random crops from them.

    Args:
        colour_sources: names of colour images in ``skimage.data``.
        grey_sources: names of grey images in ``skimage.data``.
    """

    def __init__(
        self,
        colour_sources: tuple[str, ...] = COLOUR_TEXTURE_SOURCES,
        grey_sources: tuple[str, ...] = GREY_TEXTURE_SOURCES,
    ) -> None:
        if not colour_sources and not grey_sources:
            raise ValueError("at least one texture source is needed, got none")
        self.names: tuple[str, ...] = tuple(colour_sources) + tuple(grey_sources)
        self.is_grey: tuple[bool, ...] = (False,) * len(colour_sources) + (True,) * len(grey_sources)
        self.images: tuple[np.ndarray, ...] = tuple(_load_source(name) for name in self.names)

    def crop(
        self, rng: np.random.Generator, size: int, min_fraction: float = 0.12, max_fraction: float = 0.5
    ) -> tuple[np.ndarray, bool]:
        """A random square crop resized to ``size × size``: float32 RGB in [0, 1], and whether it is grey.

        The crop side is ``f · min(H, W)`` with ``f ~ U(min_fraction, max_fraction)`` (at least ``size``
        pixels when the source allows), followed by a random horizontal flip and quarter turn.

        Args:
            rng: random generator.
            size: output side in pixels.
            min_fraction: smallest crop side as a fraction of the source's short side.
            max_fraction: largest crop side as a fraction of the source's short side.
        """
        if size <= 0:
            raise ValueError(f"size must be a positive int, got {size}")
        index = int(rng.integers(len(self.images)))
        source = self.images[index]
        short = min(source.shape[:2])
        side = int(round(rng.uniform(min_fraction, max_fraction) * short))
        side = int(np.clip(side, min(size, short), short))
        top = int(rng.integers(0, source.shape[0] - side + 1))
        left = int(rng.integers(0, source.shape[1] - side + 1))
        patch = source[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
        patch = cv2.resize(patch, (size, size), interpolation=interpolation)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patch = np.rot90(patch, k=int(rng.integers(4)))
        return np.ascontiguousarray(patch, dtype=np.float32), self.is_grey[index]

    def background(
        self, rng: np.random.Generator, size: int, contrast: tuple[float, float] = (0.45, 0.85), max_blur: float = 1.0
    ) -> np.ndarray:
        """A random real-texture background, float32 RGB in [0, 1]: ``B = μ + c · (G ⊛ T − μ) + o``.

        T is a crop (grey sources get a random tint), G a Gaussian blur of standard deviation
        ``U(0, max_blur)`` pixels (a shallow depth of field), μ the crop's mean colour,
        ``c ~ U(contrast)`` and ``o ~ U(±0.06)``.

        Args:
            rng: random generator.
            size: output side in pixels.
            contrast: range of the contrast factor c.
            max_blur: largest blur standard deviation in pixels.
        """
        patch, grey = self.crop(rng, size)
        if grey:
            tint = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
            patch = patch * tint / tint.max()
        blur = rng.uniform(0.0, max_blur)
        if blur > 0.3:
            patch = cv2.GaussianBlur(patch, (0, 0), blur)
        mean = patch.mean(axis=(0, 1), keepdims=True)
        factor = rng.uniform(*contrast)
        offset = rng.uniform(-0.06, 0.06)
        return np.clip(mean + factor * (patch - mean) + offset, 0.0, 1.0).astype(np.float32)

    def grey_pattern(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random crop as a single-channel float32 pattern with values in [0, 1] (luminance)."""
        patch, _ = self.crop(rng, size)
        grey = patch @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        low, high = np.percentile(grey, [2, 98])
        return np.clip((grey - low) / max(high - low, 1e-3), 0.0, 1.0).astype(np.float32)
