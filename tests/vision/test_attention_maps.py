"""Attention maps through forward hooks, for every mixer kind and family."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from integrations.vision import AttentionMapProvider, attention_map, attention_maps, create_model
from integrations.vision.attention_maps import attention_layers


@pytest.mark.parametrize(
    ("name", "heads", "grid"),
    [("deit", 3, 4), ("deit_perf", 3, 4), ("rvt", 12, 2), ("rvt_perf", 12, 2), ("gfnet", 1, 4), ("gfnet_perf", 4, 4)],
)
def test_maps_have_grid_shape_and_are_distributions(name: str, heads: int, grid: int) -> None:
    model = create_model(name, num_classes=5, img_size=64)
    images = torch.randn(2, 3, 64, 64)
    maps = attention_maps(model, images)
    assert maps.shape == (2, heads, grid, grid)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, heads))
    averaged = attention_map(model, images)
    torch.testing.assert_close(averaged, maps.mean(dim=1))


def test_layer_selection_follows_forward_order() -> None:
    model = create_model("rvt_perf", num_classes=5, img_size=64)
    layers = attention_layers(model)
    assert len(layers) == 12 and all(isinstance(layer, AttentionMapProvider) for layer in layers)
    images = torch.randn(1, 3, 64, 64)
    assert attention_maps(model, images, layer=0).shape == (1, 6, 4, 4)
    assert attention_maps(model, images, layer=-1).shape == (1, 12, 2, 2)
    with pytest.raises(ValueError, match=r"layer must be an int in \[-12, 11\]"):
        attention_maps(model, images, layer=12)


def test_map_equals_mixer_definition_on_the_hooked_tokens() -> None:
    """The hook must hand the mixer exactly the tokens it saw: recompute them by hand for DeiT's first block."""
    model = create_model("deit", num_classes=5, img_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.patch_embed(images).flatten(2).transpose(1, 2) + model.pos_embed
        expected = model.blocks[0].attn.attention_map(model.blocks[0].norm1(tokens))
    torch.testing.assert_close(attention_maps(model, images, layer=0), expected.reshape(2, 3, 2, 2))


def test_training_flag_is_restored_and_hooks_removed() -> None:
    model = create_model("deit_perf", num_classes=5, img_size=32).train()
    attention_maps(model, torch.randn(1, 3, 32, 32))
    assert model.training
    assert all(not layer._forward_pre_hooks for layer in attention_layers(model))


def test_models_without_mixers_are_rejected() -> None:
    with pytest.raises(ValueError, match="no mixer implementing attention_map"):
        attention_maps(nn.Sequential(nn.Conv2d(3, 3, 1)), torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="nn.Module"):
        attention_layers("not a model")  # type: ignore[arg-type]
