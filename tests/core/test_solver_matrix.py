"""Every solver works with every dictionary kind; convolutional sparse coding equals the dense problem built by
materialising P."""
from __future__ import annotations

import pytest
import torch

from sparsecode import (
    ADMM,
    FISTA,
    ISTA,
    LCA,
    ConcatDictionary,
    ConvDictionary,
    DCTDictionary,
    FFTConvDictionary,
    LinearDictionary,
    PerformerDictionary,
    SoftThreshold,
    SparseReconstruction,
    SpaRSA,
    materialize,
    objective,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (name, dictionary factory, signal shape, context shape or None)
KINDS = [
    ("linear", lambda: LinearDictionary(6, 10, generator=_gen(0), dtype=F64), (3, 6), None),
    ("linear_heads", lambda: LinearDictionary(5, 7, n_heads=2, generator=_gen(0), dtype=F64), (3, 2, 5), None),
    ("dct1", lambda: DCTDictionary(8), (3, 8), None),
    ("dct2", lambda: DCTDictionary((4, 5)), (3, 4, 5), None),
    ("conv1d", lambda: ConvDictionary(2, 3, 3, ndim=1, stride=2, padding=1, signal_size=8, generator=_gen(0),
                                      dtype=F64), (3, 2, 8), None),
    ("conv2d", lambda: ConvDictionary(2, 4, 3, ndim=2, padding=1, groups=2, signal_size=(5, 5), generator=_gen(0),
                                      dtype=F64), (3, 2, 5, 5), None),
    ("conv3d", lambda: ConvDictionary(1, 2, 2, ndim=3, signal_size=(3, 3, 3), generator=_gen(0), dtype=F64),
     (3, 1, 3, 3, 3), None),
    ("fft", lambda: FFTConvDictionary(2, 3, (4, 4), init_std=0.3, generator=_gen(0), dtype=F64), (3, 2, 16), None),
    ("fft_running", lambda: FFTConvDictionary(2, 3, (3, 4), lipschitz="running", init_std=0.3, generator=_gen(0),
                                              dtype=F64), (3, 2, 12), None),
    ("performer", lambda: PerformerDictionary(2, 3, 5, normalize_atoms=True, dtype=F64), (3, 2, 4, 6), (3, 2, 6, 3)),
    ("concat_dense", lambda: ConcatDictionary([PerformerDictionary(2, 3, 4, dtype=F64), LinearDictionary(
        weight=torch.randn(2, 6, 3, generator=_gen(0), dtype=F64))], normalize_atoms=True), (3, 2, 4, 6),
     (3, 2, 6, 3)),
    ("concat_generic", lambda: ConcatDictionary([
        ConvDictionary(2, 3, 3, ndim=1, padding=1, signal_size=8, generator=_gen(0), dtype=F64),
        ConvDictionary(2, 2, 5, ndim=1, padding=2, signal_size=8, generator=_gen(1), dtype=F64)]), (3, 2, 8), None),
]

SOLVERS = [("ista", lambda: ISTA(max_iter=25)), ("fista", lambda: FISTA(max_iter=25)),
           ("lca", lambda: LCA(max_iter=25, method="euler")), ("sparsa", lambda: SpaRSA(max_iter=25)),
           ("sparsa_monotone", lambda: SpaRSA(max_iter=25, memory=1)), ("admm", lambda: ADMM(max_iter=25))]

#: the dictionaries whose bound operator is dense (what ADMM's exact linear solve needs)
DENSE_KINDS = {"linear", "linear_heads", "performer", "concat_dense"}


@pytest.mark.parametrize("solver_name,solver", SOLVERS, ids=[s[0] for s in SOLVERS])
@pytest.mark.parametrize("name,factory,shape,context_shape", KINDS, ids=[k[0] for k in KINDS])
def test_every_solver_with_every_dictionary(solver_name, solver, name, factory, shape, context_shape):
    torch.manual_seed(0)
    layer = SparseReconstruction(factory(), solver=solver(), threshold=SoftThreshold(0.05))
    x = torch.randn(shape, generator=_gen(1), dtype=F64)
    ctx = None if context_shape is None else 0.5 * torch.randn(context_shape, generator=_gen(2), dtype=F64)
    if solver_name == "admm" and name not in DENSE_KINDS:
        with pytest.raises(TypeError, match="ADMM needs a dense dictionary"):
            layer(x, ctx)
        return
    result = layer.solve(x, ctx, trace=True)
    z = layer(x, ctx)
    assert torch.isfinite(result.code).all() and torch.isfinite(z).all() and z.shape == x.shape
    f0 = 0.5 * x.reshape(x.shape[0], -1).square().sum(dim=1)  # F(0)
    op = layer.bind(ctx)
    final = objective(op, x, result.code, layer.threshold)
    assert (final < f0).all(), (final, f0)
    if solver_name in ("ista", "sparsa_monotone"):  # monotone (ISTA with a valid step, SpaRSA with memory 1)
        obj = result.trace.objective
        assert (obj[1:] <= obj[:-1] * (1 + 1e-9) + 1e-12).all()


def test_convolutional_sparse_coding_equals_the_dense_problem():
    conv = ConvDictionary(1, 2, 3, ndim=2, padding=1, signal_size=(5, 5), generator=_gen(0), dtype=F64)
    P = materialize(conv, (1, 1, 5, 5))
    L = float(torch.linalg.matrix_norm(P, ord=2) ** 2)
    dense = LinearDictionary(weight=P, lipschitz=L)
    conv.lipschitz_mode = L  # the same step size, so both runs are the same iteration on the same problem
    x = torch.randn(2, 1, 5, 5, generator=_gen(1), dtype=F64)
    solver = FISTA(max_iter=3000, tol=1e-10, restart=True)
    threshold = SoftThreshold(0.3)
    with torch.no_grad():
        conv_result = solver.solve(conv.bind(), x, threshold)
        dense_result = solver.solve(dense.bind(), x.reshape(2, 25), threshold)
    assert conv_result.converged.all() and dense_result.converged.all()
    u_conv = conv_result.code.reshape(2, -1)
    assert torch.allclose(u_conv, dense_result.code, atol=1e-7)
    assert torch.allclose(conv.decode(conv_result.code).reshape(2, -1), dense.decode(dense_result.code), atol=1e-9)


@pytest.mark.parametrize("solver_name,solver", SOLVERS, ids=[s[0] for s in SOLVERS])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_every_solver_runs_a_half_precision_layer(solver_name, solver, dtype):
    # the step constants (L is computed in float32 for half-precision weights) must not promote the codes; SpaRSA's
    # per-sample scalars (the Barzilai-Borwein ratio <s, s>/<s, y>) are kept in float32, where float16 overflows
    layer = SparseReconstruction(LinearDictionary(8, 16, generator=_gen(0), dtype=dtype), solver=solver(),
                                 threshold=SoftThreshold(0.1))
    x = torch.randn(4, 8, generator=_gen(1)).to(dtype)
    out = layer(x)
    out.float().square().sum().backward()
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    assert layer.dictionary.weight.grad is not None and bool(torch.isfinite(layer.dictionary.weight.grad).all())
    reference = SparseReconstruction(LinearDictionary(weight=layer.dictionary.weight.detach().double()),
                                     solver=solver(), threshold=SoftThreshold(0.1))(x.double())
    assert float((out.detach().double() - reference.detach()).abs().max()) < 0.1 * float(reference.detach().abs().max())
