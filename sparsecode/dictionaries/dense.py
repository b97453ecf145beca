r"""A dense operator :math:`P` given by a (batched) matrix, the bound form of dense and dynamic dictionaries.

``weight`` has shape ``(*batch, n, m)`` (``n`` signal features, ``m`` atoms, optional leading batch/head dims).
Two signal layouts are supported:

* ``stacked=False``: a signal is ``x[..., *batch, n]``, one vector per matrix (e.g. one vector per head);
* ``stacked=True``: ``x[..., *batch, S, n]``, ``S`` signals share each matrix (e.g. the ``d`` channels of a head
  in VARS-D), so every product is a single batched matmul. Stacked signals that are the transpose of a row-major
  tensor (``x.stride(-2) == 1``, e.g. ``v.transpose(-1, -2)`` for tokens ``v``) are encoded as
  :math:`(P^\top x^\top)^\top`, which copies whole rows where the direct product would gather the transpose, and
  ``decode`` then answers in the layout of the signals last encoded.

``decode(u) = P u``, ``encode(x) = P^T x``, ``gram(u) = P^T P u`` through the cached Gram matrix
:math:`G = P^\top P` when it is cheaper than two products. ``gradient_step(u, b, L)`` fuses a whole gradient step
:math:`u - (Gu - b)/L = u\,(I - G/L) + b/L` into one matrix multiply-add for a single matrix and a scalar :math:`L`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .._validation import check_trailing_shape
from .._replay import replay_backward
from ..lipschitz import DEFAULT_MARGIN, perron_bound, power_iteration

__all__ = ["DenseOperator", "gram_of", "cross_of", "EXACT_EIGENVALUE_WORK"]

#: ``lipschitz="power"`` computes the top eigenvalue of the Gram matrices exactly (``eigvalsh``, on the CPU) when
#: (number of matrices) × k³ is at most this, with k = min(n, m) the smaller side of each matrix (one 256 × 256 Gram
#: matrix, or e.g. 64 matrices of 64 × 64)
EXACT_EIGENVALUE_WORK = 256 ** 3


class _SymmetricGram(torch.autograd.Function):
    r""":math:`G = W^\top W` with the backward :math:`\partial W = W(\partial G + \partial G^\top)` as one product
    (autograd would do two products and a full-size sum). The backward is made of differentiable operations, so
    higher-order gradients work."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return w.transpose(-1, -2) @ w

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return w @ (grad + grad.transpose(-1, -2))


def gram_of(w: torch.Tensor) -> torch.Tensor:
    r""":math:`W^\top W` for ``w`` of shape ``(*batch, n, m)`` (a cheaper backward when ``w`` needs a gradient).

    Args:
        w: the matrix or batch of matrices.
    """
    if w.requires_grad and torch.is_grad_enabled():
        return _SymmetricGram.apply(w)
    return w.transpose(-1, -2) @ w


