r"""Thresholds: the proximal maps of sparsity penalties.

A threshold owns the penalty weight :math:`\lambda` and computes

.. math:: \operatorname{prox}_{s\,\lambda R}(v) = \arg\min_u \tfrac12\|u - v\|^2 + s\,\lambda R(u),

for a step :math:`s` (solvers pass :math:`s = 1/L`). :math:`\lambda` may be a scalar, a tensor broadcastable to the
code (per atom, per head, ...), fixed or learnable. A negative :math:`\lambda` is an error; a learnable one is clamped at 0
when used.
"""
from __future__ import annotations

import abc
import math

import torch
from torch import nn
import torch.nn.functional as F

from ._reductions import host_read_is_free, per_sample_dot, per_sample_max, per_sample_sum
from ._validation import check_nonnegative

__all__ = [
    "Threshold",
    "SoftThreshold",
    "NonNegSoftThreshold",
    "HardThreshold",
    "SmoothSoftThreshold",
    "THRESHOLDS",
    "get_threshold",
]


def _sum_to_shape(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` over the dimensions along which a tensor of ``shape`` was broadcast to ``t``'s shape."""
    lead = t.ndim - len(shape)
    if lead:
        t = t.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    return t.sum(dim=dims, keepdim=True) if dims else t


class _SoftShrink(torch.autograd.Function):
    r""":math:`T_t(v) = v - \operatorname{clamp}(v, -t, t)` for a tensor threshold ``t`` broadcastable to ``v``, with
    the backward written out: :math:`\partial v = g\,\mathbb 1[T \ne 0]`, :math:`\partial t = -\sum g\,
    \operatorname{sign}(T)` (two passes, where autograd through ``minimum``/``maximum`` takes several mask and
    scatter kernels). The backward is made of differentiable operations."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = v - torch.clamp(v, -t, t)
        ctx.save_for_backward(out)
        ctx.t_shape = t.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        grad_v = grad * (out != 0).to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_t = None
        if ctx.needs_input_grad[1]:
            grad_t = _sum_to_shape(-(grad * torch.sign(out)), ctx.t_shape)
        return grad_v, grad_t


def _single_pass_ok(v: torch.Tensor, t: torch.Tensor) -> bool:
    # F.softshrink takes a Python number: usable for a scalar threshold that needs no gradient, on the CPU
    return (host_read_is_free(v) and v.is_floating_point() and t.numel() == 1
            and not (t.requires_grad and torch.is_grad_enabled()))


class Threshold(nn.Module, abc.ABC):
    r"""Base class: the proximal map of :math:`s\,\lambda R` and the penalty :math:`\lambda R(u)`.

    Args:
        lam: the penalty weight :math:`\lambda \ge 0`: a float or a tensor broadcastable to the code.
        learnable: make :math:`\lambda` an ``nn.Parameter``.
    """

    #: whether the penalty is convex (its KKT residual is a certificate of optimality)
    convex: bool = True
    #: whether :math:`R` is positively homogeneous of degree 1 (:math:`R(cu) = cR(u)` for :math:`c > 0`), so that
    #: :math:`\operatorname{prox}_{s\lambda R}(cv) = c\,\operatorname{prox}_{(s/c)\lambda R}(v)` (solvers may then
    #: threshold a rescaled point with a fixed step)
    homogeneous: bool = False

    def __init__(self, lam: float | torch.Tensor = 0.1, *, learnable: bool = False) -> None:
        super().__init__()
        check_nonnegative(lam, "lam")
        # a fixed lambda keeps full (float64) precision and is cast to the code's dtype at use
        if isinstance(lam, torch.Tensor):
            lam_t = lam.detach().clone()
            lam_t = lam_t if lam_t.is_floating_point() else lam_t.to(torch.get_default_dtype())
        else:
            lam_t = torch.tensor(float(lam), dtype=torch.get_default_dtype() if learnable else torch.float64)
        if learnable:
            self.lam_param = nn.Parameter(lam_t)
        else:
            self.register_buffer("lam_param", lam_t)
        self.learnable = learnable

    @property
    def lam(self) -> torch.Tensor:
        """The current :math:`\\lambda` (clamped at 0 when learnable)."""
        return self.lam_param.clamp_min(0) if self.learnable else self.lam_param

    def _lam_like(self, v: torch.Tensor) -> torch.Tensor:
        # a threshold that was not moved with the codes (``solver.solve(op, x_cuda, SoftThreshold(0.1))``) follows
        # them: one small copy per call, none once the module is on the codes' device (``layer.to(device)``)
        lam = self.lam
        if lam.dtype != v.dtype and v.is_floating_point():
            lam = lam.to(v.dtype)
        if lam.device != v.device:
            lam = lam.to(v.device)
        return lam

    @abc.abstractmethod
    def prox(self, v: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        r"""Return :math:`\operatorname{prox}_{s\lambda R}(v)` with ``s = step``."""

    @abc.abstractmethod
    def penalty(self, u: torch.Tensor) -> torch.Tensor:
        r"""Return :math:`\lambda R(u)` per sample (summed over every dimension but the first), shape ``(B,)``."""

    def penalty_change(self, u: torch.Tensor, u_new: torch.Tensor) -> torch.Tensor:
        r""":math:`\lambda R(u_{new}) - \lambda R(u)` per sample, ``(B,)``. The default is the difference of the two
        penalties; the :math:`\ell_1` thresholds sum the change element by element, which stays accurate when it is
        far below the rounding error of the penalties themselves (solvers that test for decrease need that)."""
        return self.penalty(u_new) - self.penalty(u)

    def kkt_residual(self, u: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        r"""Per-sample violation of :math:`0 \in \nabla f(u) + \lambda\partial R(u)`, shape ``(B,)``.

        ``grad`` is :math:`\nabla f(u) = P^\top(Pu - x)`. The default is the norm of the proximal-gradient mapping
        :math:`\|u - \operatorname{prox}_{R\lambda}(u - \nabla f(u))\|_\infty`, zero exactly at fixed points.
        """
        return per_sample_max((u - self.prox(u - grad, 1.0)).abs())

    def zero_is_optimal(self, b: torch.Tensor) -> torch.Tensor:
        r"""Per sample, whether the KKT conditions hold exactly at :math:`u = 0` for :math:`b = P^\top x` (the
        gradient there is :math:`-b`): :meth:`kkt_residual` at 0 is 0, shape ``(B,)``. For a convex penalty, 0 is
        then the minimiser. The :math:`\ell_1` thresholds answer with one reduction (:math:`\|b\|_\infty \le
        \lambda`) instead of the residual's full-size passes."""
        return self.kkt_residual(torch.zeros_like(b), -b) == 0

    def active_face(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        r"""The face of the penalty at ``u``: the support :math:`S` (a bool mask) and the subgradient :math:`s` of
        :math:`R` on it (a tensor like ``u``), where :math:`\partial R` is the single point :math:`s_i`, so that
        the KKT conditions read :math:`(\nabla f(u))_S = -\lambda s_S` there. ``None`` (the default) for a penalty
        without such a face; the solvers' support polish (``polish_every``) needs one."""
        return None

    def extra_repr(self) -> str:
        lam = self.lam_param
        return f"lam={lam.item():g}" if lam.numel() == 1 else f"lam=tensor{tuple(lam.shape)}"


class SoftThreshold(Threshold):
    r"""Soft threshold, the prox of the :math:`\ell_1` norm:
    :math:`T_{s\lambda}(v) = \operatorname{sign}(v)\,(|v| - s\lambda)_+`, penalty :math:`\lambda\|u\|_1`."""

    homogeneous = True

    def prox(self, v: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        t = self._lam_like(v) * step
        if _single_pass_ok(v, t):
            # a single kernel; reading the scalar threshold costs no device synchronisation on the CPU
            return F.softshrink(v, float(t))
        # v - clamp(v, -t, t) == sign(v) * relu(|v| - t)
        if t.dtype != v.dtype or t.ndim > v.ndim:
            return v - torch.maximum(torch.minimum(v, t), -t)
        return _SoftShrink.apply(v, t)

    def penalty(self, u: torch.Tensor) -> torch.Tensor:
        return per_sample_sum(self._lam_like(u) * u.abs())

    def penalty_change(self, u: torch.Tensor, u_new: torch.Tensor) -> torch.Tensor:
        change = u_new.abs() - u.abs()
        return per_sample_dot(self._lam_like(change).expand_as(change), change)

    def kkt_residual(self, u: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        r"""KKT residual of the Lasso: :math:`|g_i + \lambda\,\mathrm{sign}(u_i)|` where :math:`u_i \ne 0`,
        :math:`(|g_i| - \lambda)_+` where :math:`u_i = 0`; the per-sample maximum."""
        lam = self._lam_like(u)
        active = u != 0
        viol = torch.where(active, (grad + lam * torch.sign(u)).abs(), (grad.abs() - lam).clamp_min(0))
        return per_sample_max(viol)

    def zero_is_optimal(self, b: torch.Tensor) -> torch.Tensor:
        r""":math:`|b_i| \le \lambda_i` for every coordinate (:math:`(|b_i| - \lambda_i)_+ = 0` exactly)."""
        lam = self._lam_like(b)
        if lam.numel() == 1:
            return per_sample_max(b.abs()) <= lam.reshape(())
        return per_sample_max(b.abs() - lam) <= 0

    def active_face(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Support :math:`u_i \ne 0`, subgradient :math:`\operatorname{sign}(u_i)`."""
        return u != 0, torch.sign(u)


class NonNegSoftThreshold(Threshold):
    r"""Non-negative soft threshold :math:`(v - s\lambda)_+`: the prox of
    :math:`\lambda\sum_i u_i + \iota_{u \ge 0}(u)` (non-negative Lasso)."""

    homogeneous = True

    def prox(self, v: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        return torch.relu(v - self._lam_like(v) * step)

    def penalty(self, u: torch.Tensor) -> torch.Tensor:
        if bool((u < 0).any()):
            return torch.full((u.shape[0],), math.inf, dtype=u.dtype, device=u.device)
        return per_sample_sum(self._lam_like(u) * u)

    def penalty_change(self, u: torch.Tensor, u_new: torch.Tensor) -> torch.Tensor:
        # both points feasible (u >= 0): the penalty is linear there
        change = u_new - u
        return per_sample_dot(self._lam_like(change).expand_as(change), change)

    def kkt_residual(self, u: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        r"""KKT residual: :math:`|g_i + \lambda|` where :math:`u_i > 0`, :math:`(-(g_i + \lambda))_+` where
        :math:`u_i = 0`, and :math:`|u_i|` where :math:`u_i < 0` (infeasible); the per-sample maximum."""
        lam = self._lam_like(u)
        r = grad + lam
        viol = torch.where(u > 0, r.abs(), torch.where(u == 0, (-r).clamp_min(0), u.abs()))
        return per_sample_max(viol)

    def zero_is_optimal(self, b: torch.Tensor) -> torch.Tensor:
        r""":math:`b_i \le \lambda_i` for every coordinate (:math:`(b_i - \lambda_i)_+ = 0` exactly)."""
        lam = self._lam_like(b)
        if lam.numel() == 1:
            return per_sample_max(b) <= lam.reshape(())
        return per_sample_max(b - lam) <= 0

    def active_face(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Support :math:`u_i > 0`, subgradient :math:`1`."""
        return u > 0, torch.ones_like(u)


class HardThreshold(Threshold):
    r"""Hard threshold, the prox of :math:`\lambda\|u\|_0`: :math:`v\,\mathbb 1[|v| > \sqrt{2 s \lambda}]`.

    The penalty is non-convex: solvers reach a fixed point (a local minimiser), not necessarily the global one.
    """

    convex = False

    def prox(self, v: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        t = torch.sqrt(2 * self._lam_like(v) * step)
        return v * (v.abs() > t).to(v.dtype)

    def penalty(self, u: torch.Tensor) -> torch.Tensor:
        return per_sample_sum(self._lam_like(u) * (u != 0).to(u.dtype))


class SmoothSoftThreshold(Threshold):
    r"""Smoothed soft threshold of the original VARS code: :math:`\operatorname{sign}(v)\,\mathrm{GELU}(|v| - s\lambda)`.

    Not the prox of a known penalty; it approximates :math:`T_{s\lambda}` (equal for :math:`|v| - s\lambda \gg 1`).
    :meth:`penalty` reports :math:`\lambda\|u\|_1`, the penalty it stands in for.

    It is discontinuous at :math:`v = 0`, where it jumps from :math:`-\mathrm{GELU}(-s\lambda)` to
    :math:`+\mathrm{GELU}(-s\lambda)` (from :math:`+0.115` to :math:`-0.115` at :math:`s\lambda = 0.3`), and it
    returns exact zeros only at :math:`v = 0` and :math:`|v| = s\lambda`: an entry whose input sits near 0 and
    changes sign by rounding moves by :math:`2|\mathrm{GELU}(-s\lambda)|`.
    That is why float32 and float64 runs of a model built on it can differ far more than the rounding error: 1e-2 in
    the logits of a random-weight ``gfnet_vars_d`` on one CPU, 3e-7 on another where no entry happened to cross 0.
    Kept as released, for the ``"original"`` configuration.
    """

    convex = False

    def prox(self, v: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        # sign(v) has zero derivative: detaching it spares the backward a full-size product; the threshold enters
        # negated so that its (broadcast) gradient is a sum, not a full-size negation then a sum
        return torch.sign(v).detach() * F.gelu(v.abs() + (self._lam_like(v) * step).neg())

    def penalty(self, u: torch.Tensor) -> torch.Tensor:
        return per_sample_sum(self._lam_like(u) * u.abs())


#: name → threshold class, so configurations can say ``threshold="soft"``
THRESHOLDS: dict[str, type[Threshold]] = {
    "soft": SoftThreshold,
    "nonneg_soft": NonNegSoftThreshold,
    "hard": HardThreshold,
    "smooth_soft": SmoothSoftThreshold,
}


def get_threshold(name: str, **kwargs) -> Threshold:
    """Build a threshold by name (one of :data:`THRESHOLDS`)."""
    if name not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {sorted(THRESHOLDS)}, got {name!r}")
    return THRESHOLDS[name](**kwargs)
