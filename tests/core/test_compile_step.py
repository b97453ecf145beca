"""``compile_step=True``: the iteration through ``torch.compile`` gives the eager iterates (float64, up to rounding),
with and without a tolerance (rows leaving the batch: shapes change between calls), in the plain loop and the loop
over rows, and through autograd."""
from __future__ import annotations

import shutil

import pytest
import torch

from sparsecode import (ADMM, FISTA, ISTA, LCA, LearnedISTA, LinearDictionary, PerformerDictionary,
                        SmoothSoftThreshold, SoftThreshold, SpaRSA, SparseReconstruction, objective)

pytestmark = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")),
    reason="torch.compile's CPU backend needs a C++ compiler")

F64 = torch.float64

SOLVERS = {
    "ista": lambda **kw: ISTA(**kw),
    "fista_restart": lambda **kw: FISTA(restart=True, **kw),
    "sparsa": lambda **kw: SpaRSA(**kw),
    "admm": lambda **kw: ADMM(**kw),
}


def _problem(seed: int, batch: int):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(16, 12, generator=g, dtype=F64)  # undercomplete: every solver converges in a few hundred
    x = torch.randn(batch, 16, generator=g, dtype=F64) * torch.rand(batch, 1, generator=g, dtype=F64) * 3
    return LinearDictionary(weight=P, learnable=False).bind(), x


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_compiled_iteration_gives_the_eager_codes(name):
    threshold = SoftThreshold(0.3)
    op, x = _problem(0, 37)
    with torch.no_grad():
        eager = SOLVERS[name](max_iter=40).solve(op, x, threshold)
        compiled = SOLVERS[name](max_iter=40, compile_step=True).solve(op, x, threshold)
    assert torch.allclose(compiled.code, eager.code, rtol=0, atol=1e-10), (compiled.code - eager.code).abs().max()
    # with a tolerance rows leave the batch at their own iterations: the compiled iteration takes every batch size
    op, x = _problem(1, 23)
    with torch.no_grad():
        eager = SOLVERS[name](max_iter=3000, tol=1e-6).solve(op, x, threshold)
        compiled = SOLVERS[name](max_iter=3000, tol=1e-6, compile_step=True).solve(op, x, threshold)
    assert bool(eager.converged.all()) and bool(compiled.converged.all())
    assert len(set(eager.n_iter_per_sample.tolist())) > 1
    # over hundreds of iterations rounding differences grow (SpaRSA's Barzilai-Borwein steps amplify them most: one
    # sample here stops after 237 instead of 268 iterations), so the codes agree as two solutions to the tolerance
    assert int((compiled.n_iter_per_sample == eager.n_iter_per_sample).sum()) >= 20
    assert torch.allclose(compiled.code, eager.code, rtol=0, atol=1e-4)
    f_eager, f_compiled = objective(op, x, eager.code, threshold), objective(op, x, compiled.code, threshold)
    assert torch.allclose(f_compiled, f_eager, rtol=1e-8)


def test_compiled_iteration_under_autograd_gives_the_eager_gradients():
    torch.manual_seed(0)
    dictionary = PerformerDictionary(2, 4, 8, normalize_atoms=True, seed=0, dtype=F64)
    tokens = torch.randn(3, 2, 6, 4, dtype=F64)
    v = torch.randn(3, 2, 4, 6, dtype=F64, requires_grad=True)
    outs, grads = [], []
    for compile_step in (False, True):
        layer = SparseReconstruction(dictionary, FISTA(max_iter=6, compile_step=compile_step), SoftThreshold(0.1))
        out = layer(v, context=tokens)
        (grad,) = torch.autograd.grad(out.square().sum(), v)
        outs.append(out)
        grads.append(grad)
    assert torch.allclose(outs[1], outs[0], atol=1e-12)
    assert torch.allclose(grads[1], grads[0], atol=1e-10)


def test_compile_step_is_checked_and_shown():
    with pytest.raises(TypeError, match="compile_step must be a bool"):
        FISTA(compile_step="yes")
    assert "compile_step=True" in repr(SpaRSA(compile_step=True))
    assert "compile_step" not in repr(SpaRSA())