class _SharedCross(torch.autograd.Function):
    r""":math:`C_l = W_l^\top K` for matrices ``w`` ``(L, B, n, p)`` and ``k`` ``(B, n, q)`` shared across the ``L``
    leading entries, one batched product per leading entry: broadcasting ``matmul`` would copy ``k`` ``L`` times and
    keep that copy for its backward. Backward: :math:`\partial W_l = K\,\partial C_l^\top`,
    :math:`\partial K = \sum_l W_l\,\partial C_l`, accumulated in one buffer."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = w.new_empty(w.shape[:-2] + (w.shape[-1], k.shape[-1]))
        for i in range(w.shape[0]):
            torch.bmm(w[i].transpose(-1, -2), k, out=out[i])
        ctx.save_for_backward(w, k)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, k = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the backward is wanted
            return replay_backward(lambda a, b: a.transpose(-1, -2) @ b, (w, k), ctx.needs_input_grad, grad)
        grad_w = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.empty_like(w, memory_format=torch.contiguous_format)
            for i in range(w.shape[0]):
                torch.bmm(k, grad[i].transpose(-1, -2), out=grad_w[i])
        if ctx.needs_input_grad[1]:
            grad_k = torch.bmm(w[0], grad[0])
            for i in range(1, w.shape[0]):
                grad_k.baddbmm_(w[i], grad[i])
        return grad_w, grad_k


def cross_of(w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r""":math:`W^\top K` for batched matrices ``w`` ``(*batch_w, n, p)`` and ``k`` ``(*batch_k, n, q)`` whose batch
    shapes broadcast, ``(*batch, p, q)``. When one side's batch shape is a proper suffix of the other's (a static
    block shared across images beside per-image blocks), the shared side is never copied per leading entry.

    Args:
        w: the left matrices.
        k: the right matrices.
    """
    lead_w, lead_k = w.ndim - k.ndim, k.ndim - w.ndim
    if torch.is_autocast_enabled(w.device.type):  # autocast picks the products' dtype: plain matmul
        return w.transpose(-1, -2) @ k
    if lead_w > 0 and tuple(w.shape[lead_w:-2]) == tuple(k.shape[:-2]):
        n, p, q = w.shape[-2], w.shape[-1], k.shape[-1]
        flat = w.reshape((-1, max(1, k[..., 0, 0].numel()), n, p))
        out = _SharedCross.apply(flat, k.reshape(-1, n, q))
        return out.reshape(w.shape[:-2] + (p, q))
    if lead_k > 0 and tuple(k.shape[lead_k:-2]) == tuple(w.shape[:-2]):
        return cross_of(k, w).transpose(-1, -2)
    return w.transpose(-1, -2) @ k


class _ScaledStepMatrix(torch.autograd.Function):
    r"""The gradient-step matrix :math:`M = I - D R D / L` of :math:`P = W D` from the raw Gram matrix
    :math:`R = W^\top W` and the column scale :math:`D = \operatorname{diag}(s)`, with :math:`t = s/\sqrt L`:
    :math:`M_{ij} = \delta_{ij} - R_{ij} t_i t_j`. ``L`` is a constant (step sizes are detached).

    One full-size pass forward (the scaled Gram :math:`DRD` is never formed) and, backward,
    :math:`\partial R = -\partial M \odot t t^\top` and
    :math:`\partial t = -(E + E^\top) t` with :math:`E = \partial M \odot R`; autograd through the scaling, the
    division and the subtraction takes about three times as many full-size passes and temporaries. A backward pass
    that is itself differentiated goes through the plain formula (:mod:`sparsecode._replay`)."""

    @staticmethod
    def forward(ctx, raw: torch.Tensor, scale: torch.Tensor, inv_sqrt_L: torch.Tensor) -> torch.Tensor:
        t = scale * inv_sqrt_L
        ctx.save_for_backward(raw, scale, inv_sqrt_L)
        m = raw * t.neg().unsqueeze(-1)
        m.mul_(t.unsqueeze(-2))
        m.diagonal(dim1=-2, dim2=-1).add_(1)
        return m

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raw, scale, inv_sqrt_L = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the formula
            return replay_backward(_scaled_step_matrix, (raw, scale, inv_sqrt_L), ctx.needs_input_grad, grad)
        t = scale * inv_sqrt_L
        grad_raw = grad_scale = None
        if ctx.needs_input_grad[1]:
            e = grad * raw
            tv = t.unsqueeze(-2)
            grad_t = (tv @ e).squeeze(-2) + (tv @ e.transpose(-1, -2)).squeeze(-2)
            grad_scale = grad_t.neg() * inv_sqrt_L
            if ctx.needs_input_grad[0] and e.shape == grad.shape:
                # ∂R written into E's buffer once E is used: one full-size allocation in all instead of three
                grad_raw = torch.mul(grad, t.neg().unsqueeze(-1), out=e).mul_(t.unsqueeze(-2))
        if ctx.needs_input_grad[0] and grad_raw is None:
            grad_raw = (grad * t.neg().unsqueeze(-1)).mul_(t.unsqueeze(-2))
        return grad_raw, grad_scale, None


def _scaled_step_matrix(raw: torch.Tensor, scale: torch.Tensor, inv_sqrt_L: torch.Tensor) -> torch.Tensor:
    """:class:`_ScaledStepMatrix` as plain differentiable operations."""
    t = scale * inv_sqrt_L
    eye = torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    return eye - raw * t.unsqueeze(-1) * t.unsqueeze(-2)


def _fold_matmul(v: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    r""":math:`v\,M` for stacked rows ``v`` ``(*lead, *batch_k, S, c)`` and matrices ``mat`` ``(*batch_k, c, d)`` shared
    across the leading dimensions: the leading dimensions are folded into the rows, so ``mat`` is not copied once
    per leading index (as broadcasting matmul does) and its gradient is one product instead of a product per leading
    index and a sum."""
    k = mat.ndim - 2
    lead = tuple(v.shape[:v.ndim - 2 - k])
    if not lead:
        return v @ mat
    moved = tuple(range(k, k + len(lead)))
    rows = v.movedim(tuple(range(len(lead))), moved).reshape(tuple(mat.shape[:-2]) + (-1, v.shape[-1])) @ mat
    out = rows.reshape(tuple(mat.shape[:-2]) + lead + (v.shape[-2], mat.shape[-1]))
    return out.movedim(moved, tuple(range(len(lead))))


class _WeightProduct(torch.autograd.Function):
    r""":math:`W_k^\top B_k` (``transpose``) or :math:`W_k B_k` for a batch of matrices ``w`` ``(*batch, n, m)`` and
    ``b`` folded to ``(K, ·, ·)``, ``K`` = prod(batch) (a view or, for a strided ``b``, a compact copy: what a batched
    ``matmul`` folds and keeps), returning ``(K, ·, ·)``, such that the derivative in ``w`` is a fresh tensor of
    ``w``'s shape. Autograd through a batched ``matmul`` hands back the input's derivative as a view of the folded
    product, and autograd never accumulates the derivatives of a tensor used in several products (a dictionary's
    atoms: Gram matrix, encode, decode) into a view: it allocates their sum. With this product's derivative first, the
    others are added into it in place. Backward: :math:`\bar W_k = B_k \bar Y_k^\top` or :math:`\bar Y_k B_k^\top`,
    :math:`\bar B_k = W_k \bar Y_k` or :math:`W_k^\top \bar Y_k`; a backward pass that is itself differentiated goes
    through the plain product (:mod:`sparsecode._replay`)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, b: torch.Tensor, transpose: bool) -> torch.Tensor:
        ctx.save_for_backward(w, b)
        ctx.transpose = transpose
        return _weight_product(w, b, transpose)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, b = ctx.saved_tensors
        transpose = ctx.transpose
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the plain product
            return replay_backward(_weight_product, (w, b), ctx.needs_input_grad[:2], grad, transpose) + (None,)
        w3 = w.reshape(b.shape[:1] + tuple(w.shape[-2:]))
        grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # written into a tensor of W's own shape, not a view of a folded product
            grad_w = torch.empty(w.shape, dtype=w.dtype, device=w.device)
            if transpose:
                torch.bmm(b, grad.transpose(-1, -2), out=grad_w.view(w3.shape))
            else:
                torch.bmm(grad, b.transpose(-1, -2), out=grad_w.view(w3.shape))
        if ctx.needs_input_grad[1]:
            grad_b = torch.bmm(w3 if transpose else w3.transpose(-1, -2), grad)
        return grad_w, grad_b, None


