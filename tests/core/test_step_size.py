"""Step sizes: power iteration never underestimates L, stays close to it, warm-starts; analytic and user values."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

import sparsecode.dictionaries.dense as dense_module
from sparsecode import ADMM, DCTDictionary, DenseOperator, FISTA, LinearDictionary, power_iteration
from sparsecode.dictionaries.dense import EXACT_EIGENVALUE_WORK
from sparsecode.lipschitz import DEFAULT_MARGIN, perron_bound


@given(seed=st.integers(0, 10_000), n=st.integers(2, 30), m=st.integers(1, 30), heads=st.sampled_from([None, 1, 3]))
def test_power_iteration_bounds_the_true_lipschitz_constant(seed, n, m, heads):
    g = torch.Generator().manual_seed(seed)
    d = LinearDictionary(n, m, n_heads=heads, generator=g, dtype=torch.float64)
    true = torch.linalg.matrix_norm(d.weight.detach(), ord=2) ** 2
    L = d.lipschitz().reshape(-1)
    assert torch.all(L >= true.reshape(-1) * (1 - 1e-12))
    assert torch.all(L <= true.reshape(-1) * 1.01)


def test_power_iteration_warm_starts_from_the_previous_vector():
    # 300 × 300: above EXACT_EIGENVALUE_WORK, so the dictionary runs the Krylov iteration and keeps its vector
    d = LinearDictionary(300, 300, dtype=torch.float64)
    assert d._power_vector is None
    d.lipschitz()
    v = d._power_vector.clone()
    calls = []
    L2, v2 = power_iteration(lambda u: (calls.append(1), u @ (d.weight.T @ d.weight).detach())[1], (300,), 1,
                             n_iter=3, init=v, dtype=torch.float64)
    true = torch.linalg.matrix_norm(d.weight.detach(), ord=2) ** 2
    assert abs(L2.item() / true.item() - 1) < 0.01  # 3 warm Krylov steps suffice
    assert len(calls) == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# (matrices × k³ against EXACT_EIGENVALUE_WORK = 256³, k = min(n, m): one 40³, four 16³, one 250³ (an overcomplete
# 300-atom dictionary, solved on its smaller side), one 300³, twenty 100³, one 270³)
@pytest.mark.parametrize("n,m,heads,small", [(40, 200, None, True), (16, 64, 4, True), (250, 300, None, True),
                                             (300, 300, None, False), (120, 100, 20, False), (270, 300, None, False)])
def test_power_mode_is_exact_for_small_grams_and_krylov_above(n, m, heads, small, dtype, monkeypatch):
    g = torch.Generator().manual_seed(m)
    d = LinearDictionary(n, m, n_heads=heads, generator=g, dtype=dtype)
    w = d.weight.detach().double()
    true = torch.linalg.matrix_norm(w, ord=2) ** 2
    assert small == ((heads or 1) * min(n, m) ** 3 <= EXACT_EIGENVALUE_WORK)
    calls = []
    original = dense_module.power_iteration
    monkeypatch.setattr(dense_module, "power_iteration", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    L = d.lipschitz().reshape(-1).double()
    assert bool(calls) != small
    # never below the top eigenvalue; the exact eigenvalue times the Krylov margin (what an accelerator's Krylov
    # iteration converges to: the same step on every device), or within the Krylov margin above it
    eps = torch.finfo(dtype).eps
    assert torch.all(L >= true.reshape(-1) * (1 - 4 * eps))
    if small:
        torch.testing.assert_close(L, true.reshape(-1) * DEFAULT_MARGIN, rtol=4 * m * eps, atol=0)
    else:
        assert torch.all(L <= true.reshape(-1) * 1.01)


def test_admm_reads_its_step_bound_off_its_own_eigendecomposition(monkeypatch):
    op = LinearDictionary(30, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64).bind()
    monkeypatch.setattr(dense_module, "power_iteration", lambda *a, **k: pytest.fail("Krylov iteration run"))
    L = ADMM().lipschitz(op, torch.zeros(1, 30, dtype=torch.float64))
    top = op.gram_eigh()[0][-1]
    assert torch.allclose(L, top * (1 + 300 * torch.finfo(torch.float64).eps), rtol=0, atol=0)


def test_exact_row_sum_and_user_values():
    d = LinearDictionary(10, 7, dtype=torch.float64, lipschitz="exact")
    true = torch.linalg.matrix_norm(d.weight.detach(), ord=2) ** 2
    assert torch.allclose(d.lipschitz(), true, rtol=1e-5)
    row = LinearDictionary(weight=d.weight.detach(), lipschitz="row_sum").lipschitz()
    assert row >= true * (1 - 1e-12)
    assert LinearDictionary(weight=d.weight.detach(), lipschitz=3.5).lipschitz().item() == 3.5
    assert DCTDictionary(8).lipschitz().item() == 1.0


def test_solver_step_overrides_the_dictionary():
    d = LinearDictionary(6, 4, dtype=torch.float64)
    assert FISTA(step=0.25).lipschitz(d.bind(), torch.zeros(1, 6, dtype=torch.float64)).item() == 4.0


def test_per_head_lipschitz_broadcasts_against_codes():
    d = LinearDictionary(8, 5, n_heads=3, dtype=torch.float64)
    L = d.lipschitz()
    assert L.shape == (3, 1)
    code = torch.zeros(2, 3, 5, dtype=torch.float64)
    assert (code / L).shape == code.shape


# --- the Collatz-Wielandt ("perron") bound ------------------------------------------------------------------------
_GRAMS = dict(seed=st.integers(0, 10_000), m=st.integers(1, 12), batch=st.integers(1, 4), positive=st.booleans(),
              scale=st.sampled_from([1e-3, 1.0, 1e3]))


def _random_gram(seed, m, batch, positive, scale):
    """A batch of Gram matrices W^T W (W: 2m x m, entrywise non-negative if ``positive``) and the generator."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(batch, 2 * m, m, generator=g, dtype=torch.float64) * scale
    if positive:
        W = W.abs()
    return W.transpose(-1, -2) @ W, g


