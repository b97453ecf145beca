"""ImageNet facts the robustness suite needs and cannot download.

The class order of a 1000-way ImageNet classifier is the sorted list of WordNet ids (the order a
torchvision ``ImageFolder`` gives ``val/``); ImageNet-R and ImageNet-A each cover 200 of them, and
AlexNet's per-corruption ImageNet-C errors normalise the mean corruption error (mCE). The data ship
with the package as ``imagenet.json`` and are read with :mod:`importlib.resources`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..corruptions import CORRUPTIONS

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGENET_C_CORRUPTIONS",
    "IMAGENET_C_EXTRA_CORRUPTIONS",
    "IMAGENET_C_SEVERITIES",
    "PACS_DOMAINS",
    "imagenet_wnids",
    "imagenet_r_wnids",
    "imagenet_a_wnids",
    "alexnet_imagenet_c_errors",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet pixels in [0, 1] (RGB)."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet pixels in [0, 1] (RGB)."""

IMAGENET_C_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS
"""The 15 benchmark corruptions of ImageNet-C (Hendrycks & Dietterich, 2019), in the usual order."""

IMAGENET_C_EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The 4 held-out ImageNet-C corruptions; evaluated when present, never part of mCE."""

IMAGENET_C_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""Severity levels of ImageNet-C."""

PACS_DOMAINS: tuple[str, ...] = ("photo", "art_painting", "cartoon", "sketch")
"""The four PACS domains (folder names)."""


@lru_cache(maxsize=1)
def _facts() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("imagenet.json").read_text(encoding="utf-8")
    return json.loads(text)


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids, sorted: position ``i`` is class index ``i`` of a 1k classifier.

    Returns:
        A tuple of 1000 strings such as ``"n01440764"``.
    """
    return tuple(_facts()["imagenet_1k_wnids_sorted"])


def imagenet_r_wnids() -> tuple[str, ...]:
    """The 200 WordNet ids of ImageNet-R (each one of :func:`imagenet_wnids`).

    Returns:
        A tuple of 200 strings.
    """
    return tuple(_facts()["imagenet_r_wnids"])


def imagenet_a_wnids() -> tuple[str, ...]:
    """The 200 WordNet ids of ImageNet-A (each one of :func:`imagenet_wnids`).

    Returns:
        A tuple of 200 strings.
    """
    return tuple(_facts()["imagenet_a_wnids"])


def alexnet_imagenet_c_errors() -> dict[str, float]:
    """AlexNet's top-1 error ``E^AlexNet_c`` (a fraction) per ImageNet-C corruption, averaged over severities.

    These are the denominators of ``CE_c = E_c / E^AlexNet_c``.

    Returns:
        A dict corruption name → error in [0, 1] for the 15 benchmark corruptions.
    """
    return {name: float(value) for name, value in _facts()["alexnet_imagenet_c_error"].items()}