def _weight_product(w: torch.Tensor, b: torch.Tensor, transpose: bool) -> torch.Tensor:
    """:class:`_WeightProduct` as a plain product of the folded matrices."""
    w3 = w.reshape(b.shape[:1] + tuple(w.shape[-2:]))
    return torch.bmm(w3.transpose(-1, -2) if transpose else w3, b)


def _fold_matmul_transposed(v: torch.Tensor, weight: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    r""":math:`v\,M` with :math:`M` = ``weight`` (or its transpose with ``transpose``) as in :func:`_fold_matmul`,
    computed as :math:`(M^\top v^\top)^\top` with the leading dimensions of ``v`` folded into the columns of
    :math:`v^\top`: for rows ``v`` that are the transpose of a row-major tensor (``v.stride(-2) == 1``, e.g. the value
    channels of tokens), whose copy into :func:`_fold_matmul`'s layout is a strided gather while this one copies whole
    rows. Returns a transposed view. Without leading dimensions the product is a :class:`_WeightProduct` of ``weight``
    itself (a fresh derivative for it, not one through transposed views), when ``weight`` needs a gradient."""
    mat = weight.transpose(-1, -2) if transpose else weight
    k = mat.ndim - 2
    n_lead = v.ndim - 2 - k
    vt = v.transpose(-1, -2)  # (*lead, *batch_k, n, S)
    if n_lead <= 0:
        if (weight.requires_grad and torch.is_grad_enabled() and weight.shape[:-2] == vt.shape[:-2]
                and not torch.is_autocast_enabled(weight.device.type)):
            # Mᵀ vᵀ = Wᵀ vᵀ, or W vᵀ for M = Wᵀ, on the folded signals (a view, or a compact copy of strided ones)
            folded = vt.reshape((-1,) + tuple(vt.shape[-2:]))
            out = _WeightProduct.apply(weight, folded, not transpose)
            return out.view(tuple(vt.shape[:-2]) + tuple(out.shape[-2:])).transpose(-1, -2)
        return (mat.transpose(-1, -2) @ vt).transpose(-1, -2)
    mat_t = mat.transpose(-1, -2)
    lead = tuple(vt.shape[:n_lead])
    batch_k = tuple(mat.shape[:-2])
    perm = tuple(range(n_lead, n_lead + k)) + (n_lead + k,) + tuple(range(n_lead)) + (n_lead + k + 1,)
    cols = vt.permute(perm).reshape(batch_k + (vt.shape[-2], -1))  # (*batch_k, n, L·S)
    out = (mat_t @ cols).reshape(batch_k + (mat.shape[-1],) + lead + (v.shape[-2],))  # (*batch_k, m, *lead, S)
    return out.permute(tuple(range(k + 1, k + 1 + n_lead)) + tuple(range(k)) + (k + 1 + n_lead, k))


def _inv_sqrt_per_matrix(L: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    r""":math:`1/\sqrt L` (detached) for the matrices ``g`` ``(*batch, m, m)``: 0-d for a scalar ``L``, else
    ``(*batch, 1)``, to scale rows or columns of ``(*batch, m)`` vectors."""
    inv_sqrt = L.detach().to(g.dtype).rsqrt()
    return inv_sqrt.reshape(()) if L.numel() == 1 else inv_sqrt.reshape(g.shape[:-2] + (1,))


class DenseOperator:
    r"""The operator :math:`u \mapsto P u` for a matrix (or a batch of matrices) ``weight``.

    Args:
        weight: ``(*batch, n_features, n_atoms)``.
        blocks: instead of ``weight``, its column blocks :math:`[W_1, \dots, W_k]` ``(*batch_i, n_features, m_i)``
            whose batch shapes broadcast (e.g. per-image random features beside per-head static atoms). Stacked
            products then go block by block — a block shared across leading batch dimensions is applied once to
            all their rows, and is never copied per batch entry — and the concatenated matrix is formed only if
            ``weight`` is read.
        stacked: signal layout (see the module docstring).
        precompute_gram: cache :math:`G = P^\top P` (``None``: when ``n_atoms <= 2 * n_features`` or stacked); the
            cached matrix is computed on first use, so an operator whose Gram is never needed never pays for it.
        gram_matrix: :math:`G = P^\top P` when the caller already has it (e.g. assembled block by block by a
            concatenation); it is cached as is.
        column_scale: ``(*batch, n_atoms)``: the operator is then :math:`P = W \operatorname{diag}(s)` for
            ``weight`` :math:`W`; products go through :math:`W` and a scaling of the (small) codes, and the scaled
            matrix is formed only when ``weight`` is read (e.g. atoms normalised through the Gram diagonal).
        raw_gram: with ``column_scale``, :math:`R = W^\top W` of the unscaled ``weight`` when the caller has it (it
            needed its diagonal for the scale): :math:`G = D R D` is then formed only if asked for, the gradient
            step's matrix :math:`I - DRD/L` is built from :math:`R` in one pass, and the ``"perron"`` and
            ``"row_sum"`` bounds are computed through :math:`D` (``gram_matrix`` and ``raw_gram`` are exclusive).
        lipschitz: ``"power"`` (the top eigenvalue of :math:`G`: from ``eigvalsh`` for small matrices on the CPU,
            see :data:`EXACT_EIGENVALUE_WORK`, else a Lanczos power iteration), ``"exact"`` (batched SVD),
            ``"row_sum"`` (:math:`\max_i \sum_j |G_{ij}|`, a cheap upper bound), ``"perron"`` (a guaranteed upper
            bound, tight for entrywise non-negative Gram matrices: :func:`~sparsecode.lipschitz.perron_bound`) or a
            positive number.
        warm_start: an object whose ``_power_vector`` attribute holds the previous power-iteration vector (read
            for the start, written back after): the owning dictionary, so warm starts persist across calls.
        power_iterations: number of power iterations (a third of it, at least 5, when warm-started).
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        blocks: Sequence[torch.Tensor] | None = None,
        stacked: bool = False,
        precompute_gram: bool | None = None,
        lipschitz: str | float = "power",
        warm_start: object | None = None,
        power_iterations: int = 30,
        gram_matrix: torch.Tensor | None = None,
        column_scale: torch.Tensor | None = None,
        raw_gram: torch.Tensor | None = None,
    ) -> None:
        shape = self._weight_shape(weight, blocks)
        if column_scale is not None and tuple(column_scale.shape) != shape[:-2] + (shape[-1],):
            raise ValueError(f"column_scale must have shape {shape[:-2] + (shape[-1],)}, "
                             f"got {tuple(column_scale.shape)}")
        self._blocks = None if blocks is None else tuple(blocks)
        self._base_tensor, self._column_scale = weight, column_scale
        self._weight_cache: torch.Tensor | None = None
        self.stacked = stacked
        self.n_features, self.n_atoms = shape[-2], shape[-1]
        self.batch_shape = shape[:-2]
        if precompute_gram is None:
            precompute_gram = stacked or self.n_atoms <= 2 * self.n_features
        expected = self.batch_shape + (self.n_atoms, self.n_atoms)
        if gram_matrix is not None and tuple(gram_matrix.shape) != expected:
            raise ValueError(f"gram_matrix must have shape {expected}, got {tuple(gram_matrix.shape)}")
        if raw_gram is not None:
            if column_scale is None or gram_matrix is not None:
                raise ValueError("raw_gram needs column_scale and excludes gram_matrix")
            if tuple(raw_gram.shape) != expected:
                raise ValueError(f"raw_gram must have shape {expected}, got {tuple(raw_gram.shape)}")
        self._raw_gram = raw_gram
        self._use_gram = precompute_gram or gram_matrix is not None or raw_gram is not None
        # the cached Gram matrix and whether autograd was recording when it was built
        self._gram_cache: torch.Tensor | None = gram_matrix
        self._gram_cache_grad = gram_matrix is not None and gram_matrix.requires_grad
        self.lipschitz_mode = lipschitz
        self.warm_start = warm_start
        self.power_iterations = power_iterations
        # gradient_step's per-solve constants, keyed by the identity of the L (and b) tensors they were built from
        self._step_matrix_key: torch.Tensor | None = None
        self._step_matrix: torch.Tensor | None = None
        self._step_offset_key: tuple[torch.Tensor, torch.Tensor] | None = None
        self._step_offset: torch.Tensor | None = None
        # the eigendecomposition of G (for shifted_gram_solve), built on first use
        self._eigh_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._eigh_vt: torch.Tensor | None = None
        self._row_norm_cache: torch.Tensor | None = None
        # whether the signals encoded last were the transpose of a row-major tensor: decode then returns that layout
        self._signals_transposed = False

    @staticmethod
    def _weight_shape(weight: torch.Tensor | None, blocks) -> tuple[int, ...]:
        """The shape ``(*batch, n, m)`` of the operator's matrix, given whole or as column blocks (validated)."""
        if (weight is None) == (blocks is None):
            raise TypeError("DenseOperator needs exactly one of weight and blocks")
        if weight is not None:
            if weight.ndim < 2:
                raise ValueError(f"weight must have shape (*batch, n_features, n_atoms), got {tuple(weight.shape)}")
            return tuple(int(d) for d in weight.shape)
        blocks = tuple(blocks)
        if not blocks or not all(isinstance(b, torch.Tensor) and b.ndim >= 2 for b in blocks):
            raise ValueError("blocks must be a non-empty sequence of tensors of shape (*batch_i, n_features, m_i)")
        if len({int(b.shape[-2]) for b in blocks}) != 1:
            raise ValueError(f"blocks must share n_features (dim -2), got {[tuple(b.shape) for b in blocks]}")
        try:
            batch = torch.broadcast_shapes(*(b.shape[:-2] for b in blocks))
        except RuntimeError as err:
            raise ValueError(f"the blocks' batch shapes do not broadcast: {[tuple(b.shape) for b in blocks]}") from err
        return tuple(batch) + (int(blocks[0].shape[-2]), sum(int(b.shape[-1]) for b in blocks))

    @property
    def _base(self) -> torch.Tensor:
        """The unscaled matrix :math:`W` (given blocks: their concatenation, formed on first use)."""
        cache = self._base_tensor
        if self._blocks is not None and (cache is None or (torch.is_grad_enabled() and self._base_requires_grad()
                                                           and not cache.requires_grad)):
            cache = torch.cat([b.expand(self.batch_shape + tuple(b.shape[-2:])) for b in self._blocks], dim=-1)
            self._base_tensor = cache
        return cache

    def _base_requires_grad(self) -> bool:
        if self._blocks is not None:
            return any(b.requires_grad for b in self._blocks)
        return self._base_tensor.requires_grad

    @property
    def _reference(self) -> torch.Tensor:
        """A tensor with the operator's dtype and device (without forming a concatenation)."""
        return self._blocks[0] if self._blocks is not None else self._base_tensor

    @property
    def weight(self) -> torch.Tensor:
        """The matrix :math:`P`, ``(*batch, n_features, n_atoms)`` (with a column scale: formed on first read)."""
        if self._column_scale is None:
            return self._base
        cache = self._weight_cache
        if cache is None or (torch.is_grad_enabled() and not cache.requires_grad
                             and (self._base_requires_grad() or self._column_scale.requires_grad)):
            cache = self._base * self._column_scale.unsqueeze(-2)
            self._weight_cache = cache
        return cache

    def _scale_codes(self, u: torch.Tensor) -> torch.Tensor:
        """Codes times the column scale (the identity without one)."""
        if self._column_scale is None:
            return u
        return u * (self._column_scale.unsqueeze(-2) if self.stacked else self._column_scale)

    @property
    def _gram_matrix(self) -> torch.Tensor | None:
        """The cached Gram matrix (built on first use; rebuilt once if it was built without a graph that is now
        wanted), or ``None`` when this operator does not cache it."""
        if not self._use_gram:
            return None
        cache = self._gram_cache
        scale = self._column_scale
        wants_graph = torch.is_grad_enabled() and (self._base_requires_grad()
                                                   or (scale is not None and scale.requires_grad))
        if cache is None or (wants_graph and not self._gram_cache_grad and not cache.requires_grad):
            cache = self._raw_gram if self._raw_gram is not None else gram_of(self._base)
            if scale is not None:
                cache = cache * scale.unsqueeze(-1) * scale.unsqueeze(-2)
            self._gram_cache, self._gram_cache_grad = cache, wants_graph
        return cache

    # the "one vector per matrix" layout needs a singleton signal axis for matmul, except for a single matrix
    def _apply(self, mat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.stacked or mat.ndim == 2:
            return v @ mat
        return (v.unsqueeze(-2) @ mat).squeeze(-2)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        u = self._scale_codes(u)
        transposed = self._signals_transposed
        if self._blocks is None or not self.stacked:
            if transposed and u.ndim == self._base.ndim:
                return _fold_matmul_transposed(u, self._base, transpose=True)
            return self._apply(self._base.transpose(-1, -2), u)
        parts = u.split([int(b.shape[-1]) for b in self._blocks], dim=-1)
        out = None
        for block, part in zip(self._blocks, parts):
            z = (_fold_matmul_transposed(part, block, transpose=True) if transposed
                 else _fold_matmul(part, block.transpose(-1, -2)))
            out = z if out is None else out + z
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # stacked signals given as the transpose of a row-major tensor (VARS: the value channels of the tokens) go
        # through the transposed product, which copies whole rows where the direct one gathers, and decode returns
        # that layout
        self._signals_transposed = (self.stacked and x.ndim >= 2 and x.stride(-2) == 1 and x.stride(-1) != 1
                                    and x.shape[-1] > 1)
        if self._blocks is None or not self.stacked:
            if self._signals_transposed and x.ndim == self._base.ndim:
                return self._scale_codes(_fold_matmul_transposed(x, self._base))
            return self._scale_codes(self._apply(self._base, x))
        fold = _fold_matmul_transposed if self._signals_transposed else _fold_matmul
        parts = [fold(x, block) for block in self._blocks]
        lead = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))  # a signal may broadcast against the batch
        parts = [p if p.shape[:-1] == lead else p.expand(lead + p.shape[-1:]) for p in parts]
        return self._scale_codes(torch.cat(parts, dim=-1))

    def gram(self, u: torch.Tensor) -> torch.Tensor:
        if self._gram_matrix is not None:
            return self._apply(self._gram_matrix, u)  # G is symmetric: u G = (G u^T)^T
        return self.encode(self.decode(u))

    def gradient(self, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        r"""The gradient :math:`P^\top P u - b` of :math:`\tfrac12\|Pu - x\|^2` with :math:`b = P^\top x`: one
        multiply-add through the cached Gram matrix for a single matrix and codes ``(B, n_atoms)``, the Gram product
        then a subtraction otherwise."""
        g = self._gram_matrix
        if g is not None and g.ndim == 2 and u.ndim == 2 and u.dtype == g.dtype == b.dtype:
            return torch.addmm(b, u, g, beta=-1)
        return self.gram(u) - b

    def gradient_step(self, u: torch.Tensor, b: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        r"""The gradient step :math:`u - (P^\top P u - b)/L` of :math:`\tfrac12\|Pu - x\|^2` with :math:`b = P^\top x`.

        Where :meth:`affine_step` applies it is one fused multiply-add :math:`u\,M + c`; otherwise it is computed
        term by term.

        Args:
            u: codes, ``(..., n_atoms)``.
            b: :math:`P^\top x`, the shape of ``u``.
            L: the step-size constant, a tensor broadcastable against ``u``.
        """
        affine = self.affine_step(u, b, L)
        if affine is None:
            return u - (self.gram(u) - b) / L
        m, c = affine
        if m.ndim == 2:
            return torch.addmm(c, u, m)
        return torch.baddbmm(c, u.reshape(c.shape), m).reshape(u.shape)

    def _stacked_step_layout(self, g: torch.Tensor, u: torch.Tensor, L: torch.Tensor) -> bool:
        """Whether codes ``u`` are stacked codes ``(*batch, S, m)`` of the batch of matrices ``g`` and ``L`` is one
        value per matrix or a scalar: the layout of the batched forms of :meth:`affine_step` and :meth:`scaled_step`."""
        return (self.stacked and g.ndim >= 3 and u.ndim == g.ndim and u.shape[:-2] == g.shape[:-2]
                and L.ndim <= g.ndim and all(n == 1 for n in L.shape[-2:]) and L.numel() in (1, g[..., 0, 0].numel()))

    def scaled_step(self, u: torch.Tensor, b: torch.Tensor,
                    L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        r"""The gradient step of an operator with a raw Gram matrix and a column scale, as
        :math:`u\,M + b/L` with :math:`M = I - T R T` never formed: ``(R, t, b, 1/L)`` with :math:`t = s/\sqrt L`
        (:math:`T = \operatorname{diag}(t)`), shaped ``(K, m, m)``, ``(K, m)``, ``(K, S, m)`` and ``(K, 1, 1)`` (or 0-d
        for a scalar ``L``) for stacked codes ``(*batch, S, m)`` of ``K`` matrices with one ``L`` per matrix or a
        scalar ``L``; ``None`` for any other operator or layout (then see :meth:`affine_step`).

        Args:
            u: codes (only their shape and dtype are read).
            b: :math:`P^\top x`, the shape of ``u``.
            L: the step-size constant (detached), a tensor broadcastable against ``u``.
        """
        raw = self._raw_gram
        if (raw is None or not self._stacked_step_layout(raw, u, L) or u.shape != b.shape
                or not u.dtype == raw.dtype == b.dtype):
            return None
        rows, m = u.shape[-2], u.shape[-1]
        t = self._column_scale.to(raw.dtype) * _inv_sqrt_per_matrix(L, raw)
        step = L.detach().to(b.dtype).reciprocal()
        step = step.reshape(()) if L.numel() == 1 else step.reshape(-1, 1, 1)
        return raw.reshape(-1, m, m), t.reshape(-1, m), b.reshape(-1, rows, m), step

    def affine_step(self, u: torch.Tensor, b: torch.Tensor,
                    L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        r"""The gradient step as an affine map of the codes, :math:`u - (Gu - b)/L = u\,M + c` with
        :math:`M = I - G/L` and :math:`c = b/L`, or ``None`` where this operator has no such form.

        It has one for a single matrix with a cached Gram matrix, a scalar ``L`` and codes ``(B, n_atoms)``
        (``M`` ``(n_atoms, n_atoms)``, ``c`` ``(B, n_atoms)``), and for stacked codes ``(*batch, S, n_atoms)`` of a
        batch of matrices with one ``L`` per matrix or a scalar ``L`` (``M`` ``(K, n_atoms, n_atoms)`` and ``c``
        ``(K, S, n_atoms)``, ``K`` the number of matrices, for ``baddbmm``). Both are built once per ``(L, b)`` pair
        (solvers pass the same tensors at every iteration) and rebuilt once if they were built without the graph
        that is now wanted. With a raw Gram matrix and a column scale, ``M`` is built from them in one pass.

        Args:
            u: codes (only their shape and dtype are read).
            b: :math:`P^\top x`, the shape of ``u``.
            L: the step-size constant (detached), a tensor broadcastable against ``u``.
        """
        # the raw Gram matrix (with the column scale) when there is one: M is then built without forming G
        raw = self._raw_gram
        g = raw if raw is not None else self._gram_matrix
        single = (g is not None and g.ndim == 2 and L.numel() == 1 and u.ndim == 2)
        batched = g is not None and self._stacked_step_layout(g, u, L)
        if not (single or batched) or u.shape != b.shape or not u.dtype == g.dtype == b.dtype:
            return None
        # constants built without a graph (e.g. the no-grad part of a truncated solve) are rebuilt once grad is on
        scale = self._column_scale
        g_grad = g.requires_grad or (raw is not None and scale.requires_grad)
        stale = (torch.is_grad_enabled() and g_grad and self._step_matrix is not None
                 and not self._step_matrix.requires_grad)
        if self._step_matrix_key is not L or stale:
            if raw is not None:
                self._step_matrix = _ScaledStepMatrix.apply(raw, scale.to(g.dtype), _inv_sqrt_per_matrix(L, g))
            else:
                self._step_matrix = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device) - g / L.to(g.dtype)
            self._step_matrix_key = L
        key = self._step_offset_key
        stale = (torch.is_grad_enabled() and b.requires_grad and self._step_offset is not None
                 and not self._step_offset.requires_grad)
        if key is None or key[0] is not b or key[1] is not L or stale:
            self._step_offset = b / L.to(b.dtype)
            self._step_offset_key = (b, L)
        if single:
            return self._step_matrix, self._step_offset
        rows, m = u.shape[-2], u.shape[-1]
        return (self._step_matrix.expand(g.shape).reshape(-1, m, m),
                self._step_offset.reshape(-1, rows, m))

    def gram_eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The eigenpairs of the Gram matrix that can be non-zero, detached and cached:
        :math:`G = V_r \operatorname{diag}(e_r) V_r^\top` with :math:`r = \min(n, m)` (the rank of :math:`G` is at most
        the number of features, so the :math:`m - r` other eigenvalues of an overcomplete dictionary are 0).

        Returns ``(e, V)`` with ``e`` of shape ``(*batch, r)`` (ascending, clamped at 0: :math:`G` is positive
        semi-definite, rounding can make its smallest eigenvalues slightly negative) and ``V`` of shape
        ``(*batch, m, r)``. Half-precision matrices are decomposed in float32 and cast back.
        """
        if self._eigh_cache is None:
            if self.n_features < self.n_atoms and self._blocks is None:
                e, v = self._eigh_from_small_side()
                dtype = self._reference.dtype
            else:
                g = self.gram_matrix().detach()
                work = g if g.dtype in (torch.float32, torch.float64) else g.float()
                e, v = torch.linalg.eigh(work)
                rank = min(self.n_features, self.n_atoms)
                e, v = e[..., -rank:], v[..., -rank:]
                dtype = g.dtype
            self._eigh_cache = (e.clamp_min(0).to(dtype), v.to(dtype).contiguous())
            self._eigh_vt = self._eigh_cache[1].transpose(-1, -2).contiguous()
        return self._eigh_cache

    def _eigh_from_small_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The eigenpairs of :math:`G` for :math:`n < m` from the smaller :math:`PP^\top = U\operatorname{diag}(e)U^\top`:
        :math:`G = V\operatorname{diag}(e)V^\top` with :math:`V = P^\top U\operatorname{diag}(e)^{-1/2}` (the right
        singular vectors). One ``n × n`` eigensolve instead of ``m × m`` (0.4 against 1.4 ms for a 100 × 200 float32
        dictionary). Directions with :math:`e_i \le n\,\epsilon\,e_{\max}` (numerically in the null space) get
        :math:`e_i = 0` and a zero vector, which the shifted solve then leaves alone, as it does the null space."""
        w = self.weight.detach()
        w = w if w.dtype in (torch.float32, torch.float64) else w.float()
        e, u = torch.linalg.eigh(w @ w.transpose(-1, -2))
        e = e.clamp_min(0)
        keep = e > e[..., -1:] * (self.n_features * torch.finfo(e.dtype).eps)
        inv_sigma = torch.where(keep, e.clamp_min(torch.finfo(e.dtype).tiny).rsqrt(), torch.zeros_like(e))
        v = (w.transpose(-1, -2) @ u) * inv_sigma.unsqueeze(-2)
        return torch.where(keep, e, torch.zeros_like(e)), v

    def mean_gram_eigenvalue(self) -> torch.Tensor:
        r""":math:`\operatorname{tr}(P^\top P)/m` per matrix (the mean squared atom norm), with its graph, broadcastable
        against codes (like :meth:`lipschitz`)."""
        return self._broadcast(self.gram_matrix().diagonal(dim1=-2, dim2=-1).mean(dim=-1))

    def gram_row_norm(self) -> torch.Tensor:
        r""":math:`c = \max_i \|G_{i,:}\|_2` per matrix, detached, broadcastable against codes (like
        :meth:`lipschitz`): the bound :math:`\|G d\|_\infty \le c\,\|d\|_2`, with :math:`c \le \|G\|_2` and, for
        unit-norm atoms, :math:`c \le \sqrt{\|G\|_2}`."""
        if self._row_norm_cache is None:
            g = self.gram_matrix().detach()
            self._row_norm_cache = self._broadcast(torch.linalg.vector_norm(g, dim=-1).amax(dim=-1))
        return self._row_norm_cache

    def shift_damping(self, shift: torch.Tensor) -> torch.Tensor:
        r""":math:`d = e_r / (e_r + s)`, the factors of :meth:`scaled_shifted_gram_solve`, shaped like a code's
        eigen-coordinates (``(..., *batch, r)``, or ``(..., *batch, 1, r)`` for stacked codes)."""
        e, _ = self.gram_eigh()
        e = e.unsqueeze(-2) if self.stacked else e
        return e / (e + shift)

    def _scaled_solve_detached(self, v: torch.Tensor, damping: torch.Tensor) -> torch.Tensor:
        # s (G + sI)^{-1} v = v - V_r diag(d) V_r^T v with V_r, d held constant (V_r V_r^T + the null-space projector
        # is the identity, and s/(e + s) = 1 - d on the range)
        _, vecs = self.gram_eigh()
        coefficients = self._apply(vecs, v) * damping
        if vecs.ndim == 2 and v.ndim == 2 and coefficients.dtype == v.dtype == vecs.dtype:
            return torch.addmm(v, coefficients, self._eigh_vt, alpha=-1)
        return v - self._apply(self._eigh_vt, coefficients)

    def scaled_shifted_gram_solve(self, v: torch.Tensor, shift: torch.Tensor,
                                  damping: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`s\,(P^\top P + s I)^{-1} v = v - V_r \operatorname{diag}\big(e_r/(e_r + s)\big) V_r^\top v` through
        the eigendecomposition of :math:`G` (:meth:`gram_eigh`): two products with the ``m × min(n, m)`` matrix
        :math:`V_r` whatever the shift (for a twice-overcomplete dictionary, the cost of one product with :math:`G`),
        so that each sample (even each matrix of each sample) can have its own :math:`s > 0`.

        The decomposition is not differentiated (its derivative is unbounded when eigenvalues repeat, as the zero
        eigenvalue of an overcomplete dictionary does). When :math:`G` needs a gradient the result is written
        :math:`y_0 + R\big(v - (G + sI)\,y_0/s\big)` with :math:`y_0 = R v`, :math:`R = s(G + sI)^{-1}` held
        constant: the same value (the correction is a rounding error) whose derivatives are exactly those of
        :math:`s(G + sI)^{-1} v` with respect to :math:`v` and :math:`G` (one step of iterative refinement; two more
        products and a Gram product).

        Args:
            v: codes, ``(..., n_atoms)`` in this operator's layout.
            shift: :math:`s > 0`, a tensor broadcastable against ``v`` (e.g. one value per sample, ``(B, 1, ...)``).
            damping: :meth:`shift_damping` of ``shift`` when the caller keeps it (it changes only with the shift).
        """
        damping = self.shift_damping(shift) if damping is None else damping
        y = self._scaled_solve_detached(v, damping)
        if torch.is_grad_enabled() and self.gram_matrix().requires_grad:
            y = y + self._scaled_solve_detached(v - self.gram(y) / shift - y, damping)
        return y

    def shifted_gram_solve(self, v: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        r""":math:`(P^\top P + s I)^{-1} v`: :meth:`scaled_shifted_gram_solve` divided by :math:`s`.

        Args:
            v: codes, ``(..., n_atoms)`` in this operator's layout.
            shift: :math:`s > 0`, a tensor broadcastable against ``v``.
        """
        return self.scaled_shifted_gram_solve(v, shift) / shift

    def gram_matrix(self) -> torch.Tensor:
        r""":math:`G = P^\top P`, shape ``(*batch, n_atoms, n_atoms)``."""
        gram = self._gram_matrix
        if gram is not None:
            return gram
        gram = gram_of(self._base)
        if self._column_scale is not None:
            gram = gram * self._column_scale.unsqueeze(-1) * self._column_scale.unsqueeze(-2)
        return gram

    def _broadcast(self, per_matrix: torch.Tensor) -> torch.Tensor:
        # per_matrix: (*batch,) -> broadcastable against codes of either layout
        extra = 2 if self.stacked else 1
        return per_matrix.reshape(self.batch_shape + (1,) * extra)

    def lipschitz(self) -> torch.Tensor:
        r"""Upper bound on :math:`\|P^\top P\|_2` per matrix, detached, broadcastable against codes."""
        mode = self.lipschitz_mode
        w = self._reference.detach()
        if not isinstance(mode, str):
            return torch.tensor(float(mode), dtype=w.dtype, device=w.device)
        if mode == "exact":
            w = self.weight.detach()
            top = torch.linalg.matrix_norm(w.float() if w.dtype in (torch.float16, torch.bfloat16) else w, ord=2)
            return self._broadcast(top.to(w.dtype) ** 2 * (1 + 1e-6))
        # with a raw Gram matrix R and G = DRD not formed yet, both bounds go through D (|DRD| = D|R|D)
        raw, scale = self._raw_gram, self._column_scale
        through_scale = raw is not None and self._gram_cache is None
        if mode == "row_sum":
            if through_scale:
                s = scale.detach()
                row_sums = (s.unsqueeze(-2) @ raw.detach().abs()).squeeze(-2) * s
                return self._broadcast(row_sums.amax(dim=-1))
            g = self.gram_matrix().detach()
            return self._broadcast(g.abs().sum(dim=-1).amax(dim=-1))
        if mode == "perron":
            g = (raw if through_scale else self.gram_matrix()).detach()
            dtype = g.dtype if g.dtype in (torch.float32, torch.float64) else torch.float32
            s = scale.to(dtype) if through_scale else None
            return self._broadcast(perron_bound(g.to(dtype), scale=s).to(g.dtype))
        if mode != "power":
            raise ValueError(f"lipschitz must be 'power', 'exact', 'row_sum', 'perron' or a positive number, "
                             f"got {mode!r}")
        dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        exact = self._exact_top_eigenvalue(dtype)
        if exact is not None:
            return self._broadcast(exact.to(w.dtype))
        gm = self.gram_matrix().detach().to(dtype)
        shape = self.batch_shape + (self.n_atoms,)
        init = getattr(self.warm_start, "_power_vector", None)
        warm = init is not None and tuple(init.shape) == shape
        L, v = power_iteration(lambda v: (v.unsqueeze(-2) @ gm).squeeze(-2), shape, 1,
                               n_iter=max(self.power_iterations // 3, 5) if warm else self.power_iterations,
                               init=init if warm else None, dtype=dtype, device=w.device)
        if self.warm_start is not None:
            self.warm_start._power_vector = v
        return self._broadcast(L.squeeze(-1).to(w.dtype))

    def _exact_top_eigenvalue(self, dtype: torch.dtype) -> torch.Tensor | None:
        r"""The top eigenvalue of :math:`G` per matrix, detached, when it is cheap: from the cached eigendecomposition
        if there is one (ADMM builds it on every device; times :math:`1 + m\,\epsilon`, a bound on the rounding
        error of a symmetric eigensolver), or by ``eigvalsh`` for small matrices on the CPU (times the Krylov
        estimate's :data:`~sparsecode.lipschitz.DEFAULT_MARGIN`, so that the CPU and an accelerator, which runs the
        Krylov iteration, take the same step): below :data:`EXACT_EIGENVALUE_WORK`, one dense eigensolve costs less
        than the Python overhead of a 30-step Krylov iteration (0.4 ms for one 128 × 128 Gram matrix against 3.7 ms,
        1.0 against 3.9 ms at 200 × 200, float32, one CPU thread); ``None`` otherwise.
        An overcomplete matrix (:math:`n < m`) is solved on its smaller side: :math:`PP^\top` has the same non-zero
        eigenvalues (one 100 × 100 ``eigvalsh`` and the product: 0.25 ms against 0.9 ms for the 200 × 200 Gram)."""
        m = self.n_atoms
        if self._eigh_cache is not None:
            top = self._eigh_cache[0][..., -1].to(dtype)
            return top * (1 + m * torch.finfo(dtype).eps)
        # (on an accelerator the Krylov iteration is kept: a dense eigensolver synchronises with the host)
        small_side = self.n_features < m and self._blocks is None
        side = self.n_features if small_side else m
        if self._reference.device.type != "cpu" or math.prod(self.batch_shape) * side ** 3 > EXACT_EIGENVALUE_WORK:
            return None
        if small_side:
            w = self.weight.detach().to(dtype)
            square = w @ w.transpose(-1, -2)
        else:
            square = self.gram_matrix().detach().to(dtype)
        top = torch.linalg.eigvalsh(square)[..., -1].clamp_min(0)
        # the Krylov estimate's margin, which an accelerator applies to the same (converged) eigenvalue: the step
        # size, and so a fixed-iteration layer's output, must not depend on the device the dictionary lives on
        return top * max(DEFAULT_MARGIN, 1 + m * torch.finfo(dtype).eps)

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Check that ``x`` has the layout this operator expects."""
        if self.stacked or self.batch_shape:
            lead = self.batch_shape + ((x.shape[-2],) if self.stacked and x.ndim >= 2 else ())
            layout = "(..., *batch, S, n_features)" if self.stacked else "(..., *batch, n_features)"
            check_trailing_shape(x, name, lead + (self.n_features,), f"{layout} with batch={self.batch_shape}")
        else:
            check_trailing_shape(x, name, (self.n_features,), "(..., n_features)")

    def code_shape(self, signal_shape) -> tuple[int, ...]:
        return tuple(signal_shape[:-1]) + (self.n_atoms,)
