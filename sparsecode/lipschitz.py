r"""Step sizes: upper bounds on the Lipschitz constant :math:`L = \|P^\top P\|_2` of :math:`\nabla f`.

ISTA and FISTA take steps :math:`1/L`; an underestimated :math:`L` makes them diverge, so every estimate here errs
upwards. :func:`power_iteration` estimates the top eigenvalue of :math:`G = P^\top P` with a fixed number of Lanczos
steps (Krylov power iteration with full re-orthogonalisation: the Ritz value converges like
:math:`\exp(-4k\sqrt{\text{gap}})` instead of plain power iteration's :math:`\exp(-2k\,\text{gap})`), with no host
synchronisation and no early exit, and multiplies it by a small safety margin. It warm-starts from the previous
call's top Ritz vector.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch

__all__ = ["power_iteration", "perron_bound", "DEFAULT_MARGIN"]

#: multiplicative safety margin applied to the estimates
DEFAULT_MARGIN = 1.002


def _seeded_normal(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Standard normal draws from a CPU generator seeded with 0, on ``device`` (see :func:`_cached_seeded_normal`)."""
    if device.type != "cpu" and device.index is None:  # "cuda" means the current device: key the cache by its index
        index = getattr(getattr(torch, device.type, None), "current_device", lambda: None)()
        if isinstance(index, int):
            device = torch.device(device.type, index)
    return _cached_seeded_normal(shape, dtype, device)


