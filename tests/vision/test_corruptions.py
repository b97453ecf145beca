"""Tests of the imagecorruptions compatibility layer (integrations.vision.corruptions)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.vision import corruptions as corr
from integrations.vision.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    corrupt,
    load_imagecorruptions,
    numpy_global_seed,
)


def _natural_image(height: int, width: int) -> np.ndarray:
    """A crop of a real photograph (skimage's astronaut), so blurs and colour changes have something to act on."""
    from skimage import data

    image = data.astronaut()
    return np.ascontiguousarray(image[120 : 120 + height, 160 : 160 + width])


def test_names_and_order() -> None:
    assert CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
        "jpeg_compression",
    )
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    package = load_imagecorruptions()
    assert tuple(package.get_corruption_names("common")) == CORRUPTIONS
    assert tuple(package.get_corruption_names("validation")) == EXTRA_CORRUPTIONS


@pytest.mark.parametrize("shape", [(64, 64, 3), (32, 32, 3), (40, 72, 3)])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_and_severity_runs(name: str, shape: tuple[int, int, int]) -> None:
    image = _natural_image(*shape[:2])
    before = image.copy()
    for severity in SEVERITIES:
        out = corrupt(image, name, severity, seed=severity)
        assert out.shape == image.shape
        assert out.dtype == np.uint8
        assert not np.array_equal(out, image), f"{name} severity {severity} left the image unchanged"
    np.testing.assert_array_equal(image, before)  # input untouched


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_seeded_corruption_is_deterministic_and_restores_global_rng(name: str) -> None:
    image = _natural_image(48, 48)
    np.random.seed(1234)
    expected_next = np.random.random()
    np.random.seed(1234)
    first = corrupt(image, name, 3, seed=7)
    second = corrupt(image, name, 3, seed=7)
    np.testing.assert_array_equal(first, second)
    assert np.random.random() == expected_next  # the global stream was not consumed


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "fog", "frost", "spatter"])
def test_different_seeds_give_different_random_corruptions(name: str) -> None:
    image = _natural_image(48, 48)
    assert not np.array_equal(corrupt(image, name, 3, seed=1), corrupt(image, name, 3, seed=2))


@pytest.mark.parametrize(
    "name",
    ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur", "zoom_blur", "brightness",
     "contrast", "pixelate", "jpeg_compression", "gaussian_blur", "speckle_noise", "elastic_transform"],
)
def test_distortion_grows_with_severity_on_average(name: str) -> None:
    image = _natural_image(64, 64).astype(np.float64)
    distortion = []
    for severity in SEVERITIES:
        errors = [
            np.abs(corrupt(image.astype(np.uint8), name, severity, seed=seed).astype(np.float64) - image).mean()
            for seed in range(3)
        ]
        distortion.append(float(np.mean(errors)))
    # monotone up to a small tolerance, and clearly larger at severity 5 than at severity 1
    assert all(b >= a - 0.5 for a, b in zip(distortion, distortion[1:])), distortion
    assert distortion[-1] > distortion[0] * 1.15, distortion


def test_gaussian_blur_matches_channelwise_skimage_gaussian() -> None:
    """Patch 3: multichannel=True means per-channel spatial smoothing (channel_axis=-1)."""
    from skimage.filters import gaussian

    image = _natural_image(40, 40)
    expected = np.uint8(np.clip(gaussian(image / 255.0, sigma=2, channel_axis=-1), 0, 1) * 255)
    np.testing.assert_array_equal(corrupt(image, "gaussian_blur", 2), expected)


def test_fog_uses_float64_plasma() -> None:
    """Patch 4: np.float_ resolves to float64 inside the package."""
    package = load_imagecorruptions()
    np.random.seed(0)
    fractal = package.corruptions.plasma_fractal(mapsize=64, wibbledecay=2)
    assert fractal.dtype == np.float64
    assert fractal.shape == (64, 64)
    assert fractal.min() == 0.0 and fractal.max() == 1.0


def test_impulse_noise_follows_numpy_seed() -> None:
    """Patch 5: random_noise draws its generator from NumPy's global RNG."""
    image = _natural_image(32, 32)
    a = corrupt(image, "impulse_noise", 4, seed=3)
    b = corrupt(image, "impulse_noise", 4, seed=3)
    np.testing.assert_array_equal(a, b)


def test_pkg_resources_shim_is_not_left_in_sys_modules() -> None:
    load_imagecorruptions()
    module = sys.modules.get("pkg_resources")
    assert module is None or hasattr(module, "get_distribution"), "the shim leaked into sys.modules"


def test_resource_filename_shim_finds_frost_images() -> None:
    path = corr._resource_filename("imagecorruptions.corruptions", "./frost/frost1.png")
    assert path.endswith("frost1.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("image", "name", "severity", "error", "match"),
    [
        (np.zeros((64, 64, 3), np.float32), "fog", 1, TypeError, "dtype uint8"),
        ([[0]], "fog", 1, TypeError, "numpy.ndarray"),
        (np.zeros((64, 64), np.uint8), "fog", 1, ValueError, r"\(height, width, 3\)"),
        (np.zeros((64, 64, 4), np.uint8), "fog", 1, ValueError, r"\(height, width, 3\)"),
        (np.zeros((31, 64, 3), np.uint8), "fog", 1, ValueError, "at least 32"),
        (np.zeros((64, 64, 3), np.uint8), "rain", 1, ValueError, "name must be one of"),
        (np.zeros((64, 64, 3), np.uint8), 3, 1, TypeError, "name must be a str"),
        (np.zeros((64, 64, 3), np.uint8), "fog", 0, ValueError, "severity"),
        (np.zeros((64, 64, 3), np.uint8), "fog", 6, ValueError, "severity"),
        (np.zeros((64, 64, 3), np.uint8), "fog", 2.0, TypeError, "severity"),
        (np.zeros((64, 64, 3), np.uint8), "fog", True, TypeError, "severity"),
    ],
)
def test_bad_input_is_rejected(image: object, name: object, severity: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        corrupt(image, name, severity)  # type: ignore[arg-type]


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        with numpy_global_seed(-1):
            pass
    with pytest.raises(TypeError, match="seed"):
        with numpy_global_seed(1.5):  # type: ignore[arg-type]
            pass


@settings(max_examples=10, deadline=None)
@given(
    height=st.integers(32, 56),
    width=st.integers(32, 56),
    name=st.sampled_from(ALL_CORRUPTIONS),
    severity=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_keep_shape_and_dtype(height: int, width: int, name: str, severity: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = corrupt(image, name, severity, seed=seed)
    assert out.shape == (height, width, 3)
    assert out.dtype == np.uint8
