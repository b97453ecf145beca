"""The demo object classes: procedurally defined planar shapes, their poses, and their rasterisation.

A shape is a set of closed polygons in unit coordinates (outer boundary of radius ≈ 1 around the origin,
optional holes) plus *keypoints*: salient points inside the shape (corners, tips, centre) used to place
eye fixations. A pose maps unit coordinates to pixels,

    p_px = c + r · R(θ) · diag(a, 1/a) · p_unit,

with centre c = (x, y), radius r, rotation θ and aspect a. Rasterisation computes the coverage α ∈ [0, 1]
of every pixel on an ``s × s`` supersampled grid (even-odd fill: holes are subtracted), and the binary
ground-truth mask is ``α ≥ ½``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SHAPE_NAMES",
    "ObjectPose",
    "shape_polygons",
    "shape_keypoints",
    "pose_points",
    "posed_polygons",
    "rasterize_polygons",
    "rasterize_strokes",
    "object_alpha",
    "object_mask",
]

#: The demo classes, in index order (alphabetical, so a sorted ``ImageFolder`` gives the same order).
SHAPE_NAMES: tuple[str, ...] = (
    "arrow",
    "cross",
    "disk",
    "ellipse",
    "heart",
    "hexagon",
    "ring",
    "square",
    "star",
    "triangle",
)

_CIRCLE_POINTS = 72


@dataclass(frozen=True)
class ObjectPose:
    """Placement of a unit shape in an image: ``p_px = c + r · R(θ) · diag(a, 1/a) · p_unit``.

    Args:
        center_x: x (column) of the centre, in pixels.
        center_y: y (row) of the centre, in pixels.
        radius: scale r in pixels (the unit shape has radius ≈ 1).
        angle: rotation θ in radians (counter-clockwise on screen).
        aspect: anisotropic stretch a > 0 (x scaled by a, y by 1/a before rotation).
    """

    center_x: float
    center_y: float
    radius: float
    angle: float = 0.0
    aspect: float = 1.0

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        if not self.aspect > 0:
            raise ValueError(f"aspect must be > 0, got {self.aspect}")


def _circle(n: int = _CIRCLE_POINTS, rx: float = 1.0, ry: float = 1.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _regular(n: int, phase: float) -> np.ndarray:
    t = phase + np.arange(n) * 2.0 * np.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(n: int = _CIRCLE_POINTS) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1) / 16.5
    pts[:, 1] += 0.1
    return pts


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array(
        [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]],
        dtype=float,
    )


def _arrow() -> np.ndarray:
    return np.array(
        [[-1.0, -0.26], [0.15, -0.26], [0.15, -0.7], [1.0, 0.0], [0.15, 0.7], [0.15, 0.26], [-1.0, 0.26]]
    )


def shape_polygons(name: str) -> list[np.ndarray]:
    """Closed polygons of a unit shape: ``[outer, hole_1, ...]``, each an ``(n, 2)`` array of (x, y).

    Args:
        name: one of :data:`SHAPE_NAMES`.

    Returns:
        The outer boundary first, then holes (only ``ring`` has one).
    """
    if name == "arrow":
        return [_arrow()]
    if name == "cross":
        return [_cross()]
    if name == "disk":
        return [_circle()]
    if name == "ellipse":
        return [_circle(rx=1.0, ry=0.52)]
    if name == "heart":
        return [_heart()]
    if name == "hexagon":
        return [_regular(6, 0.0)]
    if name == "ring":
        return [_circle(), _circle(rx=0.58, ry=0.58)]
    if name == "square":
        return [_regular(4, np.pi / 4) * np.sqrt(2) * 0.8]
    if name == "star":
        return [_star()]
    if name == "triangle":
        return [_regular(3, -np.pi / 2) * 1.05 + np.array([0.0, 0.15])]
    raise ValueError(f"name must be one of {', '.join(SHAPE_NAMES)}; got {name!r}")


def shape_keypoints(name: str) -> np.ndarray:
    """Salient points *inside* a unit shape (centre, corners, tips), ``(k, 2)`` array of (x, y).

    Corners and tips are pulled towards the centre so that every keypoint lies inside the shape; for
    the ring (whose centre is a hole) the points sit on the band.

    Args:
        name: one of :data:`SHAPE_NAMES`.
    """
    outer = shape_polygons(name)[0]
    if name in ("disk", "ellipse"):
        ends = np.array([[0.75, 0.0], [-0.75, 0.0]]) * ([1.0, 1.0] if name == "disk" else [1.0, 0.52])
        return np.vstack([[0.0, 0.0], ends])
    if name == "ring":
        return _regular(6, np.pi / 6) * 0.79
    if name == "star":
        return np.vstack([[0.0, 0.0], outer[::2] * 0.72])
    if name == "cross":
        return np.array([[0.0, 0.0], [0.0, -0.8], [0.8, 0.0], [0.0, 0.8], [-0.8, 0.0]])
    if name == "arrow":
        return np.array([[0.0, 0.0], [0.7, 0.0], [0.3, -0.45], [0.3, 0.45], [-0.85, 0.0]])
    if name == "heart":
        return np.array([[0.0, 0.05], [-0.45, -0.35], [0.45, -0.35], [0.0, 0.75]])
    centre = outer.mean(axis=0)
    return np.vstack([centre, centre + 0.75 * (outer - centre)])


def pose_points(points: np.ndarray, pose: ObjectPose) -> np.ndarray:
    """Map unit points to pixels: ``c + r · R(θ) · diag(a, 1/a) · p``.

    Args:
        points: ``(n, 2)`` array of unit (x, y) coordinates.
        pose: the placement.

    Returns:
        ``(n, 2)`` float array of pixel (x, y) coordinates.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
    stretched = pts * np.array([pose.aspect, 1.0 / pose.aspect])
    cos, sin = np.cos(pose.angle), np.sin(pose.angle)
    rotation = np.array([[cos, sin], [-sin, cos]])  # y points down on screen: counter-clockwise on screen
    return pose.radius * stretched @ rotation + np.array([pose.center_x, pose.center_y])


