"""Checkpoints: the original VARS code's files (safe loading + key conversion) and our safetensors + JSON format.

Original files are ``torch.save`` dictionaries ``{"model": state_dict, "args": argparse.Namespace, ...}``;
they are read with ``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` beyond tensors
and containers, so no arbitrary code can run while loading them.

Key renames applied by :func:`convert_original_state_dict` (everything else is kept as is):

============================  ==========================  ==============================================
original                      ours                        why
============================  ==========================  ==============================================
``module.<key>``              ``<key>``                   prefix of checkpoints saved from DistributedDataParallel
``transformers.<s>.<rest>``   ``stages.<s>.<rest>``       RVT: the per-stage block lists are called stages
============================  ==========================  ==============================================

The VARS mixers need no rename here: they save and load their ``sparsecode`` parts under the original names
themselves (``rand_matrix``, ``kernel``, ``L``, ``learned_k``, ``learned_lam``, ``learned_L``, ``kernel2``, …; see
:mod:`integrations.vision.mixers.state_aliases` and the VARS mixer modules for every alias).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .models.registry import FAMILIES, create_model, describe_model

__all__ = [
    "ORIGINAL_FAMILIES",
    "load_original_checkpoint",
    "convert_original_state_dict",
    "save_checkpoint",
    "load_checkpoint",
    "config_path",
]

ORIGINAL_FAMILIES: tuple[str, ...] = ("rvt",)
"""Families whose original VARS checkpoints exist (the released code only trains RVT)."""

_PREFIX_RENAMES: tuple[tuple[str, str], ...] = (("transformers.", "stages."),)


def load_original_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by the original VARS code, safely.

    Loading uses ``torch.load(path, map_location="cpu", weights_only=True)`` with exactly one extra
    allowed class, ``argparse.Namespace`` (the training arguments stored under ``"args"``); a file
    containing any other pickled class is rejected with a ``ValueError``.

    Args:
        path: the ``.pth`` file.

    Returns:
        The checkpoint dictionary; its ``"model"`` entry is the original state dict. A file holding a
        bare state dict is returned as ``{"model": state_dict}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError) for disallowed globals
        found = re.search(r"Unsupported global: GLOBAL [\w.]+", str(error))
        reason = found.group(0) if found else str(error).splitlines()[0]
        raise ValueError(
            f"{path} is not a safe original checkpoint (only tensors, containers and argparse.Namespace "
            f"are allowed): {reason}"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} must hold a dict, got {type(checkpoint).__name__}")
    if "model" not in checkpoint:
        if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            return {"model": checkpoint}
        raise ValueError(f"{path} holds neither a 'model' entry nor a bare state dict; keys: {sorted(checkpoint)}")
    if not isinstance(checkpoint["model"], Mapping):
        raise ValueError(f"{path}: checkpoint['model'] must be a state dict, got {type(checkpoint['model']).__name__}")
    return checkpoint


def _rename(key: str) -> str:
    """Apply the documented renames to one original key."""
    if key.startswith("module."):
        key = key[len("module.") :]
    for old, new in _PREFIX_RENAMES:
        if key.startswith(old):
            key = new + key[len(old) :]
    return key


def convert_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], model_name: str, **model_kwargs: Any
) -> dict[str, torch.Tensor]:
    """Map an original VARS state dict to the keys of our model ``model_name`` and check it fits exactly.

    Keys are renamed as listed in the module docstring; the result must have the same key set and
    shapes as ``create_model(model_name, **model_kwargs).state_dict()`` (checked on the meta device,
    without allocating the model), otherwise a ``ValueError`` lists the differences.

    Args:
        state_dict: the original state dict (``checkpoint["model"]``).
        model_name: our model name, e.g. ``"rvt"`` or ``"rvt_perf"`` (``rvt_tiny`` is the released size).
        **model_kwargs: options of the target model (``num_classes``, ``img_size``, …).

    Returns:
        A new state dict with our key names, ready for ``model.load_state_dict``.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of tensors, got {type(state_dict).__name__}")
    family = describe_model(model_name)[0]
    if family not in ORIGINAL_FAMILIES:
        raise ValueError(
            f"original checkpoints exist only for the families {ORIGINAL_FAMILIES}, got {model_name!r} "
            f"(family {family!r}; known families: {sorted(FAMILIES)})"
        )
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = _rename(key)
        if new_key in converted:
            raise ValueError(f"two original keys map to {new_key!r}")
        converted[new_key] = value
    with torch.device("meta"):
        reference = create_model(model_name, **model_kwargs).state_dict()
    missing = sorted(set(reference) - set(converted))
    unexpected = sorted(set(converted) - set(reference))
    mismatched = [
        f"{key}: {tuple(converted[key].shape)} vs ours {tuple(reference[key].shape)}"
        for key in sorted(set(reference) & set(converted))
        if tuple(converted[key].shape) != tuple(reference[key].shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"state dict does not fit {model_name!r}: missing {missing[:10]}{'…' if len(missing) > 10 else ''}, "
            f"unexpected {unexpected[:10]}{'…' if len(unexpected) > 10 else ''}, "
            f"shape mismatches {mismatched[:10]}"
        )
    return converted


def config_path(path: str | os.PathLike[str]) -> Path:
    """The JSON model-config file stored next to the weights file ``path`` (same name, ``.json`` suffix)."""
    return Path(path).with_suffix(".json")


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)`` then move the file onto ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
    """Write ``model``'s state dict to ``path`` (safetensors) and ``config`` to :func:`config_path` (JSON).

    ``config`` is ``{"name": <registered model name>, **create_model keyword arguments}``; it must
    rebuild a model with exactly ``model``'s state-dict keys and shapes (checked before writing).
    Both files are written atomically.

    Args:
        model: the model to save.
        path: weights file, conventionally ``*.safetensors``.
        config: the model configuration.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise ValueError(f"config must be a mapping with a str 'name' entry, got {config!r}")
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"path must not end in .json (that name is used for the config), got {path}")
    try:
        config_text = json.dumps(dict(config), indent=2, sort_keys=True)
    except TypeError as error:
        raise ValueError(f"config must be JSON-serialisable: {error}") from error
    kwargs = {key: value for key, value in config.items() if key != "name"}
    with torch.device("meta"):
        reference = create_model(config["name"], **kwargs).state_dict()
    state = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    differences = sorted(set(reference) ^ set(state)) + [
        key for key in reference if key in state and tuple(reference[key].shape) != tuple(state[key].shape)
    ]
    if differences:
        raise ValueError(f"config {dict(config)} does not describe this model; differing keys: {differences[:10]}")
    _atomic_write(path, lambda temporary: save_file(state, temporary, metadata={"config": config_text}))
    _atomic_write(config_path(path), lambda temporary: Path(temporary).write_text(config_text + "\n"))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model described by the JSON next to ``path`` and load the safetensors weights into it.

    Args:
        path: weights file written by :func:`save_checkpoint`.
        map_location: device to load the weights onto.

    Returns:
        The model, in ``eval()`` mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    json_path = config_path(path)
    if not json_path.is_file():
        raise FileNotFoundError(f"model config not found next to the weights: {json_path}")
    config = json.loads(json_path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ValueError(f"{json_path} must hold an object with a str 'name' entry, got {config!r}")
    kwargs = {key: value for key, value in config.items() if key != "name"}
    model = create_model(config["name"], **kwargs)
    model.load_state_dict(load_file(str(path), device=str(map_location)))
    return model.to(map_location).eval()