@given(**_GRAMS)
def test_perron_bound_never_underestimates(seed, m, batch, positive, scale):
    G, _ = _random_gram(seed, m, batch, positive, scale)
    exact = torch.linalg.eigvalsh(G)[..., -1]
    bound = perron_bound(G)
    assert bound.shape == (batch,)
    assert (bound >= exact * (1 - 1e-12)).all()
    assert (bound <= G.abs().sum(dim=-1).amax(dim=-1) * (1 + 1e-4)).all()  # never worse than the row-sum bound


def test_perron_bound_is_tight_for_positive_features():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 196, 64, generator=g, dtype=torch.float64).exp()  # positive random features
    G = W.transpose(-1, -2) @ W
    exact = torch.linalg.eigvalsh(G)[..., -1]
    ratio = perron_bound(G) / exact
    assert (ratio >= 1).all() and (ratio <= 1 + 2e-5).all()
    # and through the dictionary option
    op = DenseOperator(W, stacked=True, lipschitz="perron")
    torch.testing.assert_close(op.lipschitz().flatten(), perron_bound(G), rtol=1e-12, atol=0)


def test_perron_bound_handles_zero_and_reducible_matrices():
    assert perron_bound(torch.zeros(3, 4, 4)).eq(0).all()
    block = torch.block_diag(torch.full((2, 2), 3.0), torch.full((3, 3), 1.0))  # eigenvalues 6 and 3
    bound = perron_bound(block.double())
    assert 6.0 <= bound.item() <= 6.0 * (1 + 1e-4)


@given(**_GRAMS)
def test_perron_bound_through_a_diagonal_scale_is_the_bound_of_the_scaled_matrix(seed, m, batch, positive, scale):
    # |DGD| = D|G|D: the scaled products give the bound of DGD itself, and it never underestimates ||DGD||_2
    G, g = _random_gram(seed, m, batch, positive, scale)
    s = torch.rand(batch, m, generator=g, dtype=torch.float64) + 0.1
    scaled = G * s.unsqueeze(-1) * s.unsqueeze(-2)
    bound = perron_bound(G, scale=s)
    torch.testing.assert_close(bound, perron_bound(scaled), rtol=1e-9, atol=0)
    assert (bound >= torch.linalg.eigvalsh(scaled)[..., -1] * (1 - 1e-12)).all()
    assert not torch.allclose(perron_bound(G), bound, atol=0)  # the scale is not ignored


def test_krylov_start_is_the_seeded_cpu_draw_whatever_the_device_and_mode():
    # the start vector must not depend on the device's generator (a CUDA generator seeded 0 draws other numbers)
    from sparsecode.lipschitz import _seeded_normal

    expected = torch.randn((3, 5), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_seeded_normal((3, 5), torch.float64, torch.device("cpu")), expected, rtol=0, atol=0)
    meta = _seeded_normal((3, 5), torch.float64, torch.device("meta"))
    assert meta.device.type == "meta" and meta.shape == (3, 5)
    with torch.inference_mode():
        cached = _seeded_normal((3, 5), torch.float64, torch.device("cpu"))
    assert not cached.is_inference() and not cached.requires_grad
    gram = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
    with torch.inference_mode():
        L, _ = power_iteration(lambda v: v @ gram, (5,), 1, dtype=torch.float64)
    L2, _ = power_iteration(lambda v: v @ gram, (5,), 1, dtype=torch.float64)  # then outside it, from the cache
    assert float(L) == float(L2) == pytest.approx(5.0 * DEFAULT_MARGIN, rel=1e-12)
