"""PASCAL VOC 2012 segmentation conventions for the demo masks: label maps with void borders, palette PNGs.

A VOC ``SegmentationClass`` PNG is a palette ("P" mode) image whose pixel values are labels: 0 background,
``k`` the k-th object class, 255 "void" (a thin band along every object boundary, ignored by the metric).
The palette is VOC's standard colour map: label ``ℓ`` with bits ``b₇…b₀`` gets, for j = 0..7,
``R |= b_{3j} << (7 − j)``, ``G |= b_{3j+1} << (7 − j)``, ``B |= b_{3j+2} << (7 − j)`` (bits read
three at a time from the low end).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["VOID_LABEL", "voc_palette", "label_map_with_void", "palette_png"]

#: Label of VOC's ignored boundary band.
VOID_LABEL = 255


def voc_palette(num_labels: int = 256) -> np.ndarray:
    """VOC's colour map: ``(num_labels, 3)`` uint8 RGB, label 0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192)."""
    if not 1 <= num_labels <= 256:
        raise ValueError(f"num_labels must be in 1..256, got {num_labels}")
    palette = np.zeros((num_labels, 3), dtype=np.uint8)
    for label in range(num_labels):
        value, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def label_map_with_void(object_ids: np.ndarray, object_labels: list[int], void_width: int = 1) -> np.ndarray:
    """VOC label map from an object-id map: 0 background, ``object_labels[k-1]`` on object k, 255 on borders.

    A pixel is void when the ``(void_width + 1)²`` window anchored at it contains two different object ids
    (a band of about ``void_width`` pixels along every boundary between object and background or between
    two objects).

    Args:
        object_ids: int array ``(H, W)``: 0 background, k = 1..K object index.
        object_labels: VOC label (1..254) of each object, ``len == K``.
        void_width: band width in pixels (0 disables the band).

    Returns:
        uint8 array ``(H, W)``.
    """
    ids = np.asarray(object_ids)
    if ids.ndim != 2:
        raise ValueError(f"object_ids must be 2-D (H, W), got shape {ids.shape}")
    if ids.size and ids.max() > len(object_labels):
        raise ValueError(f"object_ids has id {int(ids.max())} but only {len(object_labels)} object_labels were given")
    if any(not 1 <= int(label) <= 254 for label in object_labels):
        raise ValueError(f"object_labels must lie in 1..254, got {list(object_labels)}")
    if void_width < 0:
        raise ValueError(f"void_width must be >= 0, got {void_width}")
    lookup = np.array([0, *[int(label) for label in object_labels]], dtype=np.uint8)
    labels = lookup[ids]
    if void_width > 0:
        window = void_width + 1
        high = ndimage.maximum_filter(ids, size=window, mode="nearest")
        low = ndimage.minimum_filter(ids, size=window, mode="nearest")
        labels[high != low] = VOID_LABEL
    return labels


def palette_png(labels: np.ndarray) -> Image.Image:
    """A "P"-mode PIL image of ``labels`` (uint8 ``(H, W)``) carrying :func:`voc_palette`."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"labels must be a uint8 (H, W) array, got {labels.dtype} {labels.shape}")
    image = Image.fromarray(labels)  # mode "L"; attaching a palette turns it into "P" with the same indices
    image.putpalette(voc_palette().ravel().tolist())
    return image
