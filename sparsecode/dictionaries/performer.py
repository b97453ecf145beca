r"""Dynamic Performer dictionary: the atoms are positive random features of the tokens (VARS-D, paper Eq. 14–17).

Per head, the tokens :math:`X \in \mathbb R^{N \times d_h}` give the dictionary
:math:`\Phi(X) \in \mathbb R^{N \times m}`,

.. math:: \Phi(X)_{i} = \phi(x_i) = \frac{1}{\sqrt m}\exp\!\big(W^\top x_i - \tfrac12\|x_i\|^2\big),

with a fixed Gaussian projection :math:`W \in \mathbb R^{d_h \times m}` per head (the buffer ``projection``).
:math:`\Phi(X)\Phi(X)^\top` approximates the softmax kernel :math:`\exp(x_i^\top x_j)`. Each channel of the head's
values, a vector over the ``N`` tokens, is coded on these ``m`` atoms: signals are :math:`V^\top` of shape
``(B, heads, d, N)`` and codes ``(B, heads, d, m)`` — the ``d`` channels share one matrix (a stacked
:class:`~sparsecode.dictionaries.dense.DenseOperator`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .._validation import check_float_tensor, check_positive_int
from .base import Dictionary, LipschitzSpec
from .._replay import replay_backward
from .dense import DenseOperator, gram_of

__all__ = ["PerformerDictionary", "positive_random_features", "l2_normalize"]


#: the smallest norm an atom or token is divided by (as ``F.normalize``)
_EPS = 1e-12


def l2_normalize(x: torch.Tensor, dim: int, eps: float = _EPS) -> torch.Tensor:
    r""":math:`x / \max(\|x\|_2, \epsilon)` along ``dim`` (what ``F.normalize`` computes), as one multiply by
    :math:`(\max(\sum x^2, \epsilon^2))^{-1/2}`: a plain sum of squares instead of a norm reduction, and one
    full-size pass fewer in the backward. Half-precision inputs (where :math:`\epsilon^2` underflows) go through
    ``F.normalize``.

    Args:
        x: the tensor.
        dim: the dimension to normalise over.
        eps: the smallest norm divided by.
    """
    if x.dtype not in (torch.float32, torch.float64):
        return F.normalize(x, p=2, dim=dim, eps=eps)
    return x * x.square().sum(dim=dim, keepdim=True).clamp_min(eps * eps).rsqrt()


def positive_random_features(x: torch.Tensor, projection: torch.Tensor,
                             squared_norm: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\phi(x) = \exp(W^\top x - \|x\|^2/2)/\sqrt m` for every token.

    Args:
        x: tokens ``(..., heads, N, head_dim)``.
        projection: :math:`W`, ``(heads, head_dim, m)``.
        squared_norm: :math:`\|x\|^2` ``(..., heads, N, 1)`` when the caller has it (e.g. from normalising the
            tokens), which spares a full pass over ``x`` and its backward; ``None``: computed here.

    Returns:
        ``(..., heads, N, m)``.
    """
    m = projection.shape[-1]
    if squared_norm is None:
        squared_norm = x.square().sum(dim=-1, keepdim=True)
    # the 1/sqrt(m) factor enters the exponent as -log(m)/2, added to the per-token offset ||x||^2/2: one full-size
    # pass (and one backward pass) fewer than a division of the features
    # (adding the small negated offset, rather than subtracting it, spares the backward a full-size negation)
    neg_offset = squared_norm * -0.5 - 0.5 * math.log(m)
    return (x @ projection + neg_offset).exp_()  # in place on the sum's fresh buffer (its backward needs neither)


def _normalized_positive_features(tokens: torch.Tensor, projection: torch.Tensor,
                                  scale: float = 1.0) -> torch.Tensor:
    r""":math:`\phi(x)` of the tokens normalised and scaled, :math:`x = \alpha\, t/\max(\|t\|, \epsilon)`, as
    differentiable operations: :math:`\rho = \alpha/\sqrt{\max(\|t\|^2, \epsilon^2)}` and :math:`\|x\|^2 =
    \|t\|^2\rho^2` from the same per-token sums (no second pass over the tokens).

    Args:
        tokens: ``(..., heads, N, head_dim)``, float32 or float64.
        projection: :math:`W`, ``(heads, head_dim, m)``.
        scale: :math:`\alpha`.
    """
    sums = tokens.square().sum(dim=-1, keepdim=True)
    rho = sums.clamp_min(_EPS * _EPS).rsqrt()
    if scale != 1.0:
        rho = rho * scale
    return positive_random_features(tokens * rho, projection, sums * rho.square())


