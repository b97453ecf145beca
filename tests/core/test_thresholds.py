"""The soft threshold against its closed form, and its hand-written backward against autograd's."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from sparsecode import SoftThreshold
from sparsecode.thresholds import _SoftShrink

F64 = torch.float64


def _reference_soft(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sign(v) * torch.relu(v.abs() - t)


@pytest.mark.parametrize("t_shape", [(1,), (4, 1), (1, 6), (4, 6), (3, 4, 1), (1, 1, 6)])
def test_soft_shrink_backward_matches_autograd_and_passes_gradcheck(t_shape):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, 6, generator=g, dtype=F64, requires_grad=True)
    t = (0.2 + torch.rand(t_shape, generator=g, dtype=F64)).requires_grad_(True)
    out = _SoftShrink.apply(v, t)
    torch.testing.assert_close(out, _reference_soft(v, t), rtol=0, atol=0)
    grad_out = torch.randn(out.shape, generator=g, dtype=F64)
    ours = torch.autograd.grad((out * grad_out).sum(), (v, t))
    ref = torch.autograd.grad((_reference_soft(v, t) * grad_out).sum(), (v, t))
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_SoftShrink.apply, (v, t))
    assert torch.autograd.gradgradcheck(_SoftShrink.apply, (v, t))


def test_learnable_soft_threshold_with_a_per_row_step_gets_the_reference_gradients():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(4, 6, generator=g, dtype=F64, requires_grad=True)
    step = torch.rand(4, 1, generator=g, dtype=F64) + 0.5  # one step per row: the tensor-level path
    threshold = SoftThreshold(torch.full((6,), 0.3, dtype=F64), learnable=True)
    out = threshold.prox(v, step)
    lam = threshold.lam_param.detach().clone().requires_grad_(True)
    ref = _reference_soft(v, lam * step)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad_out = torch.randn(out.shape, generator=g, dtype=F64)
    ours = torch.autograd.grad((out * grad_out).sum(), (v, threshold.lam_param))
    theirs = torch.autograd.grad((ref * grad_out).sum(), (v, lam))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-3, 1.0, 1e3]))
@settings(max_examples=30)
def test_soft_threshold_paths_agree(seed, scale):
    # a scalar level without gradient (one softshrink kernel) and a tensor level (custom backward): the same values
    g = torch.Generator().manual_seed(seed)
    v = scale * torch.randn(5, 7, generator=g, dtype=F64)
    level = float(torch.rand((), generator=g, dtype=F64)) * scale
    scalar = SoftThreshold(level).prox(v, 1.0)
    tensor = SoftThreshold(level).prox(v, torch.ones(5, 1, dtype=F64))
    torch.testing.assert_close(scalar, tensor, rtol=0, atol=0)
    torch.testing.assert_close(scalar, _reference_soft(v, torch.tensor(level, dtype=F64)), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["soft", "nonneg_soft", "hard", "smooth_soft"])
def test_penalty_change_is_the_difference_of_the_penalties(kind):
    from sparsecode import get_threshold

    g = torch.Generator().manual_seed(2)
    u = torch.randn(6, 9, generator=g, dtype=F64)
    u_new = u + 0.3 * torch.randn(6, 9, generator=g, dtype=F64)
    if kind == "nonneg_soft":
        u, u_new = u.abs(), u_new.abs()
    threshold = get_threshold(kind, lam=torch.rand(9, generator=g, dtype=F64) + 0.1)
    torch.testing.assert_close(threshold.penalty_change(u, u_new), threshold.penalty(u_new) - threshold.penalty(u),
                               rtol=1e-12, atol=1e-12)


def test_l1_penalty_change_resolves_changes_below_the_rounding_of_the_penalty():
    u = torch.full((1, 1000), 1.0, dtype=F64)
    u_new = u.clone()
    u_new[0, 0] += 1e-14  # the penalty itself is 1000: its difference loses this change to rounding
    threshold = SoftThreshold(1.0)
    assert threshold.penalty_change(u, u_new).item() == pytest.approx(1e-14, rel=1e-3)
    assert abs((threshold.penalty(u_new) - threshold.penalty(u)).item() - 1e-14) > 1e-15


@given(seed=st.integers(0, 10_000), per_atom=st.booleans(), nonneg=st.booleans(),
       dtype=st.sampled_from([torch.float32, F64]))
@settings(max_examples=40, deadline=None)
def test_zero_is_optimal_is_a_zero_kkt_residual_at_zero(seed, per_atom, nonneg, dtype):
    # the l1 thresholds' one-reduction test must give exactly the answer of the KKT residual at u = 0, including
    # coordinates on the boundary |b_i| = lam_i, NaN signals and the default (residual-based) route
    from sparsecode import HardThreshold, NonNegSoftThreshold

    g = torch.Generator().manual_seed(seed)
    lam = (0.5 + torch.rand(7, generator=g, dtype=F64)) if per_atom else 0.8
    kind = NonNegSoftThreshold if nonneg else SoftThreshold
    threshold = kind(lam)
    b = torch.randn(12, 7, generator=g, dtype=F64) * 0.6
    lam_row = threshold.lam.to(dtype).expand(7)
    b[4, 2] = float(lam_row[2]) * (-1 if not nonneg else 1)  # one coordinate near the boundary
    b[5, 0] = float("nan")
    b = b.to(dtype)
    b[3] = lam_row  # every coordinate exactly on the boundary, in this dtype: optimal
    fast = threshold.zero_is_optimal(b)
    slow = threshold.kkt_residual(torch.zeros_like(b), -b) == 0
    assert torch.equal(fast, slow)
    assert bool(fast[3]) and not bool(fast[5])
    # the generic route (through the residual) of a threshold without its own test
    hard = HardThreshold(0.8)
    assert torch.equal(hard.zero_is_optimal(b), hard.kkt_residual(torch.zeros_like(b), -b) == 0)


@given(lam=st.floats(0.01, 3.0), step=st.floats(0.1, 2.0))
def test_smooth_soft_threshold_jumps_at_zero_as_released(lam, step):
    # sign(v) GELU(|v| - s lam): its one-sided limits at 0 are -/+ GELU(-s lam), a jump of 2|GELU(-s lam)| that the
    # docstring and the thresholds guide state (the cause of float32/float64 gaps in the released VARS models)
    from sparsecode import SmoothSoftThreshold

    threshold = SmoothSoftThreshold(lam)
    tiny = torch.tensor([-1e-300, 1e-300], dtype=F64)
    left, right = threshold.prox(tiny, step)
    jump = float(right - left)
    expected = 2 * float(torch.nn.functional.gelu(torch.tensor(-lam * step, dtype=F64)))  # GELU(-s lam) < 0
    assert jump == pytest.approx(expected, rel=1e-12) and jump < 0
    v = torch.linspace(-1, 1, 101, dtype=F64)
    zero = threshold.prox(v, step) == 0  # only at v = 0 and |v| = s lam (GELU(0) = 0)
    assert torch.equal(zero, (v == 0) | (v.abs() - threshold.lam * step == 0))


def test_a_threshold_follows_the_codes_dtype_and_device():
    threshold = SoftThreshold(0.5)  # lambda kept in float64 on the CPU
    v = torch.tensor([-1.0, 0.2, 2.0], dtype=torch.float32)
    out = threshold.prox(v, torch.tensor(1.0))
    assert out.dtype == torch.float32 and out.device == v.device
    lam = threshold._lam_like(torch.empty(0, dtype=torch.float32, device="meta"))
    assert lam.device.type == "meta" and lam.dtype == torch.float32  # a module left elsewhere moves to the codes
