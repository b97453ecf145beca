"""Random demo scenes: labelled objects (class shapes) and unlabelled clutter, as plain data.

A scene is sampled once and can then be rendered in any style (:mod:`.styles`); the ground truth
(class, masks, keypoints) comes from the same description. Objects are drawn in order, so a later object
occludes an earlier one; clutter ("distractors": small random blobs, bars and dots in other colours) is
drawn behind all objects and never counts as foreground.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from .shapes import SHAPE_NAMES, ObjectPose, object_mask, pose_points, shape_keypoints

__all__ = [
    "FILL_PATTERNS",
    "SceneObject",
    "Distractor",
    "Scene",
    "sample_colour",
    "class_hue",
    "sample_centred_scene",
    "sample_free_scene",
    "scene_label_map",
    "scene_keypoints",
]

#: How an object's interior is painted in the photo style.
FILL_PATTERNS: tuple[str, ...] = ("flat", "gradient", "stripes", "checker", "texture")


@dataclass(frozen=True)
class SceneObject:
    """A labelled object: class shape, pose, and its paint.

    Args:
        label: class index into :data:`~.shapes.SHAPE_NAMES`.
        pose: placement of the unit shape.
        colour: main RGB colour in [0, 1].
        secondary: second RGB colour (patterns, shading).
        pattern: one of :data:`FILL_PATTERNS`.
        pattern_angle: pattern direction in radians.
        pattern_frequency: stripe / checker frequency in cycles per object radius.
    """

    label: int
    pose: ObjectPose
    colour: tuple[float, float, float]
    secondary: tuple[float, float, float]
    pattern: str
    pattern_angle: float
    pattern_frequency: float

    @property
    def shape(self) -> str:
        """The class name of this object."""
        return SHAPE_NAMES[self.label]


@dataclass(frozen=True)
class Distractor:
    """Unlabelled clutter: a filled polygon (``kind`` 'blob', 'bar' or 'dot') in pixel coordinates.

    Args:
        kind: 'blob', 'bar' or 'dot'.
        polygon: ``(n, 2)`` pixel (x, y) outline.
        colour: RGB colour in [0, 1].
    """

    kind: str
    polygon: np.ndarray
    colour: tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    """A square scene of side ``size``: objects in drawing order and clutter behind them.

    Args:
        size: side in pixels.
        objects: labelled objects, back to front.
        distractors: clutter, drawn before (behind) every object.
    """

    size: int
    objects: tuple[SceneObject, ...]
    distractors: tuple[Distractor, ...] = field(default_factory=tuple)


def sample_colour(
    rng: np.random.Generator,
    saturation: tuple[float, float] = (0.45, 1.0),
    value: tuple[float, float] = (0.45, 1.0),
) -> tuple[float, float, float]:
    """A random RGB colour from ``hsv(h ~ U(0,1), s ~ U(saturation), v ~ U(value))``.

    Args:
        rng: random generator.
        saturation: range of the HSV saturation.
        value: range of the HSV value.
    """
    h = float(rng.random())
    s = float(rng.uniform(*saturation))
    v = float(rng.uniform(*value))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (float(r), float(g), float(b))


def class_hue(label: int) -> float:
    """The preferred hue of class ``label``: ``h_k = (k + ½) / 10`` (classes evenly spread on the hue circle)."""
    return (label + 0.5) / len(SHAPE_NAMES)


def _sample_object(rng: np.random.Generator, label: int, pose: ObjectPose, colour_prior: float) -> SceneObject:
    if rng.random() < colour_prior:
        hue = (class_hue(label) + rng.normal(0.0, 0.02)) % 1.0
        colour = tuple(float(c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)))
    else:
        colour = sample_colour(rng)
    secondary = sample_colour(rng) if rng.random() < 0.3 else tuple(float(c) * rng.uniform(0.4, 0.7) for c in colour)
    pattern = FILL_PATTERNS[int(rng.integers(len(FILL_PATTERNS)))]
    return SceneObject(
        label=int(label),
        pose=pose,
        colour=colour,
        secondary=secondary,  # type: ignore[arg-type]
        pattern=pattern,
        pattern_angle=float(rng.uniform(0, np.pi)),
        pattern_frequency=float(rng.uniform(1.2, 3.0)),
    )


def _sample_pose(rng: np.random.Generator, cx: float, cy: float, radius: float, max_rotation: float) -> ObjectPose:
    return ObjectPose(
        center_x=float(cx),
        center_y=float(cy),
        radius=float(radius),
        angle=float(rng.uniform(-max_rotation, max_rotation)),
        aspect=float(np.exp(rng.uniform(-0.1, 0.1))),
    )


def _sample_distractors(rng: np.random.Generator, size: int, count: int) -> tuple[Distractor, ...]:
    items = []
    for _ in range(count):
        kind = ("blob", "bar", "dot")[int(rng.integers(3))]
        cx, cy = rng.uniform(0, size, size=2)
        radius = rng.uniform(0.04, 0.1) * size
        if kind == "blob":
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            wobble = 1.0 + sum(
                rng.uniform(-0.25, 0.25) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
            )
            poly = np.stack([cx + radius * wobble * np.cos(t), cy + radius * wobble * np.sin(t)], axis=1)
        elif kind == "bar":
            angle = rng.uniform(0, np.pi)
            half_length, half_width = 1.6 * radius, rng.uniform(0.12, 0.3) * radius
            u = np.array([np.cos(angle), np.sin(angle)])
            v = np.array([-u[1], u[0]])
            corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
            poly = np.array([[cx, cy] + a * half_length * u + b * half_width * v for a, b in corners])
        else:
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            poly = np.stack([cx + 0.5 * radius * np.cos(t), cy + 0.5 * radius * np.sin(t)], axis=1)
        items.append(Distractor(kind=kind, polygon=poly, colour=sample_colour(rng, (0.2, 1.0), (0.2, 1.0))))
    return tuple(items)


def sample_centred_scene(
    rng: np.random.Generator,
    label: int,
    size: int,
    radius_range: tuple[float, float] = (0.26, 0.42),
    center_jitter: float = 0.1,
    distractor_range: tuple[int, int] = (1, 4),
    max_rotation: float = np.pi / 6,
    colour_prior: float = 0.75,
) -> Scene:
    """An object-recognition scene: one object of class ``label`` near the centre, plus clutter.

    The object radius is ``U(radius_range) · size``, its centre ``size/2 + U(±center_jitter) · size`` in
    each axis, its rotation ``U(±max_rotation)`` (objects are roughly upright, as in photographs); the
    number of distractors is uniform in ``distractor_range`` (inclusive). With probability
    ``colour_prior`` the object's hue is its class hue :func:`class_hue` (± a little), otherwise random:
    colour is a partial cue of the class, as texture and colour are in natural images, and renditions
    that drop it (sketches, cartoons) test whether a model also learned the shape.

    Args:
        rng: random generator.
        label: class index into :data:`~.shapes.SHAPE_NAMES`.
        size: image side in pixels.
        radius_range: object radius range, as fractions of ``size``.
        center_jitter: maximal centre offset, as a fraction of ``size``.
        distractor_range: inclusive range of the number of clutter items.
        max_rotation: largest absolute rotation in radians.
        colour_prior: probability that the object takes its class hue.
    """
    if not 0 <= label < len(SHAPE_NAMES):
        raise ValueError(f"label must be in 0..{len(SHAPE_NAMES) - 1}, got {label}")
    radius = rng.uniform(*radius_range) * size
    cx, cy = size / 2 + rng.uniform(-center_jitter, center_jitter, size=2) * size
    obj = _sample_object(rng, label, _sample_pose(rng, cx, cy, radius, max_rotation), colour_prior)
    count = int(rng.integers(distractor_range[0], distractor_range[1] + 1))
    return Scene(size=size, objects=(obj,), distractors=_sample_distractors(rng, size, count))


def sample_free_scene(
    rng: np.random.Generator,
    size: int,
    object_range: tuple[int, int] = (1, 2),
    radius_range: tuple[float, float] = (0.16, 0.3),
    distractor_range: tuple[int, int] = (1, 4),
    num_classes: int = len(SHAPE_NAMES),
    max_rotation: float = np.pi / 6,
    colour_prior: float = 0.75,
) -> Scene:
    """A scene-understanding image: 1–2 objects of random classes anywhere in the frame, plus clutter.

    Objects stay inside the frame (centre at least 0.8 radius from each border) and are placed by
    rejection sampling so that two centres are at least ``0.8 · (r₁ + r₂)`` apart (a little overlap allowed).

    Args:
        rng: random generator.
        size: image side in pixels.
        object_range: inclusive range of the number of labelled objects.
        radius_range: object radius range, as fractions of ``size``.
        distractor_range: inclusive range of the number of clutter items.
        num_classes: draw labels from ``0..num_classes-1``.
        max_rotation: largest absolute rotation in radians.
        colour_prior: probability that an object takes its class hue (see :func:`sample_centred_scene`).
    """
    count = int(rng.integers(object_range[0], object_range[1] + 1))
    objects: list[SceneObject] = []
    for _ in range(count):
        for _attempt in range(20):
            radius = rng.uniform(*radius_range) * size
            margin = 0.8 * radius
            cx, cy = rng.uniform(margin, size - margin, size=2)
            if all(
                np.hypot(cx - o.pose.center_x, cy - o.pose.center_y) >= 0.8 * (radius + o.pose.radius) for o in objects
            ):
                pose = _sample_pose(rng, cx, cy, radius, max_rotation)
                objects.append(_sample_object(rng, int(rng.integers(num_classes)), pose, colour_prior))
                break
    distractors = _sample_distractors(rng, size, int(rng.integers(distractor_range[0], distractor_range[1] + 1)))
    return Scene(size=size, objects=tuple(objects), distractors=distractors)


def scene_label_map(scene: Scene) -> np.ndarray:
    """Per-pixel object id: 0 background, ``k + 1`` where object ``k`` (in drawing order) is visible.

    Later objects overwrite earlier ones (occlusion). Returns an int32 array ``(size, size)``.
    """
    ids = np.zeros((scene.size, scene.size), dtype=np.int32)
    for index, obj in enumerate(scene.objects):
        ids[object_mask(obj.shape, obj.pose, (scene.size, scene.size))] = index + 1
    return ids


def scene_keypoints(scene: Scene) -> list[np.ndarray]:
    """Pixel (x, y) keypoints of each object (centre, corners, tips), one ``(k, 2)`` array per object."""
    return [pose_points(shape_keypoints(obj.shape), obj.pose) for obj in scene.objects]