class _NormalizedPositiveFeatures(torch.autograd.Function):
    r""":func:`_normalized_positive_features` as one node. With :math:`s = \|t\|^2`, :math:`\rho = \alpha/\sqrt{\max(s,
    \epsilon^2)}`, :math:`\hat x = \rho\, t` and :math:`\Phi = \exp(\hat x W + c)`, :math:`c = -\tfrac12 s\rho^2 -
    \tfrac12\log m`:

    * forward: :math:`\hat x W = \rho\,(t W)`: the scale, the offset and the exponential go in place on the product
      (:math:`\hat x` is never formed);
    * backward, with :math:`\bar y = \bar\Phi \odot \Phi` and :math:`p = \bar y W^\top`:
      :math:`\bar t = \rho\, p + \kappa\, t` with :math:`\kappa = -\rho^3\,(t \cdot p)/\alpha^2` where
      :math:`s > \epsilon^2` (there :math:`s\rho^2 = \alpha^2`, so :math:`c` is constant) and :math:`\kappa = -\rho^2
      \sum_j \bar y_{\cdot j}` where the norm is clamped (there :math:`\rho` is constant). Autograd through the
      composition takes about twice the full-size passes and temporaries.

    A backward pass that is itself differentiated goes through the composition (:mod:`sparsecode._replay`)."""

    @staticmethod
    def forward(ctx, tokens: torch.Tensor, projection: torch.Tensor, scale: float) -> torch.Tensor:
        sums = tokens.square().sum(dim=-1, keepdim=True)
        rho = sums.clamp_min(_EPS * _EPS).rsqrt()
        if scale != 1.0:
            rho = rho * scale
        offset = (sums * rho.square()).mul_(-0.5).sub_(0.5 * math.log(projection.shape[-1]))
        # x̂W = ρ (tW): the tokens' scale is applied to the product, in the same pass as the offset
        product = torch.matmul(tokens, projection)
        features = torch.addcmul(offset, product, rho, out=product).exp_()
        ctx.save_for_backward(tokens, rho, sums, projection, features)
        ctx.scale = scale
        return features

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        tokens, rho, sums, projection, features = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the backward is wanted: differentiate the composition
            return replay_backward(_normalized_positive_features, (tokens, projection), ctx.needs_input_grad[:2],
                                   grad, ctx.scale) + (None,)
        grad_y = grad * features
        p = torch.matmul(grad_y, projection.transpose(-1, -2))
        # t̄ = ρ p + κρ t, with x̂ = ρ t: κρ = -ρ³ (t·p)/α², or -ρ² Σ_j ȳ_j where the norm is clamped
        clamped = sums <= _EPS * _EPS
        rho_sq = rho.square()
        kappa_rho = torch.where(clamped, grad_y.sum(dim=-1, keepdim=True).neg_(),
                                (tokens * p).sum(dim=-1, keepdim=True).mul_(rho).mul_(-1.0 / ctx.scale ** 2))
        return torch.addcmul(p.mul_(rho), tokens, kappa_rho.mul_(rho_sq)), None, None


