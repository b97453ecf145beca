"""Render a :class:`~.scenes.Scene` in one of several depiction styles (photo, painting, cartoon, sketch, ...).

Every style composites back to front, ``I ← (1 − α) · I + α · F`` with the coverage α of each item
(:func:`~.shapes.rasterize_polygons`) and its paint F, then applies the style's own finishing. The styles
share the scene geometry, so the class is carried by the shape alone while texture, colour and line
statistics change — which is what separates the demo "photo" training domain from its renditions:

- ``photo``: real-texture background, patterned and shaded objects, sensor noise.
- ``painting``: photo, then edge-preserving smoothing, colour posterisation, brush-stroke texture, warm cast.
- ``cartoon``: flat posterised background, flat two-tone objects with thick black outlines.
- ``sketch``: grey pencil lines (jittered multi-strokes, optional hatching) on paper.
- ``colour_sketch``: as ``sketch`` with a coloured pen on tinted paper.
- ``neon``: glowing coloured outlines on a darkened background.
- ``mosaic``: photo reduced to coarse tiles with a small palette and grout lines.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .scenes import Scene, SceneObject, sample_colour
from .shapes import ObjectPose, posed_polygons, rasterize_polygons, rasterize_strokes
from .textures import TextureBank

__all__ = ["STYLES", "render_scene"]


def _composite(image: np.ndarray, alpha: np.ndarray, paint: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    a = alpha[:, :, None]
    return image * (1.0 - a) + a * np.asarray(paint, dtype=np.float32)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords)


def _object_frame(obj_pose: ObjectPose, size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Object-relative coordinates (u along ``angle``, v across), in units of the object radius."""
    xx, yy = _pixel_grid(size)
    dx = (xx - obj_pose.center_x) / obj_pose.radius
    dy = (yy - obj_pose.center_y) / obj_pose.radius
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _object_paint(obj: SceneObject, size: int, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    """Patterned, shaded RGB paint of an object over the whole frame (masked later by its coverage)."""
    c1 = np.asarray(obj.colour, dtype=np.float32)
    c2 = np.asarray(obj.secondary, dtype=np.float32)
    u, v = _object_frame(obj.pose, size, obj.pattern_angle)
    if obj.pattern == "flat":
        weight = np.zeros_like(u)
    elif obj.pattern == "gradient":
        weight = np.clip(0.5 + 0.5 * u, 0.0, 1.0)
    elif obj.pattern == "stripes":
        weight = (np.sin(2 * np.pi * obj.pattern_frequency * u) > 0).astype(np.float32)
    elif obj.pattern == "checker":
        f = obj.pattern_frequency
        weight = ((np.floor(f * u) + np.floor(f * v)) % 2).astype(np.float32)
    elif obj.pattern == "texture":
        weight = bank.grey_pattern(rng, size)
    else:
        raise ValueError(f"pattern must be one of flat, gradient, stripes, checker, texture; got {obj.pattern!r}")
    paint = c1 * (1.0 - weight[:, :, None]) + c2 * weight[:, :, None]
    light_u, _ = _object_frame(obj.pose, size, float(rng.uniform(0, 2 * np.pi)))
    shading = np.clip(0.95 + 0.25 * light_u, 0.6, 1.2)
    return np.clip(paint * shading[:, :, None], 0.0, 1.0).astype(np.float32)


def _object_alpha(obj: SceneObject, size: int) -> np.ndarray:
    return rasterize_polygons(posed_polygons(obj.shape, obj.pose), (size, size))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _photo_float(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    size = scene.size
    image = bank.background(rng, size)
    for item in scene.distractors:
        alpha = rasterize_polygons([item.polygon], (size, size))
        image = _composite(image, alpha, item.colour)
    for obj in scene.objects:
        image = _composite(image, _object_alpha(obj, size), _object_paint(obj, size, rng, bank))
    blur = rng.uniform(0.0, 0.7)
    if blur > 0.25:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image = image + rng.normal(0.0, rng.uniform(0.005, 0.03), size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def _render_photo(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    return _to_uint8(_photo_float(scene, rng, bank))


def _stroke_texture(rng: np.random.Generator, size: int, length: int) -> np.ndarray:
    """Noise smeared along one random direction: the streaks of brush strokes, zero mean, unit-ish scale."""
    noise = rng.normal(size=(size, size)).astype(np.float32)
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0 / length
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= max(float(kernel.sum()), 1e-6)
    streaks = cv2.filter2D(noise, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return streaks / max(float(streaks.std()), 1e-6)


def _render_painting(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    size = scene.size
    image = _photo_float(scene, rng, bank)
    image = cv2.bilateralFilter(image, d=5, sigmaColor=0.25, sigmaSpace=3.0)
    image = cv2.medianBlur(_to_uint8(image), 3).astype(np.float32) / 255.0
    levels = float(rng.integers(5, 9))
    image = np.round(image * levels) / levels
    image = image * (1.0 + 0.12 * _stroke_texture(rng, size, max(3, size // 8))[:, :, None])
    cast = np.array([1.06, 0.98, 0.82], dtype=np.float32) * rng.uniform(0.9, 1.05)
    image = 0.85 * image * cast + 0.15 * np.asarray(sample_colour(rng, (0.1, 0.4), (0.7, 1.0)), dtype=np.float32)
    return _to_uint8(image)


def _render_cartoon(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    size = scene.size
    if rng.random() < 0.5:
        background = cv2.GaussianBlur(bank.background(rng, size), (0, 0), size / 16.0)
        background = np.round(background * 3.0) / 3.0
        background = 0.5 * background + 0.5 * np.asarray(sample_colour(rng, (0.2, 0.6), (0.8, 1.0)), dtype=np.float32)
    else:
        top = np.asarray(sample_colour(rng, (0.2, 0.7), (0.8, 1.0)), dtype=np.float32)
        bottom = np.asarray(sample_colour(rng, (0.3, 0.8), (0.5, 0.9)), dtype=np.float32)
        horizon = rng.uniform(0.4, 0.8) * size
        _, yy = _pixel_grid(size)
        background = np.where((yy < horizon)[:, :, None], top, bottom)
    image = background.astype(np.float32)
    outline = rng.uniform(0.035, 0.06) * size
    for item in scene.distractors:
        alpha = rasterize_polygons([item.polygon], (size, size))
        image = _composite(image, alpha, item.colour)
        image = _composite(image, rasterize_strokes([item.polygon], (size, size), outline * 0.5), (0.05, 0.05, 0.05))
    for obj in scene.objects:
        colour = np.asarray(sample_colour(rng, (0.6, 1.0), (0.75, 1.0)), dtype=np.float32)
        u, _ = _object_frame(obj.pose, size, float(rng.uniform(0, 2 * np.pi)))
        paint = np.where((u > 0.25)[:, :, None], colour * 0.7, colour)
        polygons = posed_polygons(obj.shape, obj.pose)
        image = _composite(image, rasterize_polygons(polygons, (size, size)), paint)
        image = _composite(image, rasterize_strokes(polygons, (size, size), outline), (0.03, 0.03, 0.03))
    return _to_uint8(image)


def _jittered(polygon: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    centre = polygon.mean(axis=0)
    grown = centre + (polygon - centre) * rng.uniform(0.96, 1.04)
    return grown + rng.normal(0.0, scale, size=polygon.shape)


def _hatching(rng: np.random.Generator, size: int, spacing: float) -> np.ndarray:
    xx, yy = _pixel_grid(size)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    phase = np.mod(u, spacing) / spacing
    return np.clip(1.0 - np.abs(phase - 0.5) * spacing / 0.7, 0.0, 1.0).astype(np.float32)


def _sketch_float(scene: Scene, rng: np.random.Generator, pen: np.ndarray, paper: np.ndarray) -> np.ndarray:
    size = scene.size
    grain = cv2.GaussianBlur(rng.normal(0.0, 0.04, size=(size, size)).astype(np.float32), (0, 0), 0.7)
    image = np.clip(paper[None, None, :] + grain[:, :, None], 0.0, 1.0)
    width = rng.uniform(0.012, 0.03) * size
    for item in scene.distractors:
        if rng.random() < 0.6:
            alpha = rasterize_strokes([_jittered(item.polygon, rng, 0.2)], (size, size), width * 0.7)
            image = _composite(image, alpha * rng.uniform(0.2, 0.45), pen)
    for obj in scene.objects:
        polygons = posed_polygons(obj.shape, obj.pose)
        if rng.random() < 0.5:
            spacing = rng.uniform(0.05, 0.1) * size
            inside = rasterize_polygons(polygons, (size, size))
            image = _composite(image, inside * _hatching(rng, size, spacing) * rng.uniform(0.25, 0.5), pen)
        for _ in range(int(rng.integers(1, 4))):
            strokes = [_jittered(p, rng, 0.012 * obj.pose.radius + 0.3) for p in polygons]
            alpha = rasterize_strokes(strokes, (size, size), width)
            image = _composite(image, alpha * rng.uniform(0.55, 0.95), pen)
    return image


def _render_sketch(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    paper = np.full(3, rng.uniform(0.88, 1.0), dtype=np.float32)
    pen = np.full(3, rng.uniform(0.0, 0.2), dtype=np.float32)
    image = _sketch_float(scene, rng, pen, paper)
    grey = image.mean(axis=2, keepdims=True)
    return _to_uint8(np.repeat(grey, 3, axis=2))


def _render_colour_sketch(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    paper = np.asarray(sample_colour(rng, (0.0, 0.25), (0.85, 1.0)), dtype=np.float32)
    pen = np.asarray(sample_colour(rng, (0.5, 1.0), (0.2, 0.6)), dtype=np.float32)
    return _to_uint8(_sketch_float(scene, rng, pen, paper))


def _render_neon(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    size = scene.size
    image = bank.background(rng, size) * rng.uniform(0.08, 0.25)
    width = rng.uniform(0.03, 0.05) * size
    for item in scene.distractors:
        alpha = rasterize_strokes([item.polygon], (size, size), width * 0.5)
        image = _composite(image, alpha * 0.5, sample_colour(rng, (0.5, 1.0), (0.6, 1.0)))
    for obj in scene.objects:
        colour = np.asarray(sample_colour(rng, (0.6, 1.0), (0.9, 1.0)), dtype=np.float32)
        line = rasterize_strokes(posed_polygons(obj.shape, obj.pose), (size, size), width)
        glow = cv2.GaussianBlur(line, (0, 0), width * 1.2)
        image = image + glow[:, :, None] * colour * 0.9
        image = _composite(image, line, 0.5 + 0.5 * colour)
    return _to_uint8(image)


def _render_mosaic(scene: Scene, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    size = scene.size
    image = _photo_float(scene, rng, bank)
    tiles = int(rng.integers(max(6, size // 5), max(7, size // 3) + 1))
    small = cv2.resize(image, (tiles, tiles), interpolation=cv2.INTER_AREA)
    levels = float(rng.integers(4, 7))
    small = np.round(small * levels) / levels
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    edges = np.linspace(0, size, tiles + 1).round().astype(int)[1:-1]
    grout = np.zeros((size, size), dtype=np.float32)
    grout[edges, :] = 1.0
    grout[:, edges] = 1.0
    return _to_uint8(_composite(image, grout * 0.35, (0.15, 0.15, 0.15)))


Renderer = Callable[[Scene, np.random.Generator, TextureBank], np.ndarray]

#: Style name → renderer ``(scene, rng, bank) -> uint8 (size, size, 3)``.
STYLES: dict[str, Renderer] = {
    "photo": _render_photo,
    "painting": _render_painting,
    "cartoon": _render_cartoon,
    "sketch": _render_sketch,
    "colour_sketch": _render_colour_sketch,
    "neon": _render_neon,
    "mosaic": _render_mosaic,
}


def render_scene(scene: Scene, style: str, rng: np.random.Generator, bank: TextureBank) -> np.ndarray:
    """Render ``scene`` in ``style``: back-to-front compositing ``I ← (1 − α)I + αF`` plus the style's finish.

    Args:
        scene: what to draw.
        style: one of :data:`STYLES`.
        rng: random generator for all appearance choices.
        bank: texture sources for backgrounds and fills.

    Returns:
        uint8 RGB image of shape ``(scene.size, scene.size, 3)``.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
    return STYLES[style](scene, rng, bank)
