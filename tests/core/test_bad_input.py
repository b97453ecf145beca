"""Bad input gets an error naming the argument, what was expected and what was given."""
from __future__ import annotations

import pytest
import torch

from sparsecode import (ADMM, DCTDictionary, FISTA, ISTA, LCA, LinearDictionary, NonNegSoftThreshold, SoftThreshold,
                        SparseReconstruction, SpaRSA, get_solver, get_threshold)


def _layer(**kw):
    return SparseReconstruction(LinearDictionary(8, 5), solver=FISTA(max_iter=5), **kw)


def test_wrong_signal_shape_names_x_and_the_expected_shape():
    with pytest.raises(ValueError, match=r"x must have trailing shape \(8,\).*got shape \(2, 7\)"):
        _layer()(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"x must have trailing shape \(4, 6\)"):
        SparseReconstruction(DCTDictionary((4, 6)))(torch.randn(2, 6, 4))
    heads = SparseReconstruction(LinearDictionary(8, 5, n_heads=3))
    with pytest.raises(ValueError, match=r"x must have trailing shape \(3, 8\)"):
        heads(torch.randn(2, 8))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        _layer()(torch.tensor(1.0))


def test_integer_and_nonfinite_inputs_are_rejected():
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        _layer()(torch.ones(2, 8, dtype=torch.int64))
    bad = torch.randn(2, 8)
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        _layer()(bad)
    bad[0, 3] = float("inf")
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        _layer()(bad)
    assert torch.isnan(_layer(check_finite=False)(bad)).any()  # explicitly allowed through


def test_negative_lambda_is_an_error():
    with pytest.raises(ValueError, match="lam must be >= 0, got -0.1"):
        SoftThreshold(-0.1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        SoftThreshold(torch.tensor([0.1, -1.0]))
    with pytest.raises(ValueError, match="lam must be finite"):
        SoftThreshold(float("nan"))


def test_solver_and_dictionary_misuse():
    with pytest.raises(ValueError, match="max_iter must be a positive int, got 0"):
        FISTA(max_iter=0)
    with pytest.raises(ValueError, match="tol must be a positive number or None, got -1"):
        ISTA(tol=-1)
    with pytest.raises(ValueError, match=r"solver must be one of \['admm', 'cd', 'fista', 'homotopy', 'ista', 'lca', 'learned_ista', 'sparsa'\], got 'adam'"):
        get_solver("adam")
    with pytest.raises(ValueError, match="threshold must be one of"):
        get_threshold("relu")
    with pytest.raises(ValueError, match="form must be one of"):
        LCA(form="hopfield")
    with pytest.raises(TypeError, match="dictionary must be a sparsecode Dictionary, got Linear"):
        SparseReconstruction(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="solver must be a Solver instance"):
        SparseReconstruction(LinearDictionary(3, 4), solver=3)
    with pytest.raises(ValueError, match="give either weight= or"):
        LinearDictionary(3, 4, weight=torch.randn(3, 4))
    with pytest.raises(ValueError, match="n_features must be a positive int, got -3"):
        LinearDictionary(-3, 4)
    with pytest.raises(TypeError, match="weight must have a floating-point dtype"):
        LinearDictionary(weight=torch.ones(3, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="lipschitz must be one of"):
        LinearDictionary(3, 4, lipschitz="guess")
    with pytest.raises(ValueError, match="is static: context must be None"):
        _layer()(torch.randn(2, 8), context=torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"init must have the code's shape \(2, 5\), got \(2, 4\)"):
        _layer().solve(torch.randn(2, 8), init=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="differentiation must be one of"):
        _layer(differentiation="magic")
    with pytest.raises(ValueError, match="give lam= only together with a threshold name"):
        _layer(threshold=SoftThreshold(0.1), lam=0.2)


@pytest.mark.parametrize("solver", [FISTA(max_iter=3, tol=1e-3), FISTA(max_iter=3, restart=True),
                                    ISTA(max_iter=3, tol=1e-3), SpaRSA(max_iter=3, tol=1e-3), SpaRSA(max_iter=3),
                                    LCA(max_iter=3, tol=1e-3), ADMM(max_iter=3, tol=1e-3), ADMM(max_iter=3)],
                         ids=lambda s: f"{type(s).__name__}-{s.tol}")
@pytest.mark.parametrize("threshold", [SoftThreshold(0.1), NonNegSoftThreshold(0.1)], ids=["soft", "nonneg"])
def test_an_empty_batch_gives_an_empty_code(solver, threshold):
    op = LinearDictionary(5, 8).bind()
    result = solver.solve(op, torch.zeros(0, 5), threshold)
    assert result.code.shape == (0, 8) and result.converged.shape == (0,)


def test_implicit_differentiation_needs_a_solver_that_minimises():
    from sparsecode import LearnedISTA
    with pytest.raises(ValueError, match="differentiation='implicit' needs a solver that converges to the minimiser; "
                                         "LearnedISTA does not"):
        SparseReconstruction(LinearDictionary(3, 4), solver=LearnedISTA(4), differentiation="implicit")
