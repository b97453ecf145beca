"""ImageNet-C corruptions through the real ``imagecorruptions`` package, made to run on current libraries.

``x̃ = c_{name, s}(x)``: the corruption functions of Hendrycks & Dietterich (2019) as packaged by
``imagecorruptions`` 1.1.2 (Michaelis et al. 2019), applied unchanged. This module only repairs the
package's contact points with today's environment (Python 3.11, NumPy 2, SciPy 1.17, scikit-image 0.26);
the corruption math is never re-derived here. The patches, each applied at the narrowest point
(a name looked up in ``imagecorruptions.corruptions``' own namespace, never a global monkey-patch):

1. ``from pkg_resources import resource_filename`` (import time, used by ``frost`` to find its bundled
   frost photographs). ``pkg_resources`` ships with old setuptools only and is absent here. A minimal
   shim module implementing ``resource_filename`` with :mod:`importlib.resources` is placed in
   :data:`sys.modules` *only if* ``pkg_resources`` cannot be found, and only while the package is being
   imported (the package binds the function at import, so nothing else ever sees the shim).
2. ``from scipy.ndimage.interpolation import map_coordinates`` (import time): still works but emits a
   ``DeprecationWarning`` (namespace removed in SciPy 2.0); the warning is silenced during the import.
3. ``gaussian(..., multichannel=True)`` in ``gaussian_blur`` and ``glass_blur``: the ``multichannel``
   keyword of :func:`skimage.filters.gaussian` was removed in scikit-image 0.21 (replaced by
   ``channel_axis``), so both raise ``TypeError``. The module's ``gaussian`` name is rebound to a wrapper
   translating ``multichannel=True`` to ``channel_axis=-1`` (and ``False`` to ``None``), which is the
   exact meaning the old keyword had.
4. ``np.float_`` in ``plasma_fractal`` (used by ``fog``): the alias was removed in NumPy 2.0
   (``AttributeError``). The module's ``np`` name is rebound to a thin view of NumPy that answers
   ``float_`` with ``np.float64`` (what the alias always meant) and forwards every other attribute.
5. ``sk.util.random_noise`` in ``impulse_noise``: since scikit-image 0.19 it draws from a fresh
   ``np.random.default_rng()`` instead of NumPy's global RNG, so ``impulse_noise`` ignores
   ``np.random.seed`` and is not reproducible. The module's ``sk`` name is rebound to a view of
   scikit-image whose ``util.random_noise`` receives ``rng`` drawn from NumPy's global RNG when the
   caller gave none; every other corruption already draws from the global RNG.

Reference behaviours deliberately kept: ``glass_blur``'s local "swap" copies one pixel over the other (a
NumPy-view quirk of the original code), ``frost`` never picks its sixth frost image, and images must be at
least 32 × 32 pixels.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.resources
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "ALL_CORRUPTIONS",
    "SEVERITIES",
    "MIN_IMAGE_SIDE",
    "corrupt",
    "numpy_global_seed",
    "load_imagecorruptions",
]

#: The 15 ImageNet-C benchmark corruptions, in the standard order (noise, blur, weather, digital).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: The four held-out "validation" corruptions of ImageNet-C.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
#: All 19 corruptions: benchmark ones first, then the extra ones.
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS
#: Valid severity levels.
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: ``imagecorruptions`` rejects images whose height or width is below this.
MIN_IMAGE_SIDE = 32


def _resource_filename(package_or_requirement: str, resource_name: str) -> str:
    """``pkg_resources.resource_filename`` for installed (on-disk) modules, built on importlib.resources.

    Resolves ``resource_name`` (``/``-separated, relative) against the directory of the module or
    package named ``package_or_requirement`` (a module resolves to its containing directory, as
    ``pkg_resources`` does).

    Args:
        package_or_requirement: dotted name of an importable module or package.
        resource_name: relative resource path, e.g. ``"./frost/frost1.png"``.

    Returns:
        The absolute file-system path of the resource.
    """
    module = sys.modules.get(package_or_requirement) or importlib.import_module(package_or_requirement)
    if hasattr(module, "__path__"):
        anchor = module.__name__
    else:
        anchor = module.__name__.rpartition(".")[0] or module.__name__
    base = importlib.resources.files(anchor)
    parts = [part for part in resource_name.replace("\\", "/").split("/") if part not in ("", ".")]
    resource = base.joinpath(*parts)
    if not isinstance(resource, os.PathLike):
        raise FileNotFoundError(
            f"resource {resource_name!r} of {package_or_requirement!r} is not on the file system "
            f"(got {type(resource).__name__}); install the package unzipped"
        )
    return os.fspath(resource)


def _make_pkg_resources_shim() -> types.ModuleType:
    """A stand-in ``pkg_resources`` module exposing only :func:`_resource_filename` as ``resource_filename``."""
    shim = types.ModuleType("pkg_resources", "Minimal pkg_resources shim (resource_filename only).")
    shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
    return shim


def _gaussian_with_multichannel(image: np.ndarray, sigma: Any = 1.0, *args: Any, **kwargs: Any) -> np.ndarray:
    """``skimage.filters.gaussian`` accepting the removed ``multichannel=`` keyword.

    ``multichannel=True`` ↦ ``channel_axis=-1`` (smooth each channel over the spatial axes only),
    ``multichannel=False`` ↦ ``channel_axis=None``.
    """
    from skimage.filters import gaussian

    if "multichannel" in kwargs:
        multichannel = kwargs.pop("multichannel")
        kwargs.setdefault("channel_axis", -1 if multichannel else None)
    return gaussian(image, sigma, *args, **kwargs)


class _NumpyWithRemovedAliases(types.ModuleType):
    """NumPy, plus the NumPy-1 aliases ``imagecorruptions`` still spells (``np.float_`` = ``np.float64``)."""

    _ALIASES = {"float_": np.float64}

    def __init__(self) -> None:
        super().__init__("numpy", np.__doc__)

    def __getattr__(self, name: str) -> Any:
        if name in self._ALIASES:
            return self._ALIASES[name]
        return getattr(np, name)


def _random_noise_from_global_rng(
    image: np.ndarray, mode: str = "gaussian", rng: Any = None, **kwargs: Any
) -> np.ndarray:
    """``skimage.util.random_noise`` whose default ``rng`` is seeded from NumPy's global RNG.

    When ``rng`` is None an integer seed is drawn with ``np.random.randint`` so that
    ``np.random.seed`` controls the noise again, as it did when ``imagecorruptions`` was written.
    """
    import skimage.util

    if rng is None:
        rng = int(np.random.randint(0, 2**31 - 1))
    return skimage.util.random_noise(image, mode=mode, rng=rng, **kwargs)


class _SkimageUtilWithSeededNoise(types.ModuleType):
    """``skimage.util`` with :func:`_random_noise_from_global_rng` as ``random_noise``."""

    def __init__(self) -> None:
        super().__init__("skimage.util")
        self.random_noise = _random_noise_from_global_rng

    def __getattr__(self, name: str) -> Any:
        import skimage.util

        return getattr(skimage.util, name)


class _SkimageWithSeededNoise(types.ModuleType):
    """``skimage`` whose ``util`` is :class:`_SkimageUtilWithSeededNoise`; other attributes forwarded."""

    def __init__(self) -> None:
        super().__init__("skimage")
        self.util = _SkimageUtilWithSeededNoise()

    def __getattr__(self, name: str) -> Any:
        import skimage

        return getattr(skimage, name)


@functools.cache
def load_imagecorruptions() -> types.ModuleType:
    """Import ``imagecorruptions`` and apply the compatibility patches listed in this module's docstring.

    Idempotent (cached). Returns the imported top-level ``imagecorruptions`` package, whose
    ``corruptions`` submodule has had its ``gaussian``, ``np`` and ``sk`` names rebound.

    Returns:
        The patched ``imagecorruptions`` package.

    Raises:
        ImportError: ``imagecorruptions`` is not installed (``pip install imagecorruptions``).
    """
    needs_shim = "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None
    if needs_shim:
        sys.modules["pkg_resources"] = _make_pkg_resources_shim()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"imagecorruptions.*")
            warnings.filterwarnings("ignore", message=r".*scipy\.ndimage\.interpolation.*")
            package = importlib.import_module("imagecorruptions")
    finally:
        if needs_shim:
            sys.modules.pop("pkg_resources", None)
    module = importlib.import_module("imagecorruptions.corruptions")
    module.gaussian = _gaussian_with_multichannel  # type: ignore[attr-defined]
    module.np = _NumpyWithRemovedAliases()  # type: ignore[attr-defined]
    module.sk = _SkimageWithSeededNoise()  # type: ignore[attr-defined]
    return package


@contextlib.contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Run a block with NumPy's global RNG seeded by ``np.random.seed(seed)``; restore its state after.

    ``imagecorruptions`` draws from ``np.random``'s global state; this makes a corruption a pure
    function of ``(image, name, severity, seed)`` without disturbing any other user of the global RNG.

    Args:
        seed: integer in ``[0, 2**32 - 1]``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")
    saved = np.random.get_state()
    np.random.seed(int(seed))
    try:
        yield
    finally:
        np.random.set_state(saved)


def _validate(image: Any, name: Any, severity: Any) -> None:
    """Raise a ValueError/TypeError naming the argument if ``corrupt``'s inputs are malformed."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8 (values 0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (height, width, 3), got {tuple(image.shape)}")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image height and width must be at least {MIN_IMAGE_SIDE}, got {tuple(image.shape[:2])}"
        )
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in ALL_CORRUPTIONS:
        raise ValueError(f"name must be one of {', '.join(ALL_CORRUPTIONS)}; got {name!r}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise TypeError(f"severity must be an int in 1..5, got {type(severity).__name__}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an int in 1..5, got {severity}")


def corrupt(image_uint8_hwc: np.ndarray, name: str, severity: int, *, seed: int | None = None) -> np.ndarray:
    """Apply one ImageNet-C corruption: ``x̃ = uint8(c_{name, severity}(x))``, via ``imagecorruptions``.

    The image is passed to ``imagecorruptions.corrupt`` unchanged (after the compatibility patches of
    :func:`load_imagecorruptions`); random corruptions draw from NumPy's global RNG, seeded with
    ``seed`` inside :func:`numpy_global_seed` when a seed is given (the global state is restored after).

    Args:
        image_uint8_hwc: RGB image, ``uint8`` array of shape ``(H, W, 3)`` with ``H, W >= 32``.
        name: one of :data:`CORRUPTIONS` or :data:`EXTRA_CORRUPTIONS`.
        severity: integer severity in ``1..5``.
        seed: optional seed in ``[0, 2**32 - 1]``; with it the output is a deterministic function of the
            inputs. Without it the current global NumPy RNG state is used (and advanced).

    Returns:
        The corrupted image, ``uint8`` array of the input's shape (a new array; the input is not modified).
    """
    _validate(image_uint8_hwc, name, severity)
    package = load_imagecorruptions()
    image = np.ascontiguousarray(image_uint8_hwc).copy()
    context = numpy_global_seed(seed) if seed is not None else contextlib.nullcontext()
    with context:
        result = package.corrupt(image, severity=int(severity), corruption_name=name)
    result = np.asarray(result)
    if result.shape != image.shape or result.dtype != np.uint8:
        raise RuntimeError(
            f"imagecorruptions returned shape {result.shape} dtype {result.dtype} for {name!r} severity "
            f"{severity}; expected {image.shape} uint8"
        )
    return result

