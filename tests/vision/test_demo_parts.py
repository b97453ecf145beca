"""Unit tests of the demo suite's parts: shapes and rasterisation, scenes, styles, fixations, VOC conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from integrations.vision.demo.fixations import fixation_density_map, fixation_points_map, sample_fixations
from integrations.vision.demo.scenes import Scene, sample_centred_scene, sample_free_scene, scene_label_map
from integrations.vision.demo.shapes import (
    SHAPE_NAMES,
    ObjectPose,
    object_alpha,
    object_mask,
    pose_points,
    rasterize_strokes,
    shape_keypoints,
)
from integrations.vision.demo.styles import STYLES, render_scene
from integrations.vision.demo.textures import TextureBank
from integrations.vision.demo.voc import VOID_LABEL, label_map_with_void, palette_png, voc_palette


@pytest.fixture(scope="module")
def bank() -> TextureBank:
    return TextureBank()


def test_class_names_are_sorted_and_distinct() -> None:
    assert list(SHAPE_NAMES) == sorted(SHAPE_NAMES)
    assert len(set(SHAPE_NAMES)) == len(SHAPE_NAMES) == 10


@pytest.mark.parametrize(
    ("name", "area_per_r2"),
    [("disk", np.pi), ("ring", np.pi * (1 - 0.58**2)), ("ellipse", np.pi * 0.52), ("square", 4 * 0.8**2)],
)
def test_mask_area_matches_geometry(name: str, area_per_r2: float) -> None:
    radius = 40.0
    mask = object_mask(name, ObjectPose(64.0, 64.0, radius, angle=0.3), (128, 128))
    assert mask.sum() == pytest.approx(area_per_r2 * radius**2, rel=0.03)


def test_ring_has_a_hole_and_pose_moves_the_shape() -> None:
    pose = ObjectPose(30.0, 20.0, 12.0)
    mask = object_mask("ring", pose, (48, 64))
    assert not mask[20, 30] and mask[20, 30 + 10]
    ys, xs = np.nonzero(object_mask("disk", pose, (48, 64)))
    assert xs.mean() == pytest.approx(30 - 0.5, abs=0.2) and ys.mean() == pytest.approx(20 - 0.5, abs=0.2)


def test_aspect_stretches_x() -> None:
    mask = object_mask("disk", ObjectPose(50.0, 50.0, 20.0, aspect=1.5), (100, 100))
    ys, xs = np.nonzero(mask)
    assert (xs.max() - xs.min()) > 1.8 * (ys.max() - ys.min())


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(SHAPE_NAMES),
    cx=st.floats(20, 44),
    cy=st.floats(20, 44),
    radius=st.floats(10, 20),
    angle=st.floats(-np.pi, np.pi),
    aspect=st.floats(0.9, 1.1),
)
def test_keypoints_lie_inside_the_shape(
    name: str, cx: float, cy: float, radius: float, angle: float, aspect: float
) -> None:
    pose = ObjectPose(cx, cy, radius, angle, aspect)
    alpha = object_alpha(name, pose, (64, 64))
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    for x, y in pose_points(shape_keypoints(name), pose):
        assert alpha[int(y), int(x)] > 0.0, (name, x, y)


def test_pose_and_shape_validation() -> None:
    with pytest.raises(ValueError, match="radius"):
        ObjectPose(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="aspect"):
        ObjectPose(0.0, 0.0, 1.0, aspect=-1.0)
    with pytest.raises(ValueError, match="name must be one of"):
        object_mask("blob", ObjectPose(5.0, 5.0, 2.0), (10, 10))
    with pytest.raises(ValueError, match="size"):
        object_mask("disk", ObjectPose(5.0, 5.0, 2.0), (0, 10))
    with pytest.raises(ValueError, match="width"):
        rasterize_strokes([np.zeros((2, 2))], (10, 10), width=0.0)


def test_objects_outside_the_frame_rasterise_to_nothing() -> None:
    assert not object_mask("disk", ObjectPose(-50.0, -50.0, 5.0), (32, 32)).any()


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_renders_an_image_that_shows_the_object(style: str, bank: TextureBank) -> None:
    rng = np.random.default_rng(5)
    scene = sample_centred_scene(rng, label=2, size=48)
    image = render_scene(scene, style, rng, bank)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    mask = scene_label_map(scene) > 0
    grey = image.astype(np.float64).mean(axis=2)
    gradient = np.hypot(*np.gradient(grey))
    band = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=2)
    # the object's outline stands out: more edge energy along it than elsewhere in the image
    assert gradient[band].mean() > 1.3 * gradient[~band].mean()


def test_unknown_style_is_rejected(bank: TextureBank) -> None:
    scene = sample_centred_scene(np.random.default_rng(0), 0, 32)
    with pytest.raises(ValueError, match="style must be one of"):
        render_scene(scene, "watercolour", np.random.default_rng(0), bank)


def test_backgrounds_are_real_textures_that_differ(bank: TextureBank) -> None:
    rng = np.random.default_rng(0)
    backgrounds = [bank.background(rng, 32) for _ in range(6)]
    for b in backgrounds:
        assert b.shape == (32, 32, 3) and b.std() > 0.005  # textured, not flat
    assert all(not np.allclose(a, b) for a, b in zip(backgrounds, backgrounds[1:]))


def test_scene_sampling_is_seeded() -> None:
    a = sample_free_scene(np.random.default_rng(11), 64)
    b = sample_free_scene(np.random.default_rng(11), 64)
    assert [o.pose for o in a.objects] == [o.pose for o in b.objects]
    assert 1 <= len(a.objects) <= 2
    with pytest.raises(ValueError, match="label"):
        sample_centred_scene(np.random.default_rng(0), 10, 64)


def test_later_objects_occlude_earlier_ones() -> None:
    first = sample_centred_scene(np.random.default_rng(1), 2, 64).objects[0]
    second = sample_centred_scene(np.random.default_rng(2), 7, 64).objects[0]
    ids = scene_label_map(Scene(size=64, objects=(first, second)))
    second_mask = object_mask(second.shape, second.pose, (64, 64))
    assert (ids[second_mask] == 2).all()


def test_fixations_concentrate_on_objects() -> None:
    rng = np.random.default_rng(3)
    scene = sample_free_scene(rng, 64)
    points = sample_fixations(rng, scene, n_fixations=200, background_fraction=0.1)
    assert points.shape == (200, 2) and points.min() >= 0 and points.max() < 64
    on_object = (scene_label_map(scene) > 0)[points[:, 0], points[:, 1]].mean()
    assert on_object > 0.7
    density = fixation_density_map(points, 64, sigma=2.5)
    assert density.max() == pytest.approx(1.0) and density.min() >= 0.0
    binary = fixation_points_map(points, 64)
    assert set(np.unique(binary)) <= {0, 255} and (binary > 0).sum() <= 200


def test_fixation_validation() -> None:
    empty = Scene(size=32, objects=())
    with pytest.raises(ValueError, match="at least one object"):
        sample_fixations(np.random.default_rng(0), empty)
    with pytest.raises(ValueError, match="n_fixations"):
        sample_fixations(np.random.default_rng(0), empty, n_fixations=0, background_fraction=1.0)
    with pytest.raises(ValueError, match="sigma"):
        fixation_density_map(np.zeros((1, 2), int), 8, sigma=0.0)


def test_voc_palette_matches_the_standard_colour_map() -> None:
    palette = voc_palette()
    assert palette.shape == (256, 3)
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]  # "person"
    assert palette[VOID_LABEL].tolist() == [224, 224, 192]


def test_void_band_surrounds_objects() -> None:
    ids = np.zeros((20, 20), dtype=np.int32)
    ids[5:15, 5:15] = 1
    labels = label_map_with_void(ids, [7], void_width=1)
    assert labels[10, 10] == 7 and labels[0, 0] == 0
    assert (labels == VOID_LABEL).sum() > 0
    assert set(np.unique(labels)) == {0, 7, VOID_LABEL}
    assert (label_map_with_void(ids, [7], void_width=0) == 7).sum() == 100
    with pytest.raises(ValueError, match="object_labels"):
        label_map_with_void(ids, [255])
    with pytest.raises(ValueError, match="object_labels"):
        label_map_with_void(ids, [])
    image = palette_png(labels)
    assert image.mode == "P" and np.array_equal(np.asarray(image), labels)
