"""Fixed ISTA steps as one autograd node (``sparsecode.solvers._unrolled``) and the products it relies on: the same
codes and the same derivatives as autograd through the steps one by one, higher-order derivatives included, and
the node is used exactly where it applies."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import (
    FISTA,
    ISTA,
    ConcatDictionary,
    LearnedISTA,
    DenseOperator,
    LinearDictionary,
    NonNegSoftThreshold,
    PerformerDictionary,
    SmoothSoftThreshold,
    SoftThreshold,
    SparseReconstruction,
)
from sparsecode.dictionaries._block_gram import block_gram as _block_gram
from sparsecode.dictionaries.dense import _ScaledStepMatrix, cross_of
from sparsecode.solvers._unrolled import unrolled_scaled_soft_ista, unrolled_smooth_ista, unrolled_soft_ista

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _affine_steps(u, m, c, t, n):
    for _ in range(n):
        v = u @ m + c
        u = v - torch.clamp(v, -t, t)
    return u


# --- the nodes against their definition ----------------------------------------------------------------------------

@pytest.mark.parametrize("batched", [False, True])
def test_affine_node_has_exact_first_and_second_derivatives(batched):
    g = _gen(0)
    shape = (3, 4, 5) if batched else (4, 5)
    w = torch.randn(*shape[:-2], 7, 5, generator=g, dtype=F64)
    m = (torch.eye(5, dtype=F64) - 0.1 * w.transpose(-1, -2) @ w).requires_grad_()
    c = torch.randn(*shape, generator=g, dtype=F64, requires_grad=True)
    u0 = torch.randn(*shape, generator=g, dtype=F64, requires_grad=True)
    t = torch.full((3, 1, 1) if batched else (), 0.2, dtype=F64, requires_grad=True)

    def node(u0, m, c, t):
        return unrolled_soft_ista(u0, m, c, t, 3)

    torch.testing.assert_close(node(u0, m, c, t), _affine_steps(u0, m, c, t, 3), rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(node, (u0, m, c, t))
    assert torch.autograd.gradgradcheck(node, (u0, m, c, t))


def test_scaled_node_has_exact_first_and_second_derivatives():
    g = _gen(1)
    w = torch.randn(3, 7, 5, generator=g, dtype=F64)
    r = (w.transpose(-1, -2) @ w).requires_grad_()
    t = (torch.rand(3, 5, generator=g, dtype=F64) * 0.3 + 0.2).requires_grad_()
    c = torch.randn(3, 4, 5, generator=g, dtype=F64, requires_grad=True)
    u0 = torch.randn(3, 4, 5, generator=g, dtype=F64, requires_grad=True)
    thr = torch.tensor(0.2, dtype=F64, requires_grad=True)

    step = torch.tensor([0.5, 0.8, 1.3], dtype=F64).reshape(3, 1, 1)

    def node(u0, r, t, b, thr):
        return unrolled_scaled_soft_ista(u0, r, t, b, step, thr, 3)

    m = torch.eye(5, dtype=F64) - t.unsqueeze(-1) * r * t.unsqueeze(-2)
    torch.testing.assert_close(node(u0, r, t, c, thr), _affine_steps(u0, m, c * step, thr, 3), rtol=1e-13,
                               atol=1e-13)
    assert torch.autograd.gradcheck(node, (u0, r, t, c, thr))
    assert torch.autograd.gradgradcheck(node, (u0, r, t, c, thr))
    # the start may be b itself (ISTA from u0 = Pᵀx): the node keeps one tensor for both
    assert torch.autograd.gradcheck(lambda b, r, t: node(b, r, t, b, thr), (c, r, t))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 6), lam=st.floats(0.0, 2.0),
       scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_scaled_node_gradients_equal_autograd_through_the_steps(seed, n_steps, lam, scale):
    g = _gen(seed)
    k, s, m = 2, 3, 6
    w = scale * torch.randn(k, 9, m, generator=g, dtype=F64)
    r0 = w.transpose(-1, -2) @ w
    t0 = torch.rand(k, m, generator=g, dtype=F64) + 0.1
    t0 = t0 / (t0.unsqueeze(-1) * r0.abs() * t0.unsqueeze(-2)).sum(-1).amax(-1, keepdim=True).sqrt()  # stable steps
    c0 = scale * torch.randn(k, s, m, generator=g, dtype=F64)
    step = torch.rand(k, 1, 1, generator=g, dtype=F64) + 0.5
    u00 = scale * torch.randn(k, s, m, generator=g, dtype=F64)
    weights = torch.randn(k, s, m, generator=g, dtype=F64)
    thr0 = torch.tensor(lam * scale, dtype=F64)
    results = []
    for fused in (True, False):
        r, t, c, u0, thr = (v.clone().requires_grad_() for v in (r0, t0, c0, u00, thr0))
        if fused:
            out = unrolled_scaled_soft_ista(u0, r, t, c, step, thr, n_steps)
        else:
            out = _affine_steps(u0, torch.eye(m, dtype=F64) - t.unsqueeze(-1) * r * t.unsqueeze(-2), c * step, thr,
                                n_steps)
        (out * weights).sum().backward()
        results.append([out.detach()] + [v.grad for v in (r, t, c, u0, thr)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale ** 2)


def test_scaled_node_chunks_its_product_buffer(monkeypatch):
    """The derivative in t sums A ⊙ R a few matrices at a time: the same numbers whatever the chunk size."""
    import sparsecode.solvers._unrolled as unrolled
    g = _gen(2)
    w = torch.randn(5, 7, 4, generator=g, dtype=F64)
    r = w.transpose(-1, -2) @ w
    t = torch.rand(5, 4, generator=g, dtype=F64) + 0.2
    c, u0 = torch.randn(5, 3, 4, generator=g, dtype=F64), torch.randn(5, 3, 4, generator=g, dtype=F64)
    grads = []
    for chunk_bytes in (1, 2 * 4 * 4 * 8, 1 << 20):  # one, two (with a ragged last chunk) and all matrices per chunk
        monkeypatch.setattr(unrolled, "_CHUNK_BYTES", chunk_bytes)
        tt = t.clone().requires_grad_()
        unrolled_scaled_soft_ista(u0, r, tt, c, torch.tensor(1.0, dtype=F64), torch.tensor(0.1, dtype=F64),
                                  2).sum().backward()
        grads.append(tt.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[2], rtol=1e-14, atol=1e-14)


# --- the solver uses the node where it applies, with the loop's codes and derivatives ------------------------------

def _layer(dictionary, solver, lam=0.3, learnable=True, threshold=SoftThreshold):
    return SparseReconstruction(dictionary, solver, threshold(lam, learnable=learnable), residual=False)


def _node_name(code):
    """The autograd node that produced ``code``, looking through reshapes."""
    fn = code.grad_fn
    while fn is not None and type(fn).__name__ in ("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0"):
        fn = fn.next_functions[0][0]
    return type(fn).__name__ if fn is not None else None


def _code_node(layer, x, context=None):
    return _node_name(layer.solve(x, context).code)


def _gradients(layer, x, context, use_node, monkeypatch):
    if not use_node:
        monkeypatch.setattr(ISTA, "_fused_unrolled_solve", lambda self, *a: None)
        monkeypatch.setattr(LearnedISTA, "_fused_unrolled_solve", lambda self, *a: None)
    else:
        monkeypatch.undo()
    layer.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_()
    cc = None if context is None else context.clone().requires_grad_()
    out = layer(xx, context=cc) if cc is not None else layer(xx)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    grads["x"] = xx.grad
    if cc is not None:
        grads["context"] = cc.grad
    return out.detach(), grads


def _assert_same(layer, x, monkeypatch, context=None, rtol=1e-11):
    out0, g0 = _gradients(layer, x, context, True, monkeypatch)
    out1, g1 = _gradients(layer, x, context, False, monkeypatch)
    torch.testing.assert_close(out0, out1, rtol=rtol, atol=rtol)
    assert g0.keys() == g1.keys() and len(g0) >= 2
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], rtol=rtol, atol=rtol * g1[name].abs().max().item(),
                                   msg=name)


def test_dense_ista_layer_uses_the_affine_node_with_the_loops_derivatives(monkeypatch):
    g = _gen(3)
    layer = _layer(LinearDictionary(weight=torch.randn(12, 20, generator=g, dtype=F64), learnable=True), ISTA(max_iter=7))
    x = torch.randn(9, 12, generator=g, dtype=F64)
    assert _code_node(layer, x) == "_UnrolledSoftISTABackward"
    _assert_same(layer, x, monkeypatch)


def test_stacked_concatenation_uses_the_scaled_node_with_the_loops_derivatives(monkeypatch):
    """The VARS-SD dictionary [Φ(Q), K] with atoms normalised through the Gram diagonal."""
    g = _gen(4)
    features = PerformerDictionary(2, 4, 6, normalize_input=True, normalize_atoms=False, lipschitz="perron",
                                   generator=g)
    static = LinearDictionary(weight=torch.randn(2, 10, 6, generator=g), learnable=True)
    layer = _layer(ConcatDictionary([features, static], normalize_atoms=True, lipschitz="perron"),
                   ISTA(max_iter=3, init="encode")).double()
    x = torch.randn(3, 2, 4, 10, generator=g, dtype=F64)  # (B, heads, d, N): the values transposed
    q = torch.randn(3, 2, 10, 4, generator=g, dtype=F64)
    assert _code_node(layer, x, q) == "_UnrolledScaledSoftISTABackward"
    _assert_same(layer, x, monkeypatch, context=q)


@pytest.mark.parametrize("variant", ["paper", "original"])
@pytest.mark.parametrize("cls", ["VARS_D", "VARS_SD"])
def test_vars_mixers_have_the_loops_outputs_and_gradients(cls, variant, monkeypatch):
    from integrations.vision.mixers import vars_d
    torch.manual_seed(0)
    mixer = getattr(vars_d, cls)(32, 2, **({"grid_size": (3, 4)} if cls == "VARS_SD" else {}),
                                 variant=variant).double()
    x = torch.randn(2, 12, 32, dtype=F64)
    q, v = mixer._split_heads(x)
    expected = "_UnrolledSmoothISTABackward" if variant == "original" else "_UnrolledScaledSoftISTABackward"
    assert _code_node(mixer.sparse, v.transpose(-1, -2), q) == expected
    with torch.no_grad():  # learned parameters away from their identity start, so that their derivatives matter
        for p in mixer.sparse.solver.parameters():
            p.add_(0.05 * torch.randn(p.shape, dtype=F64))
    _assert_same(mixer, x, monkeypatch, rtol=1e-10)


def test_smooth_node_has_exact_first_and_second_derivatives():
    g = _gen(11)
    m = (torch.eye(5, dtype=F64) - 0.1 * torch.randn(3, 5, 5, generator=g, dtype=F64)).requires_grad_()
    c = torch.randn(3, 4, 5, generator=g, dtype=F64, requires_grad=True)
    u0 = torch.randn(3, 4, 5, generator=g, dtype=F64, requires_grad=True)
    thr = (0.1 + torch.rand(3, 1, 1, generator=g, dtype=F64)).requires_grad_()

    def node(u0, m, c, thr):
        return unrolled_smooth_ista(u0, m, c, thr, 3)

    def loop(u0, m, c, thr):
        u = u0
        for _ in range(3):
            u = SmoothSoftThreshold(1.0).prox(torch.baddbmm(c, u, m), thr)
        return u

    torch.testing.assert_close(node(u0, m, c, thr), loop(u0, m, c, thr), rtol=0, atol=0)  # the same operations
    assert torch.autograd.gradcheck(node, (u0, m, c, thr))
    assert torch.autograd.gradgradcheck(node, (u0, m, c, thr))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_steps=st.integers(1, 6), lam=st.floats(0.0, 2.0),
       scale=st.sampled_from([1e-2, 1.0, 1e2]), batched=st.booleans())
def test_smooth_node_gradients_equal_autograd_through_the_steps(seed, n_steps, lam, scale, batched):
    g = _gen(seed)
    k, s, m = 2, 3, 6
    shape_m = (k, m, m) if batched else (m, m)
    m0 = torch.eye(m, dtype=F64) - 0.3 * torch.rand(shape_m, generator=g, dtype=F64) / m
    c0 = scale * torch.randn((k, s, m) if batched else (s, m), generator=g, dtype=F64)
    u00 = scale * torch.randn(c0.shape, generator=g, dtype=F64)
    u00[..., 0] = 0.0  # entries at exactly 0, where sign(v) can vanish
    weights = torch.randn(c0.shape, generator=g, dtype=F64)
    thr0 = torch.tensor(lam * scale, dtype=F64)
    results = []
    for fused in (True, False):
        mm, c, u0, thr = (v.clone().requires_grad_() for v in (m0, c0, u00, thr0))
        if fused:
            out = unrolled_smooth_ista(u0, mm, c, thr, n_steps)
        else:
            out = u0
            for _ in range(n_steps):
                out = SmoothSoftThreshold(1.0).prox(torch.baddbmm(c, out, mm) if batched else torch.addmm(c, out, mm),
                                                    thr)
        (out * weights).sum().backward()
        results.append([out.detach()] + [v.grad for v in (mm, c, u0, thr)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale ** 2)


def test_learned_ista_takes_the_node_only_for_one_shared_plan_entry():
    g = _gen(12)
    op_dictionary = PerformerDictionary(2, 4, 6, normalize_input=True, normalize_atoms=True, generator=g).double()
    x = torch.randn(3, 2, 4, 10, generator=g, dtype=F64)
    q = torch.randn(3, 2, 10, 4, generator=g, dtype=F64, requires_grad=True)
    for threshold, per_step, expected in ((SmoothSoftThreshold, False, "_UnrolledSmoothISTABackward"),
                                          (SoftThreshold, False, "_UnrolledSoftISTABackward"),
                                          (SmoothSoftThreshold, True, None)):
        layer = _layer(op_dictionary, LearnedISTA(6, max_iter=4, per_step=per_step, dtype=F64), threshold=threshold)
        name = _code_node(layer, x, q)
        if expected is None:
            assert "Unrolled" not in name
        else:
            assert name == expected


@pytest.mark.parametrize("case", ["tol", "trace", "grad_steps", "no_grad", "nonneg", "fista", "nothing_learns",
                                  "autocast"])
def test_the_loop_runs_where_the_node_does_not_apply(case):
    g = _gen(5)
    weight = torch.randn(12, 20, generator=g, dtype=F64)
    solver = {"tol": ISTA(max_iter=7, tol=1e-9), "fista": FISTA(max_iter=7)}.get(case, ISTA(max_iter=7))
    threshold = NonNegSoftThreshold if case == "nonneg" else SoftThreshold
    layer = _layer(LinearDictionary(weight=weight, learnable=case != "nothing_learns"), solver,
                   learnable=case != "nothing_learns", threshold=threshold)
    x = torch.randn(9, 12, generator=g, dtype=F64)
    kwargs = {"trace": {"trace": True}, "grad_steps": {"grad_steps": 7}}.get(case, {})
    if case == "autocast":  # autocast picks each product's dtype (bf16 on the CPU for float32 operands)
        layer, x = layer.float(), x.float()
    with torch.set_grad_enabled(case != "no_grad"), torch.autocast("cpu", enabled=case == "autocast"):
        result = layer.solver.solve(layer.bind(), x, layer.threshold, **kwargs)
    name = _node_name(result.code)
    assert name is None or "Unrolled" not in name
    # and the loop's answer is the node's where both run
    if case in ("trace", "grad_steps"):
        torch.testing.assert_close(result.code, layer.solve(x).code, rtol=1e-12, atol=1e-12)


def test_the_node_reports_the_loops_counters():
    g = _gen(6)
    layer = _layer(LinearDictionary(weight=torch.randn(12, 20, generator=g, dtype=F64), learnable=True), ISTA(max_iter=4))
    x = torch.randn(5, 12, generator=g, dtype=F64)
    fused = layer.solve(x)
    loop = layer.solver.solve(layer.bind(), x, layer.threshold, grad_steps=4)
    assert _node_name(fused.code) == "_UnrolledSoftISTABackward" and "Unrolled" not in _node_name(loop.code)
    assert fused.n_iter == loop.n_iter == 4
    assert torch.equal(fused.n_iter_per_sample, loop.n_iter_per_sample)
    assert torch.equal(fused.converged, loop.converged)
    torch.testing.assert_close(fused.state["u"], loop.state["u"])


# --- the products --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lead", [(3,), (2, 3)])
def test_cross_of_a_shared_block_equals_the_broadcast_product(lead):
    g = _gen(7)
    w = torch.randn(*lead, 2, 5, 4, generator=g, dtype=F64, requires_grad=True)
    k = torch.randn(2, 5, 3, generator=g, dtype=F64, requires_grad=True)
    torch.testing.assert_close(cross_of(w, k), w.transpose(-1, -2) @ k, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(cross_of(k, w), k.transpose(-1, -2) @ w, rtol=1e-14, atol=1e-14)
    assert torch.autograd.gradcheck(cross_of, (w, k))
    assert torch.autograd.gradgradcheck(cross_of, (w, k))
    assert torch.autograd.gradcheck(cross_of, (k, w))


def test_block_gram_diagonal_is_the_gram_diagonal_with_the_same_derivatives():
    g = _gen(8)
    phi0 = torch.rand(3, 2, 10, 4, generator=g, dtype=F64)
    k0 = torch.randn(2, 10, 5, generator=g, dtype=F64)
    weights = torch.randn(3, 2, 9, generator=g, dtype=F64)
    grads = []
    for from_blocks in (True, False):
        phi, k = phi0.clone().requires_grad_(), k0.clone().requires_grad_()
        gram, diagonal = _block_gram([phi, k], (3, 2))
        if not from_blocks:
            diagonal = gram.diagonal(dim1=-2, dim2=-1)
        assert torch.equal(diagonal, gram.diagonal(dim1=-2, dim2=-1))
        ((diagonal.rsqrt() * weights).sum() + gram.square().sum()).backward()
        grads.append((phi.grad, k.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_step_matrix_second_derivatives():
    g = _gen(9)
    w = torch.randn(2, 6, 4, generator=g, dtype=F64)
    r = (w.transpose(-1, -2) @ w).requires_grad_()
    s = (torch.rand(2, 4, generator=g, dtype=F64) + 0.2).requires_grad_()
    inv_sqrt_L = torch.tensor([[0.5], [0.3]], dtype=F64)
    assert torch.autograd.gradgradcheck(_ScaledStepMatrix.apply, (r, s, inv_sqrt_L))
    assert torch.autograd.gradcheck(lambda r: _ScaledStepMatrix.apply(r, s.detach(), inv_sqrt_L), (r,))


def test_scaled_step_needs_a_raw_gram_and_stacked_codes():
    g = _gen(10)
    w = torch.randn(2, 6, 4, generator=g, dtype=F64)
    u = torch.randn(2, 3, 4, generator=g, dtype=F64)
    L = torch.tensor(5.0, dtype=F64)
    assert DenseOperator(w, stacked=True).scaled_step(u, u, L) is None
    s = torch.rand(2, 4, generator=g, dtype=F64) + 0.5
    op = DenseOperator(w, stacked=True, column_scale=s, raw_gram=w.transpose(-1, -2) @ w)
    r, t, b, step = op.scaled_step(u, u, L)
    assert r.shape == (2, 4, 4) and t.shape == (2, 4) and b.shape == (2, 3, 4) and step.shape == ()
    # u M + b/L with M = I - T R T is the operator's gradient step
    m = torch.eye(4, dtype=F64) - t.unsqueeze(-1) * r * t.unsqueeze(-2)
    torch.testing.assert_close(u @ m + b * step, op.gradient_step(u, u, L))
    per_matrix = torch.tensor([4.0, 6.0], dtype=F64).reshape(2, 1, 1)
    r, t, b, step = op.scaled_step(u, u, per_matrix)
    assert step.shape == (2, 1, 1)
    m = torch.eye(4, dtype=F64) - t.unsqueeze(-1) * r * t.unsqueeze(-2)
    torch.testing.assert_close(u @ m + b * step, op.gradient_step(u, u, per_matrix))
    assert op.scaled_step(u[:1], u[:1], L) is None  # codes of another batch


def test_a_subclass_that_changes_the_iteration_takes_the_loop():
    class Doubled(ISTA):
        def code(self, state, threshold, L):
            return 2 * state["u"]

    g = _gen(11)
    layer = _layer(LinearDictionary(weight=torch.randn(12, 20, generator=g, dtype=F64), learnable=True),
                   Doubled(max_iter=3))
    x = torch.randn(4, 12, generator=g, dtype=F64)
    result = layer.solve(x)
    assert "Unrolled" not in _node_name(result.code)
    torch.testing.assert_close(result.code, 2 * result.state["u"])
