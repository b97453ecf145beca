"""LearnedISTA reproduces the released VARS-D update, reduces to plain ISTA, and learns per step when asked."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsecode import (
    ISTA,
    ConvDictionary,
    LearnedISTA,
    LinearDictionary,
    PerformerDictionary,
    SmoothSoftThreshold,
    SoftThreshold,
    SparseReconstruction,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vars_d_reference(phi, v, A, s_lam, s_L, lam, n_steps):
    """The released VARS-D iteration in its own column layout: codes (B, H, m, d), K̃ = A K A."""
    kk = phi.transpose(-2, -1) @ phi
    b = phi.transpose(-2, -1) @ v
    L = kk.norm(p=1, dim=-1).max(dim=-1)[0].detach()[..., None, None] + 1
    kk = A @ kk @ A
    L = L / s_L
    lam = lam * s_lam
    u = torch.sign(b) * F.gelu(b.abs() - lam)
    for _ in range(n_steps):
        u = u - (kk @ u - b) / L
        u = torch.sign(u) * F.gelu(u.abs() - lam / L)
    return phi @ u  # (B, H, N, d)


def test_reproduces_the_released_vars_d_update():
    heads, n_tok, hd, m = 2, 7, 4, 8
    dictionary = PerformerDictionary(heads, hd, m, normalize_atoms=True, seed=0, dtype=F64)
    solver = LearnedISTA(m, max_iter=5, dtype=F64)
    with torch.no_grad():  # move the learned parameters away from their initial values
        solver.learned_k.add_(0.05 * torch.randn(m, m, generator=_gen(0), dtype=F64))
        solver.learned_lam.fill_(1.3)
        solver.learned_L.fill_(0.8)
    layer = SparseReconstruction(dictionary, solver=solver, threshold=SmoothSoftThreshold(0.3))
    tokens = 0.5 * torch.randn(3, heads, n_tok, hd, generator=_gen(1), dtype=F64)
    v = torch.randn(3, heads, n_tok, hd, generator=_gen(2), dtype=F64)
    z = layer(v.transpose(-1, -2), context=tokens)  # (B, H, d, N)
    phi = dictionary.features(tokens)
    expected = _vars_d_reference(phi, v, solver.learned_k, solver.learned_lam, solver.learned_L, 0.3, 5)
    assert torch.allclose(z.transpose(-1, -2), expected, atol=1e-12)
    assert {"learned_k", "learned_lam", "learned_L"} <= set(solver.state_dict())
    assert solver.learned_k.shape == (m, m) and solver.learned_lam.shape == (1,) and solver.learned_L.shape == (1,)


@pytest.mark.parametrize("heads", [None, 2])
def test_identity_parameters_soft_threshold_exact_L_is_plain_ista(heads):
    d = LinearDictionary(6, 5, n_heads=heads, lipschitz="exact", generator=_gen(0), dtype=F64)
    x = torch.randn((4,) + ((heads,) if heads else ()) + (6,), generator=_gen(1), dtype=F64)
    op = d.bind()
    learned = LearnedISTA(5, max_iter=9, lipschitz="operator", dtype=F64).solve(op, x, SoftThreshold(0.1))
    plain = ISTA(max_iter=9, init="prox_encode").solve(op, x, SoftThreshold(0.1))
    assert torch.allclose(learned.code, plain.code, atol=1e-12)


def test_per_step_parameters_are_separate_and_learn():
    m = 6
    solver = LearnedISTA(m, max_iter=4, per_step=True, dtype=F64)
    assert solver.learned_k.shape == (4, m, m) and solver.learned_L.shape == (4, 1)
    shared = LearnedISTA(m, max_iter=4, dtype=F64)
    d = PerformerDictionary(2, 3, m, normalize_atoms=True, dtype=F64)
    tokens = torch.randn(2, 2, 5, 3, generator=_gen(0), dtype=F64)
    x = torch.randn(2, 2, 3, 5, generator=_gen(1), dtype=F64)
    op = d.bind(tokens)
    threshold = SmoothSoftThreshold(0.2)
    # at initialisation the per-step solver computes the same code as the shared one
    assert torch.allclose(solver.solve(op, x, threshold).code, shared.solve(op, x, threshold).code, atol=1e-12)
    solver.solve(op, x, threshold).code.square().sum().backward()
    grads = solver.learned_L.grad.flatten()
    assert torch.isfinite(grads).all() and (grads != 0).all() and len(set(grads.tolist())) == 4
    assert solver.learned_k.grad.abs().sum() > 0 and solver.learned_lam.grad.abs().sum() > 0
    with torch.no_grad():
        solver.learned_k[2].mul_(1.1)
    assert not torch.allclose(solver.solve(op, x, threshold).code, shared.solve(op, x, threshold).code)


def test_bad_input():
    with pytest.raises(ValueError, match="lipschitz"):
        LearnedISTA(4, lipschitz="exact")
    with pytest.raises(ValueError, match="n_atoms"):
        LearnedISTA(0)
    conv = ConvDictionary(1, 2, 3, ndim=1, padding=1, signal_size=6)
    with pytest.raises(TypeError, match="dense"):
        LearnedISTA(2).solve(conv.bind(), torch.randn(1, 1, 6), SoftThreshold(0.1))
    with pytest.raises(ValueError, match="n_atoms=4"):
        LearnedISTA(4).solve(LinearDictionary(3, 5).bind(), torch.randn(2, 3), SoftThreshold(0.1))
    with pytest.raises(ValueError, match="implicit"):
        SparseReconstruction(LinearDictionary(3, 4), solver=LearnedISTA(4), differentiation="implicit")


def test_learned_ista_moves_between_dtypes_and_devices():
    """Regression: a helper named ``_apply`` once shadowed ``nn.Module._apply`` and broke ``.to()``."""
    from sparsecode import LearnedISTA

    solver = LearnedISTA(n_atoms=4)
    assert solver.to(torch.float64).learned_k.dtype == torch.float64
    assert solver.to("cpu").learned_lam.device.type == "cpu"


def _two_problems(m: int = 6):
    ops = [LinearDictionary(weight=torch.randn(5, m, generator=_gen(10 + i), dtype=F64)).bind() for i in range(2)]
    xs = [torch.randn(4, 5, generator=_gen(20 + i), dtype=F64) for i in range(2)]
    return ops, xs


class _GatedThreshold(SoftThreshold):
    """A soft threshold whose first prox waits until ``release`` is set (to interleave two solves)."""

    def __init__(self, lam, release, entered):
        super().__init__(lam)
        self.release, self.entered = release, entered

    def prox(self, v, step=1.0):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(timeout=30), "the other solve never finished"
        return super().prox(v, step)


def test_concurrent_solves_of_one_module_do_not_share_their_steps():
    """Regression: the per-solve steps lived on the module, so a second solve started while the first was running
    replaced (and on exit cleared) the first one's."""
    import threading

    m = 6
    solver = LearnedISTA(m, max_iter=4, per_step=True, dtype=F64)
    with torch.no_grad():
        solver.learned_k.add_(0.05 * torch.randn(4, m, m, generator=_gen(1), dtype=F64))
    ops, xs = _two_problems(m)
    with torch.no_grad():
        expected = [solver.solve(op, x, SoftThreshold(0.1)).code for op, x in zip(ops, xs)]
    release, entered = threading.Event(), threading.Event()
    results, errors = {}, []

    def first():
        try:
            with torch.no_grad():
                results[0] = solver.solve(ops[0], xs[0], _GatedThreshold(0.1, release, entered)).code
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(timeout=30)
    with torch.no_grad():  # the second solve runs from start to end while the first waits inside its own
        results[1] = solver.solve(ops[1], xs[1], SoftThreshold(0.1)).code
    release.set()
    thread.join(timeout=60)
    assert not errors, errors
    for got, want in zip((results[0], results[1]), expected):
        assert torch.equal(got, want)


