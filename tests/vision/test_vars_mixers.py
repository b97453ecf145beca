"""VARS-S / VARS-D / VARS-SD mixers: assembled from sparsecode parts, the two configurations, state dicts, maps."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from integrations.vision.mixers import VARS_D, VARS_S, VARS_SD, build_mixer
from integrations.vision.mixers.state_aliases import alias_state_dict_keys
from integrations.vision.mixers.vars_config import VARS_D_CONFIGS, VARS_S_CONFIGS, solve_config
from integrations.vision.models import VARS_S_Block
from integrations.vision.training.step_size import refresh_step_sizes
from sparsecode import (
    ISTA,
    ConcatDictionary,
    FFTConvDictionary,
    LearnedISTA,
    LinearDictionary,
    PerformerDictionary,
    SmoothSoftThreshold,
    SoftThreshold,
    SparseReconstruction,
    kkt_residual,
    objective,
)


def _tokens(batch: int, tokens: int, dim: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(batch, tokens, dim, generator=torch.Generator().manual_seed(seed))


# --- assembled from sparsecode parts --------------------------------------------------------------------------------


def test_original_vars_d_is_built_from_library_parts() -> None:
    mixer = VARS_D(32, 2, variant="original")
    assert isinstance(mixer.sparse, SparseReconstruction)
    assert isinstance(mixer.sparse.dictionary, PerformerDictionary)
    assert mixer.sparse.dictionary.normalize_input and mixer.sparse.dictionary.normalize_atoms
    assert isinstance(mixer.sparse.solver, LearnedISTA) and mixer.sparse.solver.max_iter == 5
    assert mixer.sparse.solver.lipschitz_mode == "row_sum_plus_one"
    assert isinstance(mixer.sparse.threshold, SmoothSoftThreshold)
    assert mixer.sparse.threshold.lam.item() == pytest.approx(0.3)
    assert mixer.num_features == 2 * 16


def test_paper_vars_d_is_plain_ista_from_the_encoding() -> None:
    mixer = VARS_D(32, 2, variant="paper")
    solver = mixer.sparse.solver
    assert type(solver) is ISTA and solver.max_iter == 3 and solver.init == "encode"
    assert type(mixer.sparse.threshold) is SoftThreshold
    assert mixer.sparse.threshold.lam.item() == pytest.approx(0.3)
    assert mixer.sparse.dictionary.lipschitz_mode == "perron"
    assert not any(key.startswith("learned") or key == "L" for key in mixer.state_dict())


def test_vars_sd_concatenates_then_normalises() -> None:
    mixer = VARS_SD(32, 2, (3, 4), variant="original")
    dictionary = mixer.sparse.dictionary
    assert isinstance(dictionary, ConcatDictionary) and dictionary.normalize_atoms
    features, static = dictionary.parts
    assert isinstance(features, PerformerDictionary) and not features.normalize_atoms
    assert isinstance(static, LinearDictionary) and tuple(static.weight.shape) == (2, 12, 32)
    assert mixer.sparse.solver.n_atoms == 64
    q = torch.randn(2, 2, 12, 16)
    atoms = dictionary.bind(q).weight
    torch.testing.assert_close(atoms.norm(dim=-2), torch.ones(2, 2, 64))


def test_vars_s_uses_the_fft_dictionary_and_its_running_bound() -> None:
    mixer = VARS_S(8, (4, 4), variant="original")
    dictionary = mixer.sparse.dictionary
    assert isinstance(dictionary, FFTConvDictionary)
    assert dictionary.atoms_per_channel == 5 and dictionary.gram_mode == "pointwise"
    assert dictionary.lipschitz_mode == "running"
    assert type(mixer.sparse.solver) is ISTA and mixer.sparse.solver.init == "prox_encode"
    assert mixer.sparse.solver.max_iter == 3 and mixer.sparse.threshold.lam.item() == pytest.approx(3.5)
    paper = VARS_S(8, (4, 4), variant="paper")
    assert paper.sparse.dictionary.gram_mode == "exact" and paper.sparse.dictionary.lipschitz_mode == "exact"
    assert paper.sparse.solver.init == "encode" and paper.sparse.threshold.lam.item() == pytest.approx(0.3)


def test_initial_fft_atoms_have_unit_mean_power_and_kernel_norm_records_it() -> None:
    mixer = VARS_S(6, (5, 4), seed=3)
    kernel = mixer.sparse.dictionary.kernel.detach()
    power = kernel.pow(2).sum(dim=-1).sum(dim=(2, 3, 4)) * 2 / 20
    torch.testing.assert_close(power, torch.ones(6, 5))
    assert mixer.state_dict()["kernel_norm"].item() == pytest.approx(1.0)


# --- state dicts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["original", "paper"])
def test_state_dict_round_trip_reproduces_the_outputs(variant: str) -> None:
    for make in (lambda s: VARS_D(24, 3, variant=variant, seed=s, qkv_bias=True),
                 lambda s: VARS_SD(24, 3, (2, 3), variant=variant, seed=s),
                 lambda s: VARS_S(24, (2, 3), variant=variant, seed=s)):
        source, target = make(1).eval(), make(2).eval()
        state = source.state_dict()
        assert not any("lam_param" in key or key.startswith("sparse.") for key in state)
        target.load_state_dict(state)
        x = _tokens(2, 6, 24, scale=3.0)
        with torch.no_grad():
            torch.testing.assert_close(target(x), source(x))


def test_original_keys_and_public_shapes() -> None:
    d = VARS_D(24, 3, qkv_bias=True).state_dict()
    assert {k: tuple(v.shape) for k, v in d.items()} == {
        "rand_matrix": (3, 8, 16), "L": (3,), "learned_k": (16, 16), "learned_lam": (1,), "learned_L": (1,),
        "qkv.weight": (48, 24), "qkv.bias": (48,), "proj.weight": (24, 24), "proj.bias": (24,),
    }
    assert torch.equal(d["L"], torch.full((3,), 25.0))
    sd = VARS_SD(24, 3, (2, 3)).state_dict()
    assert tuple(sd["kernel"].shape) == (1, 3, 6, 16) and tuple(sd["learned_k"].shape) == (32, 32)
    s = VARS_S(8, (4, 6)).state_dict()
    assert set(s) == {"kernel", "L", "kernel2", "kernel_norm", "v.weight", "proj.weight", "proj.bias"}
    assert tuple(s["kernel"].shape) == (8, 5, 1, 4, 4, 2) and tuple(s["kernel2"].shape) == (8, 1, 1, 4, 4, 2)


def test_loading_rejects_wrong_keys_and_shapes() -> None:
    mixer = VARS_D(24, 3)
    state = mixer.state_dict()
    with pytest.raises(RuntimeError, match="rand_matrix"):
        mixer.load_state_dict({k: v for k, v in state.items() if k != "rand_matrix"})
    with pytest.raises(RuntimeError, match="size mismatch"):
        mixer.load_state_dict({**state, "learned_k": torch.zeros(3, 3)})
    with pytest.raises(RuntimeError, match="Unexpected"):
        mixer.load_state_dict({**state, "bogus": torch.zeros(1)})


def test_alias_helper_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="module must be an nn.Module"):
        alias_state_dict_keys("nope", {"a": "b"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="aliases must map str to str"):
        alias_state_dict_keys(nn.Linear(2, 2), {"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not aliases"):
        alias_state_dict_keys(nn.Linear(2, 2), {"w": "weight"}, public_shapes={"x": (4,)})


# --- the "paper" configuration solves the paper's problem -------------------------------------------------------------


def _paper_problem(mixer: VARS_D | VARS_SD, x: torch.Tensor) -> tuple:
    q, v = mixer._split_heads(x)
    signal = v.transpose(-1, -2)
    return mixer.sparse.bind(q), signal, q


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), heads=st.sampled_from([1, 2]), tokens=st.integers(3, 9))
def test_paper_vars_d_is_three_ista_steps_with_the_exact_step(seed: int, heads: int, tokens: int) -> None:
    mixer = VARS_D(8 * heads, heads, variant="paper", seed=seed).double()
    x = _tokens(2, tokens, 8 * heads, seed=seed, scale=2.0).double()
    with torch.no_grad():
        operator, signal, q = _paper_problem(mixer, x)
        P = operator.weight  # (B, heads, N, m)
        exact = (torch.linalg.matrix_norm(P, ord=2) ** 2)[..., None, None]  # ‖PᵀP‖₂ per (sample, head)
        L = operator.lipschitz()  # the solver's bound: the power-iteration estimate with a small safety margin
        assert L.shape == exact.shape
        assert ((L >= exact * (1 - 1e-9)) & (L <= exact * 1.003)).all()
        b = signal @ P
        u = b.clone()
        for _ in range(3):
            z = u - (u @ (P.transpose(-1, -2) @ P) - b) / L
            u = torch.sign(z) * torch.relu(z.abs() - 0.3 / L)
        expected = u @ P.transpose(-1, -2)
        got = mixer.sparse(signal, context=q)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["vars_d", "vars_sd"])
def test_paper_iterations_decrease_the_objective_and_converge_to_the_lasso_minimiser(kind: str) -> None:
    torch.manual_seed(0)  # the linear layers' initialisation
    # m = 8 features per head on 25 tokens: a well-conditioned problem, so ISTA converges in a few thousand steps
    mixer = build_mixer(kind, 16, 2, (5, 5), "paper", seed=0, feature_ratio=1).double()
    x = _tokens(2, 25, 16, seed=1, scale=2.0).double()
    values = []
    with torch.no_grad():
        operator, signal, q = _paper_problem(mixer, x)
        threshold = mixer.sparse.threshold
        for steps in (1, 2, 3, 10, 50):
            mixer.sparse.solver.max_iter = steps
            code = mixer.sparse.solve(signal, q).code
            values.append(objective(operator, signal, code, threshold))
        mixer.sparse.solver.max_iter = 3000
        code = mixer.sparse.solve(signal, q).code
        residual = kkt_residual(operator, signal, code, threshold)
    for before, after in zip(values, values[1:]):
        assert (after <= before * (1 + 1e-9)).all()
    assert residual.max().item() < 1e-6
    assert (code == 0).any() and (code != 0).any()  # a genuinely sparse solution


@pytest.mark.parametrize("atoms", [1, 5])
def test_paper_vars_s_iterations_solve_its_lasso(atoms: int) -> None:
    """Objective non-increasing with the exact step; with one atom per channel (a strongly convex problem) the
    KKT residual vanishes, with the overcomplete 5 atoms it shrinks (sublinear rate)."""
    torch.manual_seed(0)
    mixer = VARS_S(4, (4, 4), variant="paper", seed=0, atoms_per_channel=atoms).double()
    x = _tokens(2, 16, 4, seed=2, scale=3.0).double()
    with torch.no_grad():
        signal = mixer.v(x).transpose(1, 2)
        operator = mixer.sparse.bind()
        threshold = mixer.sparse.threshold
        values, residuals = [], []
        for steps in (1, 3, 30, 3000):
            mixer.sparse.solver.max_iter = steps
            code = mixer.sparse.solve(signal).code
            values.append(objective(operator, signal, code, threshold))
            residuals.append(kkt_residual(operator, signal, code, threshold).max().item())
    for before, after in zip(values, values[1:]):
        assert (after <= before * (1 + 1e-9)).all()
    assert residuals[-1] < (1e-8 if atoms == 1 else 0.05 * residuals[0])


# --- step-size refresh ----------------------------------------------------------------------------------------------


def test_refresh_step_size_on_a_plain_model_moves_L_towards_the_top_singular_value() -> None:
    block = VARS_S_Block(8, (4, 4), seed=0)
    dictionary = block.attn.sparse.dictionary
    kernel = torch.view_as_complex(dictionary.kernel.detach())  # (C, A, 1, h, w')
    top = (kernel.abs() ** 2).sum(dim=(1, 2)).flatten(1).amax(dim=1)  # max over frequencies of ‖K_{c,:,f}‖²
    torch.testing.assert_close(dictionary.L, top)  # set at construction
    dictionary.L.fill_(1.0)
    refreshed = refresh_step_sizes(block, momentum=0.1)
    assert refreshed >= 1
    torch.testing.assert_close(block.state_dict()["L"], 0.9 + 0.1 * top)


# --- attention maps -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["original", "paper"])
@pytest.mark.parametrize("kind", ["vars_s", "vars_d", "vars_sd"])
def test_attention_map_is_a_distribution_that_responds_to_the_input(kind: str, variant: str) -> None:
    lam = {"lam": 0.05} if kind == "vars_s" else {}
    mixer = build_mixer(kind, 24, 3, (3, 4), variant, seed=0, **lam).eval()
    heads = 1 if kind == "vars_s" else 3
    first = mixer.attention_map(_tokens(2, 12, 24, seed=0, scale=2.0))
    second = mixer.attention_map(_tokens(2, 12, 24, seed=1, scale=2.0))
    assert first.shape == (2, heads, 12)
    assert (first >= 0).all()
    torch.testing.assert_close(first.sum(dim=-1), torch.ones(2, heads))
    assert (first - second).abs().max().item() > 1e-4
    assert (first[0] - first[1]).abs().max().item() > 1e-4


def test_vars_d_map_is_the_mean_output_row_of_the_effective_map() -> None:
    """With codes equal to the encoding (gain 1) the map is the mean dictionary row times Pᵀ, clipped/normalised."""
    mixer = VARS_D(16, 2, variant="paper", lam=0.0, seed=0).double()
    x = _tokens(1, 6, 16, seed=4).double()
    mixer.sparse.solver.step_size = 1e-12  # a vanishing step: the code stays at the encoding
    with torch.no_grad():
        operator, _, _ = _paper_problem(mixer, x)
        P = operator.weight
        expected = (P.mean(dim=-2, keepdim=True) @ P.transpose(-1, -2)).squeeze(-2)
        expected = expected / expected.sum(dim=-1, keepdim=True)
        torch.testing.assert_close(mixer.attention_map(x), expected)


def test_thresholded_away_codes_give_a_uniform_map() -> None:
    mixer = VARS_S(8, (2, 2), variant="original", lam=1e6)
    weights = mixer.attention_map(_tokens(2, 4, 8))
    torch.testing.assert_close(weights, torch.full((2, 1, 4), 0.25))


# --- errors ---------------------------------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        VARS_D(16, 2, variant="fast")
    with pytest.raises(ValueError, match="dim must be divisible by num_heads"):
        VARS_D(16, 3)
    with pytest.raises(ValueError, match="grid_size must be a pair"):
        VARS_SD(16, 2, (0, 3))
    with pytest.raises(ValueError, match="lam must be a number >= 0"):
        VARS_S(8, (2, 2), lam=-1.0)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        VARS_D(16, 2, num_steps=0)
    with pytest.raises(ValueError, match="x must have 6 tokens"):
        VARS_SD(16, 2, (2, 3))(torch.randn(1, 5, 16))
    with pytest.raises(ValueError, match=r"x must have shape \(B, N, 16\)"):
        VARS_D(16, 2)(torch.randn(1, 5, 8))
    with pytest.raises(TypeError, match="accepts the extra options"):
        build_mixer("vars_d", 16, 2, 2, "original", window=3)
    with pytest.raises(TypeError, match="norm must be an nn.Module"):
        VARS_S(8, (2, 2), norm="batch")  # type: ignore[arg-type]


def test_solve_config_overrides() -> None:
    config = solve_config(VARS_D_CONFIGS, "original", lam=0.1, num_steps=7)
    assert (config.lam, config.num_steps, config.learned) == (0.1, 7, True)
    assert solve_config(VARS_S_CONFIGS, "paper") == VARS_S_CONFIGS["paper"]
    assert VARS_D(16, 2, lam=0.1, num_steps=2).sparse.solver.max_iter == 2


@pytest.mark.parametrize("cls", [VARS_D, VARS_SD])
def test_original_mixers_trace_as_one_graph_without_recompiles(cls) -> None:
    """``torch.compile`` captures the learned iteration whole (backend ``eager``: the tracing, not a kernel compiler):
    one graph, no graph breaks, and fresh inputs reuse it (nothing of a call is kept on the solver for guards to
    depend on)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    mixer = cls(32, 2, variant="original", grid_size=(4, 4))
    compiled = torch.compile(mixer, backend="eager")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in range(3):
            x = _tokens(2, 16, 32, seed=seed).requires_grad_(True)
            out = compiled(x)
            out.square().mean().backward()
            assert torch.allclose(out, mixer(x), atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    torch._dynamo.reset()