class PerformerDictionary(Dictionary):
    r"""Dynamic dictionary :math:`\Phi(X)` of positive random features, per head; ``bind(X)`` returns the
    :class:`~sparsecode.dictionaries.dense.DenseOperator` of weight :math:`\Phi(X)` ``(B, heads, N, m)``
    (``stacked=True``: signals ``(B, heads, d, N)``, codes ``(B, heads, d, m)``).

    Example::

        d = PerformerDictionary(n_heads=6, head_dim=32, n_features=64, normalize_atoms=True)
        layer = SparseReconstruction(d, solver=ISTA(max_iter=5), threshold=SoftThreshold(0.3), residual=True)
        z = layer(v.transpose(-1, -2), context=q)   # q: (B, 6, N, 32), v: (B, 6, N, 32) -> z: (B, 6, 32, N)

    Args:
        n_heads: number of heads.
        head_dim: token dimension per head :math:`d_h`.
        n_features: number of random features (atoms) :math:`m`.
        normalize_input: L2-normalise each token's head vector before the features (as the released code).
        input_scale: multiply the (normalised) tokens by this factor before the features.
        normalize_atoms: L2-normalise each atom over the tokens (over ``N``), as the released code.
        lipschitz: ``"power"``, ``"exact"``, ``"row_sum"``, ``"perron"`` or a positive number (see ``DenseOperator``).
        power_iterations: iterations of a cold power iteration.
        seed: seed of the Gaussian projection :math:`W` (ignored when ``generator`` is given).
        generator: random generator for :math:`W`.
        device, dtype: where to build :math:`W`.
    """

    is_dynamic = True
    _lipschitz_modes = ("power", "exact", "row_sum", "perron")

    def __init__(
        self,
        n_heads: int,
        head_dim: int,
        n_features: int,
        *,
        normalize_input: bool = False,
        input_scale: float = 1.0,
        normalize_atoms: bool = False,
        lipschitz: LipschitzSpec = "power",
        power_iterations: int = 50,
        seed: int = 0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(lipschitz=lipschitz, power_iterations=power_iterations)
        check_positive_int(n_heads, "n_heads")
        check_positive_int(head_dim, "head_dim")
        check_positive_int(n_features, "n_features")
        if isinstance(input_scale, bool) or not isinstance(input_scale, (int, float)) or not input_scale > 0:
            raise ValueError(f"input_scale must be a positive number, got {input_scale!r}")
        gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
        w = torch.randn((n_heads, head_dim, n_features), generator=gen, dtype=dtype or torch.get_default_dtype())
        self.register_buffer("projection", w.to(device))
        self.n_heads, self.head_dim, self.n_features = n_heads, head_dim, n_features
        self.normalize_input, self.input_scale, self.normalize_atoms = normalize_input, float(input_scale), \
            normalize_atoms

    @property
    def n_atoms(self) -> int:
        return self.n_features

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        r""":math:`\Phi(X)` ``(B, heads, N, m)`` from tokens ``(B, heads, N, head_dim)`` (input normalisation,
        scale, features, then atom normalisation over ``N`` as configured)."""
        phi = self._raw_features(tokens)
        return l2_normalize(phi, dim=-2) if self.normalize_atoms else phi

    def _raw_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The features before the atom normalisation."""
        check_float_tensor(tokens, "context", min_ndim=4, finite=False)
        if tokens.ndim != 4 or tokens.shape[1] != self.n_heads or tokens.shape[-1] != self.head_dim:
            raise ValueError(f"context (the tokens X) must have shape (B, {self.n_heads}, N, {self.head_dim}), "
                             f"got {tuple(tokens.shape)}")
        projection = self.projection.to(tokens.dtype)
        if self.normalize_input and tokens.dtype in (torch.float32, torch.float64):
            if (projection.requires_grad or not torch.is_grad_enabled()
                    or torch.is_autocast_enabled(tokens.device.type)):
                return _normalized_positive_features(tokens, projection, self.input_scale)
            # contiguous tokens (often a strided view of a larger projection output): the node keeps this copy, not
            # the whole projection output, and reads it in one layout
            return _NormalizedPositiveFeatures.apply(tokens.contiguous(), projection, self.input_scale)
        x = l2_normalize(tokens, dim=-1) if self.normalize_input else tokens
        if self.input_scale != 1.0:
            x = x * self.input_scale
        return positive_random_features(x, projection)

    def bind(self, context: Any = None) -> DenseOperator:
        """The stacked dense operator of :math:`\\Phi(X)` for the tokens ``context`` ``(B, heads, N, head_dim)``."""
        if context is None:
            raise ValueError("PerformerDictionary is dynamic: bind(context) needs the tokens X "
                             f"(B, {self.n_heads}, N, {self.head_dim})")
        options = {"stacked": True, "lipschitz": self.lipschitz_mode, "warm_start": self,
                   "power_iterations": self.power_iterations}
        phi = self._raw_features(context)
        if not self.normalize_atoms or phi.dtype not in (torch.float32, torch.float64):
            return DenseOperator(l2_normalize(phi, dim=-2) if self.normalize_atoms else phi, **options)
        # atoms normalised over the tokens through the Gram diagonal: P = Φ D with D = diag(‖φ_k‖)⁻¹ read off
        # diag(ΦᵀΦ), and PᵀP = D ΦᵀΦ D; P itself is formed only if someone reads the operator's weight
        raw_gram = gram_of(phi)
        scale = raw_gram.diagonal(dim1=-2, dim2=-1).clamp_min(_EPS * _EPS).rsqrt()
        return DenseOperator(phi, raw_gram=raw_gram, column_scale=scale, **options)

    def _unbound(self) -> ValueError:
        return ValueError("PerformerDictionary is dynamic: call bind(X) and use the returned operator")

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """Not defined without tokens: raises ``ValueError`` (use ``bind(X).decode``)."""
        raise self._unbound()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Not defined without tokens: raises ``ValueError`` (use ``bind(X).encode``)."""
        raise self._unbound()

    def lipschitz(self) -> torch.Tensor:
        """Not defined without tokens: raises ``ValueError`` (use ``bind(X).lipschitz``)."""
        raise self._unbound()

    def check_signal(self, x: torch.Tensor, name: str = "x") -> None:
        """Signals are :math:`V^\\top`, ``(B, heads, d, N)``."""
        if x.ndim != 4 or x.shape[1] != self.n_heads:
            raise ValueError(f"{name} must have shape (B, {self.n_heads}, d, N) (the values transposed), "
                             f"got {tuple(x.shape)}")

    def code_shape(self, signal_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(signal_shape[:-1]) + (self.n_features,)

    def probe_shape(self) -> tuple[tuple[int, ...], int]:
        raise self._unbound()

    def extra_repr(self) -> str:
        return (f"n_heads={self.n_heads}, head_dim={self.head_dim}, n_features={self.n_features}, "
                f"normalize_input={self.normalize_input}, normalize_atoms={self.normalize_atoms}")