@functools.lru_cache(maxsize=16)
def _cached_seeded_normal(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Standard normal draws from a CPU generator seeded with 0, moved to ``device``: the same start vector on every
    device (a CUDA generator with the same seed draws other numbers), so the estimate does not depend on where the
    operator lives. Cached (read-only): a fixed seed gives the same draws at every call, and the cache spares the
    host-to-device copy."""
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable whatever mode the caller is in
        gen = torch.Generator(device="cpu").manual_seed(0)
        return torch.randn(shape, dtype=dtype, generator=gen).to(device)


def power_iteration(
    gram: Callable[[torch.Tensor], torch.Tensor],
    probe_shape: Sequence[int],
    vector_ndim: int,
    *,
    n_iter: int = 30,
    init: torch.Tensor | None = None,
    margin: float = DEFAULT_MARGIN,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Estimate the top eigenvalue of the symmetric PSD map ``gram`` (Lanczos-accelerated power iteration).

    The probe has shape ``probe_shape``; its last ``vector_ndim`` dimensions form one vector and the leading dimensions
    index independent operators (heads, batch entries), each estimated separately. With the Krylov basis
    :math:`Q_k = [q_1, \dots, q_k]` built from :math:`q_1 = v/\|v\|`, the estimate is

    .. math:: L = \mathrm{margin}\cdot\lambda_{\max}(Q_k^\top G Q_k) \;\le\; \mathrm{margin}\cdot\|G\|_2 .

    Args:
        gram: the map :math:`v \mapsto P^\top P v`.
        probe_shape: the shape of a probe code.
        vector_ndim: how many trailing dimensions form one vector.
        n_iter: Krylov dimension (number of ``gram`` calls; fixed, so no host round trip).
        init: warm start (a previous call's vector), used when its shape matches.
        margin: safety factor ``>= 1`` applied to the estimate.
        dtype, device, generator: for the random start (``generator=None``: a CPU generator with a fixed seed, so
            the estimate is a deterministic function of the operator and the warm start, the same on every device).

    Returns:
        ``(L, v)``: ``L`` has shape ``probe_shape[:-vector_ndim] + (1,) * vector_ndim`` (broadcastable to codes) and
        ``v`` is the top Ritz vector (pass it back as ``init`` to warm-start).
    """
    probe_shape = tuple(int(s) for s in probe_shape)
    lead = probe_shape[: len(probe_shape) - vector_ndim]
    vec_numel = 1
    for s in probe_shape[len(lead):]:
        vec_numel *= s
    k = max(1, min(int(n_iter), vec_numel))
    if generator is None:
        noise = _seeded_normal(probe_shape, dtype, torch.device("cpu" if device is None else device))
    else:
        noise = torch.randn(probe_shape, dtype=dtype, device=device, generator=generator)
    if init is not None and tuple(init.shape) == probe_shape:
        v = init.detach().to(dtype=dtype, device=device)
        # a warm start close to an eigenvector would stall the Krylov space: mix in a little noise
        v = v + 1e-3 * v.flatten(len(lead)).norm(dim=-1).reshape(lead + (1,) * vector_ndim) * noise
    else:
        v = noise
    tiny = torch.finfo(dtype).tiny

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(lead + (vec_numel,))

    with torch.no_grad():
        q = flat(v)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(tiny)
        basis = [q]
        alphas, betas = [], []
        for j in range(k):
            w = flat(gram(q.reshape(probe_shape)).to(dtype))
            alphas.append((w * q).sum(dim=-1))
            if j == k - 1:
                break
            Q = torch.stack(basis, dim=-1)  # (*lead, numel, j+1)
            for _ in range(2):  # full re-orthogonalisation, twice for stability
                w = w - (Q @ (Q.transpose(-1, -2) @ w.unsqueeze(-1))).squeeze(-1)
            beta = w.norm(dim=-1)
            betas.append(beta)
            q = w / beta.unsqueeze(-1).clamp_min(tiny)
            basis.append(q)
        T = torch.diag_embed(torch.stack(alphas, dim=-1))
        if betas:
            off = torch.diag_embed(torch.stack(betas, dim=-1), offset=1)
            T = T + off + off.transpose(-1, -2)
        evals, evecs = torch.linalg.eigh(T)
        top = evals[..., -1]
        ritz = (torch.stack(basis, dim=-1) @ evecs[..., -1:]).squeeze(-1)
    L = (top.clamp_min(0) * margin).reshape(lead + (1,) * vector_ndim)
    return L, ritz.reshape(probe_shape)


def perron_bound(gram: torch.Tensor, n_iter: int = 8, rounding_margin: float = 1e-5,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    r"""A guaranteed upper bound on :math:`\|G\|_2` for symmetric matrices ``gram`` ``(*batch, m, m)``, tight when
    :math:`G` is entrywise non-negative (e.g. the Gram matrix of positive random features).

    With :math:`A = |G|` (entrywise), :math:`\|G\|_2 \le \rho(A)`, and for any positive vector :math:`v` the
    Collatz–Wielandt bound gives :math:`\rho(A) \le \max_i (Av)_i / v_i`. Starting from the row sums and taking
    ``n_iter`` power steps makes :math:`v` approach the Perron vector, and the bound approaches :math:`\rho(A)` like
    :math:`(\lambda_2/\lambda_1)^{n}`, fast for the dominant Perron root of a positive matrix. For
    :math:`G \ge 0`, :math:`\rho(A) = \|G\|_2`. No host synchronisation; a fixed number of batched products.

    With ``scale`` :math:`s > 0` the bound is that of :math:`D G D`, :math:`D = \operatorname{diag}(s)`, without
    forming :math:`DGD` itself: :math:`|DGD| = D|G|D` is scaled into the buffer of :math:`|G|` (two in-place passes),
    so that every step is one batched product and three small in-place operations.

    Args:
        gram: symmetric matrices, ``(*batch, m, m)``.
        n_iter: power steps before the bound is read.
        rounding_margin: relative margin for the rounding of the products.
        scale: optional positive diagonal scale ``(*batch, m)`` (the bound is then that of :math:`DGD`).

    Returns:
        ``(*batch,)`` upper bounds.
    """
    with torch.no_grad():
        a = gram.detach().abs()
        if scale is not None:  # |DGD| = D|G|D, formed once in the buffer of |G|: one product per step
            s = scale.detach().to(a.dtype)
            a.mul_(s.unsqueeze(-1)).mul_(s.unsqueeze(-2))
        tiny, eps = torch.finfo(a.dtype).tiny, torch.finfo(a.dtype).eps

        m = a.shape[-1]
        flat = a.reshape(-1, m, m)

        def product(v: torch.Tensor) -> torch.Tensor:
            # A is symmetric; the row-vector product is the fast batched form (bmm on flat views: one dispatch)
            return torch.bmm(v.reshape(-1, 1, m), flat).reshape(v.shape)

        v = a.sum(dim=-2)  # one step from the all-ones vector: the row-sum bound
        for _ in range(n_iter):
            # a floor keeps v strictly positive (zero rows, reducible A), which the bound needs
            v = product(v.div_(v.amax(dim=-1, keepdim=True).clamp_min_(tiny)).add_(eps))
        v.div_(v.amax(dim=-1, keepdim=True).clamp_min_(tiny)).add_(eps)
        bound = (product(v) / v).amax(dim=-1)
    return bound * (1 + rounding_margin)