def test_compile_step_runs_the_iteration_through_dynamo():
    from torch._dynamo.utils import counters

    class Relaxed(ISTA):  # a step of its own: a code object dynamo has not compiled yet
        def step(self, op, x, b, threshold, L, state, need_measure):
            new_state, measure = super().step(op, x, b, threshold, L, state, need_measure)
            return {"u": 0.5 * (state["u"] + new_state["u"])}, measure

    op, x = _problem(2, 5)
    before = counters["stats"]["unique_graphs"]
    with torch.no_grad():
        eager = Relaxed(max_iter=3).solve(op, x, SoftThreshold(0.1)).code
        assert counters["stats"]["unique_graphs"] == before
        compiled = Relaxed(max_iter=3, compile_step=True).solve(op, x, SoftThreshold(0.1)).code
    assert counters["stats"]["unique_graphs"] > before
    assert torch.allclose(compiled, eager, atol=1e-12)


@pytest.mark.parametrize("form", ["vars", "rozell"])
def test_compiled_lca_gives_the_eager_codes(form):
    op, x = _problem(3, 9)
    with torch.no_grad():
        eager = LCA(max_iter=50, form=form).solve(op, x, SoftThreshold(0.3)).code
        compiled = LCA(max_iter=50, form=form, compile_step=True).solve(op, x, SoftThreshold(0.3)).code
    assert torch.allclose(compiled, eager, rtol=0, atol=1e-12)


@pytest.mark.parametrize("per_step", [False, True])
def test_compiled_learned_ista_gives_the_eager_layer(per_step):
    """The learned iteration of the released VARS-D (per call plan, smooth threshold) compiled: outputs and input
    gradients; with one shared parameter set, later solves reuse the compiled step (nothing depends on the step's
    number or on the identity of a solve's tensors)."""
    from torch._dynamo.utils import counters

    dictionary = PerformerDictionary(2, 4, 8, normalize_atoms=True, seed=0, dtype=F64)
    lead = (5,) if per_step else ()
    bump = 0.05 * torch.randn(lead + (8, 8), generator=torch.Generator().manual_seed(1), dtype=F64)
    results = []
    for compile_step in (False, True):
        solver = LearnedISTA(8, max_iter=5, per_step=per_step, dtype=F64, compile_step=compile_step)
        with torch.no_grad():
            solver.learned_k.add_(bump)
        layer = SparseReconstruction(dictionary, solver, SmoothSoftThreshold(0.3))
        runs = []
        for seed in range(3):
            gen = torch.Generator().manual_seed(10 + seed)
            tokens = torch.randn(3, 2, 6, 4, generator=gen, dtype=F64)
            v = torch.randn(3, 2, 4, 6, generator=gen, dtype=F64, requires_grad=True)
            if compile_step and seed == 2:
                graphs = counters["stats"]["unique_graphs"]
            out = layer(v, context=tokens)
            (grad,) = torch.autograd.grad(out.square().sum(), v)
            runs.append((out, grad))
        results.append(runs)
    if not per_step:
        assert counters["stats"]["unique_graphs"] == graphs  # the third solve compiled nothing new
    for (out_e, grad_e), (out_c, grad_c) in zip(*results):
        assert torch.allclose(out_c, out_e, atol=1e-12) and torch.allclose(grad_c, grad_e, atol=1e-10)


def test_a_compiled_model_around_a_compiled_step():
    """A layer whose solver compiles its step inside a model that is itself compiled: dynamo traces through."""
    layer = SparseReconstruction(LinearDictionary(8, 12, generator=torch.Generator().manual_seed(0)),
                                 FISTA(max_iter=10, compile_step=True), SoftThreshold(0.1))
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    eager = SparseReconstruction(layer.dictionary, FISTA(max_iter=10), SoftThreshold(0.1))(x)
    assert torch.allclose(torch.compile(layer, backend="eager")(x), eager, atol=1e-6)
