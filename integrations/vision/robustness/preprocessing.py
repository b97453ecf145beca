"""Evaluation preprocessing: optional bicubic resize of the short side, then a center crop, to [0, 1].

The protocol of the paper's numbers is ``resize(256, bicubic) → center_crop(224)`` for clean
ImageNet and the out-of-distribution sets, and ``center_crop(224)`` only for ImageNet-C (whose
images are already 224 px). :class:`Preprocessing` holds that policy with a configurable
resolution; the demo uses small images and no resize at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import functional as TF
from torchvision.transforms import InterpolationMode

__all__ = ["Preprocessing", "CropBox", "DEFAULT_RESIZE_RATIO"]

DEFAULT_RESIZE_RATIO: float = 256.0 / 224.0
"""Short-side resize over crop size of the standard ImageNet evaluation (256 / 224)."""


@dataclass(frozen=True)
class CropBox:
    """A rectangle ``[top, top + height) × [left, left + width)`` in original-image pixel coordinates."""

    top: int
    left: int
    height: int
    width: int


def _check_optional_size(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class Preprocessing:
    """Maps a PIL image to ``x = center_crop_c(resize_r(image)) / 255`` with shape (3, c, c) in [0, 1].

    ``resize_r`` scales the short side to ``r`` pixels (bicubic, the long side as torchvision
    computes it: ``int(r · long / short)``); it is skipped when ``resize_size`` is None. The center
    crop is skipped when ``crop_size`` is None, so ``Preprocessing(None, None)`` keeps images as
    they are (the demo's 64×64 PNGs). No normalisation happens here: the evaluation normalises.

    Args:
        crop_size: Side of the square center crop, or None for no crop.
        resize_size: Target short side of the bicubic resize, or None for no resize.
    """

    crop_size: int | None = 224
    resize_size: int | None = 256

    def __post_init__(self) -> None:
        _check_optional_size("crop_size", self.crop_size)
        _check_optional_size("resize_size", self.resize_size)

    @classmethod
    def standard(cls, image_size: int | None = 224, *, resize: bool = True) -> "Preprocessing":
        """The ImageNet protocol at any resolution: resize to ``round(image_size · 256/224)``, crop ``image_size``.

        Args:
            image_size: Crop side (224 for ImageNet); None keeps the image size (no resize, no crop).
            resize: Whether to resize before cropping (False for ImageNet-C and for the demo).

        Returns:
            The preprocessing policy.
        """
        _check_optional_size("image_size", image_size)
        if image_size is None or not resize:
            return cls(crop_size=image_size, resize_size=None)
        return cls(crop_size=image_size, resize_size=int(round(image_size * DEFAULT_RESIZE_RATIO)))

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) after the short-side resize (unchanged when there is none).

        Args:
            height: Original image height in pixels.
            width: Original image width in pixels.

        Returns:
            The resized (height, width).
        """
        if self.resize_size is None:
            return height, width
        short, long = (height, width) if height <= width else (width, height)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def crop_box_in_original(self, height: int, width: int) -> CropBox:
        """The part of the original image the model sees, in original pixel coordinates.

        The crop offset in the resized image is ``round((H_r − c)/2)`` (torchvision's center crop);
        it is mapped back by the resize factors and rounded. Used to align masks and fixations,
        which are scored at the original resolution.

        Args:
            height: Original image height in pixels.
            width: Original image width in pixels.

        Returns:
            The crop rectangle, clipped to the image.
        """
        resized_h, resized_w = self.resized_shape(height, width)
        if self.crop_size is None:
            top_r, left_r, crop_h, crop_w = 0, 0, resized_h, resized_w
        else:
            crop_h = crop_w = self.crop_size
            top_r = int(round((resized_h - crop_h) / 2.0))
            left_r = int(round((resized_w - crop_w) / 2.0))
        scale_y, scale_x = height / resized_h, width / resized_w
        top = max(0, int(math.floor(top_r * scale_y + 0.5)))
        left = max(0, int(math.floor(left_r * scale_x + 0.5)))
        bottom = min(height, int(math.floor((top_r + crop_h) * scale_y + 0.5)))
        right = min(width, int(math.floor((left_r + crop_w) * scale_x + 0.5)))
        return CropBox(top=top, left=left, height=max(1, bottom - top), width=max(1, right - left))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Apply the policy to an RGB PIL image.

        Args:
            image: The decoded image (converted to RGB by the caller).

        Returns:
            A float tensor (3, H, W) in [0, 1].
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        if self.resize_size is not None:
            image = TF.resize(image, self.resize_size, interpolation=InterpolationMode.BICUBIC)
        if self.crop_size is not None:
            image = TF.center_crop(image, [self.crop_size, self.crop_size])
        return TF.to_tensor(image)
