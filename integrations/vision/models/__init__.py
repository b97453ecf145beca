"""Model families DeiT*, RVT*, GFNet*, registered with timm on import (see :mod:`.registry` for the names)."""

from __future__ import annotations

from .deit import DEIT_SIZES, DeiT
from .gfnet import GFNET_SIZES, GFNet, GFNetBlock
from .layers import ConvMlp, ConvStem, ImageClassifier, TokenMlp, TransformerBlock
from .registry import (
    FAMILIES,
    SIZES,
    FamilySpec,
    create_model,
    describe_model,
    model_name,
    model_names,
    register_models,
)
from .rvt import RVT, RVT_SIZES, RVTStage, RVTStem, build_rvt_block, register_rvt_block
from .vars_s_block import VARS_S_Block, build_vars_s_block

__all__ = [
    "DeiT",
    "RVT",
    "GFNet",
    "GFNetBlock",
    "RVTStage",
    "RVTStem",
    "ConvStem",
    "ConvMlp",
    "TokenMlp",
    "TransformerBlock",
    "ImageClassifier",
    "DEIT_SIZES",
    "RVT_SIZES",
    "GFNET_SIZES",
    "FAMILIES",
    "SIZES",
    "FamilySpec",
    "build_rvt_block",
    "register_rvt_block",
    "VARS_S_Block",
    "build_vars_s_block",
    "model_name",
    "model_names",
    "describe_model",
    "register_models",
    "create_model",
]

register_rvt_block("vars_s", build_vars_s_block, overwrite=True)  # the released VARS-S replaces the whole block
register_models()
