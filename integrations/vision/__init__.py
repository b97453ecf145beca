"""VARS for vision: token mixers, model families, training and the robustness suite.

Importing this package registers the model families with timm, so that
``timm.create_model("deit_perf", num_classes=10, img_size=64)`` works.
"""

from __future__ import annotations

from .attention_maps import AttentionMapProvider, attention_map, attention_maps
from .checkpoints import convert_original_state_dict, load_checkpoint, load_original_checkpoint, save_checkpoint
from .mixers import available_mixers, build_mixer, register_mixer
from .models import create_model, model_names, register_models

__all__ = [
    "create_model",
    "model_names",
    "register_models",
    "build_mixer",
    "register_mixer",
    "available_mixers",
    "convert_original_state_dict",
    "load_original_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "attention_maps",
    "attention_map",
    "AttentionMapProvider",
]