def test_plan_belongs_to_its_solve():
    m = 6
    solver, other = LearnedISTA(m, max_iter=3, dtype=F64), LearnedISTA(m, max_iter=3, dtype=F64)
    with torch.no_grad():
        other.learned_L.fill_(0.5)
    ops, xs = _two_problems(m)
    op, x = ops[0], xs[0]
    gram = op.gram_matrix()
    # the step size needs no solve in progress: L̃ = (max row l1 of the Gram + 1) / s_L
    assert torch.allclose(solver.lipschitz(op, x), gram.abs().sum(-1).amax() + 1, rtol=1e-15)
    assert torch.allclose(other.lipschitz(op, x), 2 * (gram.abs().sum(-1).amax() + 1), rtol=1e-15)
    # another solver's plan is planned afresh with this solver's parameters
    assert torch.equal(solver.solve(other.plan(op), x, SoftThreshold(0.1)).code,
                       solver.solve(op, x, SoftThreshold(0.1)).code)
    # stepping by hand goes through the plan; the bare operator is refused with a clear error
    plan = solver.plan(op)
    b = plan.encode(x)
    state = solver.init_state(plan, x, b, SoftThreshold(0.1), solver.lipschitz(plan, x),
                              solver.initial_code(plan, b, SoftThreshold(0.1), None))
    for _ in range(3):
        state, _ = solver.step(plan, x, b, SoftThreshold(0.1), None, state, need_measure=False)
    assert torch.equal(state["u"], solver.solve(op, x, SoftThreshold(0.1)).code)
    with pytest.raises(TypeError, match="plan"):
        solver.step(op, x, b, SoftThreshold(0.1), None, state, need_measure=False)
    # a traced solve evaluates the objective through the plan's operator
    traced = solver.solve(op, x, SoftThreshold(0.1), trace=True)
    assert traced.trace.objective.shape[0] == 3
    assert not hasattr(solver, "_plan")  # nothing of a solve is left on the module
