"""Golden vectors of the released VARS code (commit 651eb51): VARS-D, VARS-SD attention, VARS-S block, rvt_tiny.

The files in tests/data/golden/ were copied from the project's golden set (float32 CPU run of the original code with
``lam=0.3, rand_feat_dim_ratio=2, num_step=5``; every parameter perturbed and rounded to float16 precision; eval mode).
Our "original" mixers, built from sparsecode parts, load the original state dicts unchanged (same keys and shapes).

At the golden λ = 3.5 every sparse code of the VARS-S golden input is zero (the block's output then depends only on
its norms, projection and MLP), so the VARS-S sparse path is also checked at λ = 0.05 against a plain-torch reference
of the released algorithm (``_reference_vars_s_block``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from integrations.vision import convert_original_state_dict, create_model
from integrations.vision.mixers import VARS_D, VARS_SD
from integrations.vision.models import VARS_S_Block
from sparsecode import SmoothSoftThreshold, SoftThreshold

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
BLOCK_TOLERANCE = 1e-4
MODEL_TOLERANCE = 1e-3


def _manifest(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in state.items()}


def _golden_module(name: str) -> nn.Module:
    if name == "vars_d_attention":
        return VARS_D(192, 6, variant="original", qkv_bias=True)
    if name == "vars_sd_attention":
        return VARS_SD(192, 6, (14, 14), variant="original", qkv_bias=True)
    return VARS_S_Block(192, (14, 14), variant="original")


def _max_error(module: nn.Module, name: str, mutate: Callable[[nn.Module], None] | None = None) -> float:
    weights = load_file(GOLDEN / f"{name}_weights.safetensors")
    io = load_file(GOLDEN / f"{name}_io.safetensors")
    module.load_state_dict(weights)  # strict: the original keys and shapes
    if mutate is not None:
        mutate(module)
    module.eval()
    with torch.no_grad():
        output = module(io["input"])
    return (output - io["output"]).abs().max().item()


@pytest.mark.parametrize("name", ["vars_d_attention", "vars_sd_attention", "vars_s_block"])
def test_state_dict_keys_and_shapes_are_the_original_ones(name: str) -> None:
    expected = _manifest("block_manifest.json")[name]
    assert _shapes(load_file(GOLDEN / f"{name}_weights.safetensors")) == expected
    assert _shapes(_golden_module(name).state_dict()) == expected


@pytest.mark.parametrize("name", ["vars_d_attention", "vars_sd_attention", "vars_s_block"])
def test_block_reproduces_the_original_output(name: str) -> None:
    assert _max_error(_golden_module(name), name) <= BLOCK_TOLERANCE


def _smooth_to_plain_threshold(module: nn.Module) -> None:
    assert isinstance(module.sparse.threshold, SmoothSoftThreshold)
    module.sparse.threshold = SoftThreshold(0.3)


def _drop_atom_normalisation(module: nn.Module) -> None:
    assert module.sparse.dictionary.normalize_atoms
    module.sparse.dictionary.normalize_atoms = False


def _one_step_less(module: nn.Module) -> None:
    module.sparse.solver.max_iter -= 1


@pytest.mark.parametrize("name", ["vars_d_attention", "vars_sd_attention"])
@pytest.mark.parametrize("mutate", [_smooth_to_plain_threshold, _drop_atom_normalisation, _one_step_less])
def test_golden_comparison_detects_a_changed_vars_d_computation(name: str, mutate: Callable) -> None:
    """Dropping the GELU, the normalisation over tokens or a step must break the agreement."""
    assert _max_error(_golden_module(name), name, mutate) > 10 * BLOCK_TOLERANCE


def _soft(z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return torch.sign(z) * torch.relu(z.abs() - t)


def _reference_vars_s_block(block: VARS_S_Block, weights: dict[str, torch.Tensor], x: torch.Tensor,
                            lam: float) -> torch.Tensor:
    """The released VARS-S block written out in plain torch (eval mode), independent of sparsecode.

    v = x W_vᵀ + b_v; per channel c and atom a, b_ca = F⁻¹(K_ca · F v_c); u = S_λ(b); three times
    u ← S_{λ/L_c}(u − (G u − b)/L_c) with (G u)_a = F⁻¹(Σ_b K_a conj(K_b) F u_b); r_c = F⁻¹(Σ_a conj(K_ca) F u_ca);
    s_c = F⁻¹(K2_c · F r_c); y = x + proj(BN1(s)); out = y + MLP(BN2(y)).
    """
    batch, tokens, channels = x.shape
    h, w = block.attn.grid_size
    kernel = torch.view_as_complex(weights["kernel"])[:, :, 0]  # (C, A, h, w//2+1)
    kernel2 = torch.view_as_complex(weights["kernel2"])[:, 0, 0]  # (C, h, w//2+1)

    def fft(t: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(t, norm="ortho")

    def ifft(t: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(t, s=(h, w), norm="ortho")

    v = (x @ weights["v.weight"].T + weights["v.bias"]).transpose(1, 2).reshape(batch, channels, h, w)
    b = ifft(kernel[None] * fft(v)[:, :, None])  # (B, C, A, h, w)
    gram = kernel[:, :, None] * kernel.conj()[:, None, :]  # (C, A, A, h, w//2+1)
    L = weights["L"].reshape(1, channels, 1, 1, 1)
    u = _soft(b, lam)
    for _ in range(3):
        gu = ifft((gram[None] * fft(u)[:, :, None]).sum(dim=3))
        u = _soft(u - (gu - b) / L, lam / L)
    r = ifft((kernel.conj()[None] * fft(u)).sum(dim=2))  # (B, C, h, w)
    s = ifft(kernel2[None] * fft(r)).reshape(batch, channels, tokens).transpose(1, 2)
    bn = {k: weights[f"norm1.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    s = (s - bn["running_mean"]) / torch.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
    y = x + s @ weights["proj.weight"].T + weights["proj.bias"]
    return y + block.mlp(block.norm2(y))


def _one_step_less_s(block: nn.Module) -> None:
    block.attn.sparse.solver.max_iter -= 1


def _exact_gram(block: nn.Module) -> None:
    block.attn.sparse.dictionary.gram_mode = "exact"


def _start_from_the_encoding(block: nn.Module) -> None:
    block.attn.sparse.solver.init = "encode"


def _drop_norm1(block: nn.Module) -> None:
    block.attn.norm = nn.Identity()


def _vars_s_error_with_active_codes(mutate: Callable[[nn.Module], None] | None = None) -> float:
    """At the golden λ = 3.5 every code of the golden input is zero, so the sparse path is checked at λ = 0.05
    on 5× the golden input (most codes active) against the plain-torch reference."""
    lam = 0.05
    weights = load_file(GOLDEN / "vars_s_block_weights.safetensors")
    x = 5.0 * load_file(GOLDEN / "vars_s_block_io.safetensors")["input"]
    block = VARS_S_Block(192, (14, 14), variant="original", lam=lam)
    block.load_state_dict(weights)
    block.eval()
    with torch.no_grad():
        code = block.attn.sparse.solve(block.attn.v(x).transpose(1, 2)).code
        assert (code != 0).float().mean().item() > 0.5
        expected = _reference_vars_s_block(block, weights, x, lam)
        if mutate is not None:
            mutate(block)
        return (block(x) - expected).abs().max().item()


def test_vars_s_sparse_path_matches_the_reference_with_active_codes() -> None:
    assert _vars_s_error_with_active_codes() <= BLOCK_TOLERANCE


@pytest.mark.parametrize("mutate", [_exact_gram, _start_from_the_encoding, _drop_norm1, _one_step_less_s])
def test_vars_s_comparison_detects_a_changed_computation(mutate: Callable) -> None:
    assert _vars_s_error_with_active_codes(mutate) > 10 * BLOCK_TOLERANCE


@pytest.mark.parametrize("kind", ["vars_s", "vars_d", "vars_sd"])
def test_converted_rvt_tiny_keys_and_shapes_match_the_manifest(kind: str) -> None:
    manifest = _manifest("rvt_tiny_state_dict_manifest.json")[kind]
    original = {
        key: torch.zeros(shape, dtype=torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
        for key, shape in manifest.items()
    }
    converted = convert_original_state_dict(original, f"rvt_{kind}")
    assert len(converted) == len(manifest)
    with torch.device("meta"):
        ours = create_model(f"rvt_{kind}", variant="original").state_dict()
    assert _shapes(converted) == _shapes(ours)


@pytest.mark.parametrize("kind", ["vars_d", "vars_sd"])
def test_rvt_tiny_reproduces_the_original_logits(kind: str) -> None:
    weights = load_file(GOLDEN / f"rvt_tiny_{kind}_weights_fp16.safetensors")
    io = load_file(GOLDEN / f"rvt_tiny_{kind}_io.safetensors")
    state = {key: value.float() if value.is_floating_point() else value for key, value in weights.items()}
    assert _shapes(state) == _manifest("rvt_tiny_state_dict_manifest.json")[kind]
    model = create_model(f"rvt_{kind}", variant="original")
    model.load_state_dict(convert_original_state_dict(state, f"rvt_{kind}"))
    model.eval()
    with torch.no_grad():
        logits = model(io["input"])
    assert logits.shape == io["logits"].shape == (2, 1000)
    assert (logits - io["logits"]).abs().max().item() <= MODEL_TOLERANCE
