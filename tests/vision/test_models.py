"""Model families DeiT*, RVT*, GFNet*: forward/backward, input checks, timm registration."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

import integrations.vision as vision
from integrations.vision.models import DeiT, GFNet, RVT, describe_model, model_name, model_names, register_models
from integrations.vision.models.summary import format_table, measure_model

TINY_MODELS = ["deit", "deit_perf", "rvt", "rvt_perf", "gfnet", "gfnet_self", "gfnet_perf"]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_forward_backward_at_64(name: str) -> None:
    model = timm.create_model(name, num_classes=10, img_size=64, drop_path_rate=0.1)
    model.train()
    images = torch.randn(2, 3, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 10)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_forward_backward_at_224(name: str) -> None:
    model = timm.create_model(name, num_classes=5)
    logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 5)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)



@pytest.mark.parametrize("name", ["deit_perf", "rvt_perf", "gfnet"])
def test_bf16_autocast_gives_finite_logits(name: str) -> None:
    model = timm.create_model(name, num_classes=10, img_size=64).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 64, 64) * 3)
    assert torch.isfinite(logits.float()).all()


@pytest.mark.parametrize("name", ["deit", "rvt_perf", "gfnet"])
def test_wrong_image_size_or_channels_raise_clear_errors(name: str) -> None:
    model = timm.create_model(name, num_classes=10, img_size=64)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 64, 64\).*got \(1, 3, 96, 96\)"):
        model(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"in_chans=3.*got \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="images must have shape"):
        model(torch.randn(3, 64, 64))


def test_in_chans_and_num_classes_options() -> None:
    model = timm.create_model("deit_perf", num_classes=0, img_size=32, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 192)
    model.reset_classifier(4)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="img_size must be divisible by 16"):
        DeiT(img_size=70)
    with pytest.raises(ValueError, match="img_size must be divisible by 16"):
        GFNet(img_size=40)
    with pytest.raises(ValueError, match="in_chans"):
        RVT(in_chans=0)
    with pytest.raises(ValueError, match="drop_path_rate"):
        DeiT(img_size=32, drop_path_rate=1.5)
    with pytest.raises(ValueError, match="available kinds"):
        RVT(img_size=64, attention="vars_nonexistent")
    with pytest.raises(ValueError, match="variant"):
        DeiT(img_size=32, depth=1, variant="fancy")


def test_sizes_follow_the_papers() -> None:
    with torch.device("meta"):
        deit = {size: timm.create_model(model_name("deit", "self", size)) for size in ("tiny", "small", "base")}
        gfnet = timm.create_model("gfnet_small")
        rvt_tiny = timm.create_model("rvt_tiny")
    assert [(m.num_features, len(m.blocks)) for m in deit.values()] == [(192, 12), (384, 12), (768, 12)]
    assert deit["tiny"].blocks[0].attn.num_heads == 3
    assert (gfnet.num_features, len(gfnet.blocks)) == (384, 19)
    assert [len(stage.blocks) for stage in rvt_tiny.stages] == [10, 2]
    assert rvt_tiny.grid_sizes == [(14, 14), (7, 7)]
    # parameter counts of the tiny models at 224 (paper Table 2: DeiT 5.7M, RVT 8.6M, GFNet-Ti 7.5M)
    deit_params = sum(p.numel() for p in deit["tiny"].parameters()) / 1e6
    rvt_params = sum(p.numel() for p in rvt_tiny.parameters()) / 1e6
    assert 5.5 < deit_params < 6.0 and 8.4 < rvt_params < 8.8


def test_registered_names_and_create_model() -> None:
    names = set(model_names())
    for family in ("deit", "rvt"):
        for kind in ("", "_perf"):
            assert {f"{family}{kind}", f"{family}{kind}_tiny", f"{family}{kind}_small", f"{family}{kind}_base"} <= names
    assert {"gfnet", "gfnet_tiny", "gfnet_small", "gfnet_base", "gfnet_perf"} <= names
    assert describe_model("rvt_perf_small") == ("rvt", "perf", "small")
    assert register_models() == ()
    model = timm.create_model("deit_perf", num_classes=10, img_size=64)
    assert isinstance(model, DeiT) and model.attention == "perf"
    assert isinstance(vision.create_model("rvt", num_classes=3, img_size=64), RVT)
    with pytest.raises(ValueError, match="valid names: .*deit_perf"):
        vision.create_model("deit_nonexistent")
    with pytest.raises(ValueError, match="fixes attention"):
        vision.create_model("deit_perf", attention="self", img_size=32)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("rvt", pretrained=True)


def test_perf_blocks_get_distinct_seeded_projections() -> None:
    first = timm.create_model("deit_perf", img_size=32, seed=1)
    second = timm.create_model("deit_perf", img_size=32, seed=1)
    matrices = [block.attn.rand_matrix for block in first.blocks]
    assert not torch.equal(matrices[0], matrices[1])
    assert all(torch.equal(a.attn.rand_matrix, b.attn.rand_matrix) for a, b in zip(first.blocks, second.blocks))


def test_registering_a_new_mixer_kind_adds_model_names() -> None:
    """In a fresh interpreter (the registries are process-wide): a name taken by a foreign timm model is
    left alone with a warning; registering a mixer kind and an RVT block builder, then re-running
    register_models, publishes and builds the new names."""
    script = """
import warnings
import timm, torch
from torch import nn

def rvt_tiny(pretrained=False, **kwargs):  # a foreign model already holding one of our names
    return nn.Identity()

rvt_tiny.__module__ = "foreign_models"
import types, sys
sys.modules["foreign_models"] = types.ModuleType("foreign_models")
timm.models.register_model(rvt_tiny)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import integrations.vision as vision
assert any("rvt_tiny" in str(w.message) for w in caught), [str(w.message) for w in caught]
assert isinstance(timm.create_model("rvt_tiny"), nn.Identity)
assert type(vision.create_model("rvt_tiny", img_size=64)).__name__ == "RVT"
from integrations.vision.models import register_rvt_block

def build_toy(spec):
    return nn.Linear(spec.dim, spec.dim)

class ToyBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
    def forward(self, x):
        return x * self.scale

vision.register_mixer("toy", build_toy)
register_rvt_block("toy", lambda kind, dim, num_heads, grid_size, **kw: ToyBlock(dim))
added = vision.register_models()
assert set(added) == {f"{f}_toy{s}" for f in ("deit", "rvt", "gfnet") for s in ("", "_tiny", "_small", "_base")}, added
assert vision.register_models() == ()
model = timm.create_model("deit_toy", img_size=32, num_classes=2)
assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
rvt = timm.create_model("rvt_toy_small", img_size=64, num_classes=2)
assert all(type(block).__name__ == "ToyBlock" for block in rvt.stages[0].blocks)
assert rvt(torch.randn(1, 3, 64, 64)).shape == (1, 2)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_summary_counts_parameters_and_flops() -> None:
    cost = measure_model("deit", img_size=32)
    model = vision.create_model("deit", img_size=32)
    assert cost.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    # 12 blocks × 4 tokens × (qkv 3C² + proj C² + MLP 8C²) multiply-accumulates is a lower bound
    assert cost.gmacs * 1e9 > 12 * 4 * 12 * 192**2 and cost.gflops == pytest.approx(2 * cost.gmacs)
    assert "| deit |" in format_table([cost])