def posed_polygons(name: str, pose: ObjectPose) -> list[np.ndarray]:
    """:func:`shape_polygons` of ``name`` mapped to pixels by ``pose``."""
    return [pose_points(poly, pose) for poly in shape_polygons(name)]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
        raise ValueError(f"size must be (height, width) with positive ints, got {size}")
    return int(size[0]), int(size[1])


def rasterize_polygons(polygons: list[np.ndarray], size: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """Coverage α ∈ [0, 1] of each pixel by ``polygons[0]`` minus the holes ``polygons[1:]``.

    Pixel (i, j) is the square ``[j, j+1) × [i, i+1)``; its coverage is the fraction of the
    ``supersample²`` sub-pixel centres inside the filled region.

    Args:
        polygons: pixel-coordinate polygons, outer boundary first, then holes.
        size: ``(height, width)`` of the output.
        supersample: sub-pixel grid factor s ≥ 1.

    Returns:
        float32 array ``(height, width)``.
    """
    height, width = _check_size(size)
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    s = int(supersample)
    polys = [np.asarray(polygon, dtype=np.float64) for polygon in polygons]
    window = _bounding_window(polys, (height, width), margin=1.0)
    coverage = np.zeros((height, width), dtype=np.float32)
    if window is None:
        return coverage
    top, left, bottom, right = window
    canvas = Image.new("L", ((right - left) * s, (bottom - top) * s), 0)
    draw = ImageDraw.Draw(canvas)
    offset = np.array([left, top], dtype=np.float64)
    for index, polygon in enumerate(polys):
        scaled = ((polygon - offset) * s - 0.5).ravel().tolist()
        draw.polygon(scaled, fill=255 if index == 0 else 0)
    coverage[top:bottom, left:right] = _box_average(canvas, s)
    return coverage


def _bounding_window(
    polylines: list[np.ndarray], size: tuple[int, int], margin: float
) -> tuple[int, int, int, int] | None:
    """Integer pixel window ``(top, left, bottom, right)`` holding all points (± margin), clipped to the image."""
    height, width = size
    points = np.vstack(polylines)
    left = max(0, int(np.floor(points[:, 0].min() - margin)))
    right = min(width, int(np.ceil(points[:, 0].max() + margin)) + 1)
    top = max(0, int(np.floor(points[:, 1].min() - margin)))
    bottom = min(height, int(np.ceil(points[:, 1].max() + margin)) + 1)
    if left >= right or top >= bottom:
        return None
    return top, left, bottom, right


def _box_average(canvas: Image.Image, s: int) -> np.ndarray:
    """Mean of each ``s × s`` block of an "L" canvas, scaled to [0, 1] (exact: sums of integers)."""
    grid = np.asarray(canvas, dtype=np.float32)
    if s > 1:
        rows, cols = grid.shape[0] // s, grid.shape[1] // s
        grid = cv2.resize(grid, (cols, rows), interpolation=cv2.INTER_AREA)
    return grid * np.float32(1.0 / 255.0)


def rasterize_strokes(
    polylines: list[np.ndarray], size: tuple[int, int], width: float, supersample: int = 4, closed: bool = True
) -> np.ndarray:
    """Coverage α ∈ [0, 1] of each pixel by pen strokes of ``width`` pixels along ``polylines``.

    Args:
        polylines: pixel-coordinate point sequences.
        size: ``(height, width)`` of the output.
        width: pen width in pixels (> 0).
        supersample: sub-pixel grid factor s ≥ 1.
        closed: join each polyline's last point back to its first.

    Returns:
        float32 array ``(height, width)``.
    """
    height, width_px = _check_size(size)
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    s = int(supersample)
    lines = [np.asarray(line, dtype=np.float64) for line in polylines]
    coverage = np.zeros((height, width_px), dtype=np.float32)
    window = _bounding_window(lines, (height, width_px), margin=width + 1.0) if lines else None
    if window is None:
        return coverage
    top, left, bottom, right = window
    canvas = Image.new("L", ((right - left) * s, (bottom - top) * s), 0)
    draw = ImageDraw.Draw(canvas)
    offset = np.array([left, top], dtype=np.float64)
    pen = max(1, int(round(width * s)))
    for line in lines:
        pts = (line - offset) * s - 0.5
        if closed:
            pts = np.vstack([pts, pts[:1]])
        coords = [tuple(p) for p in pts.tolist()]
        draw.line(coords, fill=255, width=pen, joint="curve")
        radius = pen / 2.0
        for x, y in (coords[0], coords[-1]):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    coverage[top:bottom, left:right] = _box_average(canvas, s)
    return coverage


def object_alpha(name: str, pose: ObjectPose, size: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """Coverage α of the shape ``name`` placed by ``pose`` (see :func:`rasterize_polygons`)."""
    return rasterize_polygons(posed_polygons(name, pose), size, supersample)


def object_mask(name: str, pose: ObjectPose, size: tuple[int, int], supersample: int = 4) -> np.ndarray:
    """Binary ground-truth mask ``α ≥ ½`` of the shape ``name`` placed by ``pose`` (bool array)."""
    return object_alpha(name, pose, size, supersample) >= 0.5
