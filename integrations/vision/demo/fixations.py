"""Synthetic eye fixations for the demo MIT1003-like saliency set.

Observers look at objects: a fixation is, with probability ``1 − b``, a keypoint of a random object
(its centre, corners or tips; see :func:`~.shapes.shape_keypoints`) displaced by Gaussian jitter
``N(0, (σ_rel · r + ½ px)²)`` with r the object radius, and with probability b a uniformly random pixel.
The fixation density map (``_fixMap``) is the fixation count image blurred by a Gaussian of standard
deviation ``σ_map`` and scaled to max 1; the point map (``_fixPts``) is the binary image of fixated pixels.
An attention map that concentrates on the objects therefore scores a high NSS.
"""

from __future__ import annotations

import cv2
import numpy as np

from .scenes import Scene, scene_keypoints

__all__ = ["sample_fixations", "fixation_points_map", "fixation_density_map"]


def sample_fixations(
    rng: np.random.Generator,
    scene: Scene,
    n_fixations: int = 30,
    background_fraction: float = 0.1,
    relative_jitter: float = 0.12,
) -> np.ndarray:
    """Sample fixated pixels for ``scene``: keypoints with jitter, plus a fraction b of uniform points.

    Args:
        rng: random generator.
        scene: the scene shown to the "observers" (needs at least one object unless b = 1).
        n_fixations: number of fixations (≥ 1).
        background_fraction: probability b that a fixation is a uniform random pixel.
        relative_jitter: jitter standard deviation in units of the object radius (σ_rel).

    Returns:
        int64 array ``(n_fixations, 2)`` of (row, column) pixel indices inside the image.
    """
    if n_fixations < 1:
        raise ValueError(f"n_fixations must be >= 1, got {n_fixations}")
    if not 0.0 <= background_fraction <= 1.0:
        raise ValueError(f"background_fraction must be in [0, 1], got {background_fraction}")
    if not scene.objects and background_fraction < 1.0:
        raise ValueError("scene must contain at least one object when background_fraction < 1")
    size = scene.size
    keypoints = scene_keypoints(scene)
    points = np.empty((n_fixations, 2), dtype=np.float64)
    for index in range(n_fixations):
        if rng.random() < background_fraction:
            points[index] = rng.uniform(0, size, size=2)
            continue
        which = int(rng.integers(len(scene.objects)))
        anchors = keypoints[which]
        weights = np.ones(len(anchors))
        weights[0] = 2.0  # the centre keypoint (listed first) attracts more fixations
        anchor = anchors[int(rng.choice(len(anchors), p=weights / weights.sum()))]
        sigma = relative_jitter * scene.objects[which].pose.radius + 0.5
        x, y = anchor + rng.normal(0.0, sigma, size=2)
        points[index] = (y, x)
    return np.clip(np.floor(points), 0, size - 1).astype(np.int64)


def fixation_points_map(points: np.ndarray, size: int) -> np.ndarray:
    """Binary point map: 255 at every fixated (row, column), 0 elsewhere (uint8 ``(size, size)``)."""
    points = np.asarray(points, dtype=np.int64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {points.shape}")
    out = np.zeros((size, size), dtype=np.uint8)
    out[points[:, 0], points[:, 1]] = 255
    return out


def fixation_density_map(points: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Fixation density ``D = G_σ * Σ_i δ(p − p_i)``, scaled to ``D / max D`` (float32 ``(size, size)``).

    Args:
        points: ``(n, 2)`` (row, column) fixations.
        size: image side.
        sigma: Gaussian standard deviation in pixels (> 0).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = np.asarray(points, dtype=np.int64)
    counts = np.zeros((size, size), dtype=np.float32)
    np.add.at(counts, (points[:, 0], points[:, 1]), 1.0)
    density = cv2.GaussianBlur(counts, (0, 0), float(sigma), borderType=cv2.BORDER_CONSTANT)
    return density / max(float(density.max()), 1e-12)
