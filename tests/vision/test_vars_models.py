"""The VARS kinds inside the model families: timm names, grids taken from the model, training passes, maps."""

from __future__ import annotations

import pytest
import timm
import torch

from integrations.vision import attention_maps, create_model  # importing the package registers the timm names
from integrations.vision.mixers import VARS_D, VARS_S, VARS_SD
from integrations.vision.models import VARS_S_Block
from integrations.vision.training.step_size import refresh_step_sizes

FAMILIES = ("deit", "rvt", "gfnet")
KINDS = ("vars_s", "vars_d", "vars_sd")
TINY = [f"{family}_{kind}" for family in FAMILIES for kind in KINDS]


def test_every_family_kind_and_size_is_a_timm_name() -> None:
    for name in TINY:
        for suffix in ("", "_tiny", "_small", "_base"):
            assert timm.is_model(name + suffix), name + suffix


@pytest.mark.parametrize("variant", ["original", "paper"])
def test_variant_passes_through_timm(variant: str) -> None:
    model = timm.create_model("deit_vars_sd", num_classes=10, img_size=64, variant=variant)
    mixer = model.blocks[0].attn
    assert isinstance(mixer, VARS_SD) and mixer.variant == variant
    rvt = timm.create_model("rvt_vars_s", num_classes=10, img_size=64, variant=variant)
    assert rvt.stages[0].blocks[0].attn.variant == variant


def test_static_parts_take_the_grid_from_the_model() -> None:
    deit = create_model("deit_vars_sd", num_classes=10, img_size=64)  # 4 × 4 tokens, 3 heads of 64
    assert tuple(deit.state_dict()["blocks.0.attn.kernel"].shape) == (1, 3, 16, 128)
    gfnet = create_model("gfnet_vars_s", num_classes=10, img_size=96)  # 6 × 6 tokens
    assert tuple(gfnet.state_dict()["blocks.0.mixer.kernel"].shape) == (256, 5, 1, 6, 4, 2)
    rvt = create_model("rvt_vars_s", num_classes=10, img_size=64)  # stage grids 4 × 4 and 2 × 2
    assert isinstance(rvt.stages[0].blocks[0], VARS_S_Block)
    assert tuple(rvt.state_dict()["stages.0.blocks.0.kernel"].shape) == (192, 5, 1, 4, 3, 2)
    assert tuple(rvt.state_dict()["stages.1.blocks.0.kernel"].shape) == (384, 5, 1, 2, 2, 2)
    rvt_sd = create_model("rvt_vars_sd", num_classes=10, img_size=64)
    assert tuple(rvt_sd.state_dict()["stages.1.blocks.0.attn.kernel"].shape) == (1, 12, 4, 64)
    assert isinstance(create_model("gfnet_vars_d", num_classes=10, img_size=64).blocks[0].mixer, VARS_D)
    assert isinstance(create_model("deit_vars_s", num_classes=10, img_size=64).blocks[0].attn, VARS_S)


@pytest.mark.parametrize("name", TINY)
def test_tiny_model_trains_and_runs_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=64).train()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logits = model(images)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.logsumexp(dim=-1).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    mixer_grads = [p.grad for n, p in model.named_parameters() if ".attn." in n or ".mixer." in n or "kernel" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in mixer_grads)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(images)
    assert torch.isfinite(low).all()


@pytest.mark.parametrize("name", ["deit_vars_sd", "rvt_vars_s", "gfnet_vars_d"])
def test_paper_variant_trains_and_runs_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=64, variant="paper").train()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model(images).logsumexp(dim=-1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(images)
    assert torch.isfinite(low).all()


def test_one_model_at_224_trains() -> None:
    model = create_model("deit_vars_d", num_classes=10, img_size=224).train()
    logits = model(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert torch.isfinite(model.blocks[0].attn.sparse.solver.learned_k.grad).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TINY if n != "deit_vars_d"])
def test_tiny_models_at_224_train(name: str) -> None:
    model = create_model(name, num_classes=10, img_size=224).train()
    logits = model(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    logits.sum().backward()
    assert torch.isfinite(logits).all()


def test_refresh_step_sizes_on_the_plain_model_updates_every_vars_s_block_once() -> None:
    model = create_model("rvt_vars_s", num_classes=10, img_size=64)
    blocks = [b for stage in model.stages for b in stage.blocks]
    before = [b.attn.sparse.dictionary.L.clone() for b in blocks]
    for block in blocks:
        block.attn.sparse.dictionary.L.mul_(2.0)
    refresh_step_sizes(model, momentum=0.1)
    for block, initial in zip(blocks, before):  # L0 was the top singular value: 0.9·2·L0 + 0.1·L0 = 1.9·L0
        torch.testing.assert_close(block.attn.sparse.dictionary.L, 1.9 * initial)


@pytest.mark.parametrize(("name", "heads", "grid"), [("deit_vars_d", 3, 4), ("rvt_vars_sd", 12, 2),
                                                     ("gfnet_vars_s", 1, 4), ("rvt_vars_s", 1, 2)])
def test_attention_maps_of_vars_models(name: str, heads: int, grid: int) -> None:
    model = create_model(name, num_classes=10, img_size=64)
    maps = attention_maps(model, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert maps.shape == (2, heads, grid, grid)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, heads))
