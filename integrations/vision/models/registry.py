"""Model names: one timm entry point per family × mixer kind × size, and ``create_model``.

Naming: ``<family>`` for the family's default mixer (``deit``/``rvt``: softmax attention, ``gfnet``:
the global filter), ``<family>_<kind>`` otherwise (``deit_perf``, ``rvt_vars_sd``, ``gfnet_perf``);
a ``_tiny`` / ``_small`` / ``_base`` suffix picks the size, and no suffix means tiny.

After adding a mixer kind with :func:`integrations.vision.mixers.register_mixer`, call
:func:`register_models` again: it registers the names of the new kind and leaves existing ones alone.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import timm
from torch import nn

from ..mixers import available_mixers
from . import entrypoints
from .deit import DEIT_SIZES, DeiT
from .gfnet import GFNET_SIZES, GFNet
from .layers import ImageClassifier
from .rvt import RVT_SIZES, RVT

__all__ = [
    "FamilySpec",
    "FAMILIES",
    "SIZES",
    "model_name",
    "register_models",
    "model_names",
    "describe_model",
    "create_model",
]

SIZES: tuple[str, ...] = ("tiny", "small", "base")


@dataclass(frozen=True)
class FamilySpec:
    """What a model family needs to be published under timm names.

    Args:
        model_class: the family's model class.
        sizes: size name → constructor arguments fixing its width / depth / heads.
        default_attention: the mixer kind named by the bare family name.
        excluded_kinds: mixer kinds not published for this family.
    """

    model_class: type[ImageClassifier]
    sizes: Mapping[str, Mapping[str, Any]]
    default_attention: str
    excluded_kinds: frozenset[str] = frozenset()


FAMILIES: dict[str, FamilySpec] = {
    "deit": FamilySpec(DeiT, DEIT_SIZES, "self", frozenset({"gfnet_filter"})),
    "rvt": FamilySpec(RVT, RVT_SIZES, "self", frozenset({"gfnet_filter"})),
    "gfnet": FamilySpec(GFNet, GFNET_SIZES, "gfnet_filter"),
}

_REGISTERED: dict[str, tuple[str, str, str]] = {}
_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def _is_ours_in_timm(name: str) -> bool:
    """Whether timm's entry point ``name`` is one of ours (possibly from before a module reload)."""
    return timm.is_model(name) and timm.models.model_entrypoint(name).__module__ == entrypoints.__name__


def model_name(family: str, attention: str, size: str = "tiny", short: bool = True) -> str:
    """The timm name of ``family`` with mixer ``attention`` and ``size``.

    Args:
        family: ``"deit"``, ``"rvt"`` or ``"gfnet"``.
        attention: mixer kind.
        size: ``"tiny"``, ``"small"`` or ``"base"``.
        short: for tiny, return the name without the ``_tiny`` suffix.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    base = family if attention == FAMILIES[family].default_attention else f"{family}_{attention}"
    return base if (short and size == "tiny") else f"{base}_{size}"


def _make_entrypoint(name: str, family: str, attention: str, size: str) -> Callable[..., nn.Module]:
    """Build the timm entry point ``name`` for one family / mixer / size."""
    spec = FAMILIES[family]

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        if pretrained:
            raise ValueError(
                f"{name}: no pretrained weights are hosted; load released VARS checkpoints with "
                "integrations.vision.load_original_checkpoint + convert_original_state_dict"
            )
        if kwargs.get("attention", attention) != attention:
            raise ValueError(f"{name} fixes attention={attention!r}; got attention={kwargs['attention']!r}")
        kwargs["attention"] = attention
        return spec.model_class(**{**spec.sizes[size], **kwargs})

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__module__ = entrypoints.__name__
    entrypoint.__doc__ = (
        f"{spec.model_class.__name__} ({size}) with the {attention!r} mixer; keyword arguments go to "
        f"{spec.model_class.__module__}.{spec.model_class.__name__}."
    )
    return entrypoint


def register_models() -> tuple[str, ...]:
    """Register with timm every family × available mixer kind × size not registered yet (idempotent).

    A name timm already uses for a different model is not overwritten (a warning says so); our
    :func:`create_model` still builds ours under that name.

    Returns:
        The names newly registered with timm by this call (empty when nothing was new).
    """
    added: list[str] = []
    for family, spec in FAMILIES.items():
        for attention in available_mixers():
            if attention in spec.excluded_kinds:
                continue
            for size in SIZES:
                names = [model_name(family, attention, size, short=False)]
                if size == "tiny":
                    names.insert(0, model_name(family, attention, size, short=True))
                for name in names:
                    if name in _REGISTERED:
                        continue
                    function = _make_entrypoint(name, family, attention, size)
                    setattr(sys.modules[entrypoints.__name__], name, function)
                    _REGISTERED[name] = (family, attention, size)
                    _ENTRYPOINTS[name] = function
                    if not timm.is_model(name):
                        timm.models.register_model(function)
                        added.append(name)
                    elif not _is_ours_in_timm(name):
                        entrypoints.__all__.append(name)
                        warnings.warn(
                            f"timm already has a different model named {name!r}; it is left in place, and "
                            f"integrations.vision.create_model({name!r}) builds ours",
                            stacklevel=2,
                        )
    return tuple(added)


def model_names() -> tuple[str, ...]:
    """Sorted names of all models registered by :func:`register_models`."""
    return tuple(sorted(_REGISTERED))


def describe_model(name: str) -> tuple[str, str, str]:
    """``(family, attention, size)`` of the registered model ``name``, e.g. ``("rvt", "perf", "tiny")``."""
    if name not in _REGISTERED:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(model_names())}")
    return _REGISTERED[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` through ``timm.create_model(name, **kwargs)``.

    Args:
        name: one of :func:`model_names` (e.g. ``"deit_perf"``, ``"rvt_small"``).
        **kwargs: constructor options (``num_classes``, ``img_size``, ``in_chans``, ``drop_path_rate``,
            ``variant``, …).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    register_models()
    if name not in _REGISTERED:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(model_names())}")
    if _is_ours_in_timm(name):
        return timm.create_model(name, **kwargs)
    return _ENTRYPOINTS[name](**{key: value for key, value in kwargs.items() if value is not None})
