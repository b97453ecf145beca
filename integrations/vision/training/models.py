"""Build any timm-registered model by name, and load initial weights from a file."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["build_model", "load_initial_weights", "register_project_models"]


def register_project_models() -> bool:
    """Import ``integrations.vision`` (which registers the project's models with timm).

    Returns ``False`` (and the stock timm models stay usable) when that import fails.
    """
    try:
        importlib.import_module("integrations.vision")
    except Exception:  # the model package may be absent or mid-edit; stock timm models still work
        return False
    return True


def build_model(
    name: str,
    num_classes: int,
    img_size: int | None = None,
    drop_path: float = 0.0,
    **model_kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, num_classes=..., img_size=..., drop_path_rate=..., **model_kwargs)``, untrained.

    ``img_size`` is passed only to models that accept it (ViT-like); ``drop_path_rate`` only when positive.

    Args:
        name: A timm-registered model name (project models are registered first when importable).
        num_classes: Size of the classifier head.
        img_size: Input side, for models whose token grid depends on it.
        drop_path: Stochastic depth rate.
        **model_kwargs: Further constructor arguments.
    """
    import timm

    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty model name, got {name!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    register_project_models()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ValueError(f"model {name!r} is not registered with timm; similar names: {close}")
    kwargs: dict[str, Any] = {"num_classes": num_classes, **model_kwargs}
    if drop_path > 0:
        kwargs["drop_path_rate"] = drop_path
    if img_size is not None and "img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=False, img_size=img_size, **kwargs)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
    return timm.create_model(name, pretrained=False, **kwargs)


def load_initial_weights(model: nn.Module, path: Path | str) -> list[str]:
    """Initialise ``model`` from a safetensors or torch file, skipping tensors whose shape differs (e.g. the head).

    Torch files are read with ``torch.load(..., weights_only=True)``; a ``"model"``, ``"state_dict"`` or
    ``"model_ema"`` entry is used when present. Returns the names of the model's tensors left untouched.

    Args:
        model: Model to initialise.
        path: Weights file (``.safetensors``, ``.pt``, ``.pth``...).
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"init weights path must be an existing file, got {str(file)!r}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f"{str(file)!r} does not hold a state dict")
    own = model.state_dict()
    usable = {k.removeprefix("module."): v for k, v in state.items()}
    usable = {k: v for k, v in usable.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"no tensor of {str(file)!r} fits the model (names or shapes all differ)")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
