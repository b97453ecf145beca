"""Golden vectors of the original VARS code (commit 651eb51): softmax block, Performer attention, rvt_tiny keys.

The files in tests/data/golden/ were copied from the project's golden set (see its README: float32 CPU run
of the original code, weights perturbed and rounded to float16 precision, eval mode).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from integrations.vision import convert_original_state_dict, create_model
from integrations.vision.mixers import PerformerAttention
from integrations.vision.models import build_rvt_block

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TOLERANCE = 1e-4


def _manifest(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def test_rvt_self_attention_block_matches_original() -> None:
    weights = load_file(GOLDEN / "self_attention_block_weights.safetensors")
    io = load_file(GOLDEN / "self_attention_block_io.safetensors")
    assert {k: list(v.shape) for k, v in weights.items()} == _manifest("block_manifest.json")["self_attention_block"]
    block = build_rvt_block(
        "self", 192, 6, (14, 14), mlp_ratio=4.0, drop=0.0, attn_drop=0.0, drop_path=0.0, variant="original", seed=0
    ).eval()
    block.load_state_dict(weights)
    with torch.no_grad():
        output = block(io["input"])
    assert (output - io["output"]).abs().max().item() <= TOLERANCE


def test_performer_attention_matches_original() -> None:
    weights = load_file(GOLDEN / "performer_attention_weights.safetensors")
    io = load_file(GOLDEN / "performer_attention_io.safetensors")
    assert {k: list(v.shape) for k, v in weights.items()} == _manifest("block_manifest.json")["performer_attention"]
    attention = PerformerAttention(192, 6, qkv_bias=True).eval()
    attention.load_state_dict(weights)
    with torch.no_grad():
        output = attention(io["input"])
    assert (output - io["output"]).abs().max().item() <= TOLERANCE
    # the quadratic form (used with attention dropout) gives the same numbers
    attention.train()
    attention.attn_drop_p = 0.5
    attention.attn_drop.p = 0.0
    with torch.no_grad():
        quadratic = attention(io["input"])
    assert (quadratic - io["output"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("manifest_kind", "model_name"), [("self-att", "rvt"), ("perf", "rvt_perf")])
def test_converted_rvt_tiny_keys_and_shapes_match_manifest(manifest_kind: str, model_name: str) -> None:
    manifest = _manifest("rvt_tiny_state_dict_manifest.json")[manifest_kind]
    original = {
        key: torch.zeros(shape, dtype=torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
        for key, shape in manifest.items()
    }
    converted = convert_original_state_dict(original, model_name)
    ours = create_model(model_name).state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert len(converted) == len(manifest)
    create_model(model_name).load_state_dict(converted)  # strict
