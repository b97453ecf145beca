"""VARS-D and VARS-SD token mixers: sparse reconstruction of the values on a dynamic (and static) dictionary.

Per head, with query tokens Q and value tokens V ((W_q, W_v) = ``qkv``, N × d_h each), the dictionary is

* VARS-D:  P = Φ(Q) ∈ R^{N×m}, positive random features of the L2-normalised queries
  (``sparsecode.PerformerDictionary``, projection ``rand_matrix``, m = 2·d_h), atoms L2-normalised over tokens;
* VARS-SD: P = [Φ(Q), K] ∈ R^{N×2m} with a learned static per-head dictionary K (``kernel``, N × m), the
  concatenation L2-normalised over tokens (``sparsecode.ConcatDictionary``),

and each of the d_h value channels v_c (a vector over the N tokens) is coded by the solver of the
configuration (:mod:`.vars_config`): U* ≈ argmin_U ½‖P U − Vᵀ‖² + λ‖U‖₁. The head outputs P U* are merged and
projected: Y = concat_h(P_h U_h*) W_o + b_o. Every piece of the computation (features, concatenation and
normalisation, Gram, solver, threshold) is a ``sparsecode`` part assembled in a ``SparseReconstruction``.

State-dict keys (see :mod:`.state_aliases`) are those of the released ``VARS_D`` / ``VARS_SD`` classes:
``qkv``, ``proj``, ``rand_matrix`` (our ``sparse.dictionary[.parts.0].projection``), ``kernel`` (our
``sparse.dictionary.parts.1.weight``, stored (1, heads, N, m)), ``learned_k`` / ``learned_lam`` /
``learned_L`` (our ``sparse.solver.*``, original variant) and ``L`` (heads,), an unused buffer the released
code keeps. The fixed λ (``sparse.threshold.lam_param``) is not stored.

Attention map (:meth:`VARS_D.attention_map`): the weights with which the *mean output token* is assembled from
the value tokens. The mean of the outputs over the tokens is z̄ = p̄ U* with p̄ = (1/N) Σ_i P_i (the mean
row of the dictionary). Writing the code operator on the active set as one gain per atom,
U* ≈ diag(ρ) PᵀVᵀ with ρ_k = ⟨U*_k, b_k⟩ / ‖b_k‖² (b = PᵀVᵀ, the least-squares gain over the d_h channels,
zero for atoms the threshold switched off), gives z̄ ≈ Σ_j a_j v_j with a_j = Σ_k p̄_k ρ_k P_jk — the
mean-token row of the effective linear map P diag(ρ) Pᵀ. Without sparsity (ρ = 1) this is p̄ Pᵀ, the
Performer map of the mean feature row. Negative weights are clipped, and each map is scaled to sum to one
(uniform if every weight is zero).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsecode import (
    ISTA,
    ConcatDictionary,
    DenseOperator,
    LearnedISTA,
    LinearDictionary,
    PerformerDictionary,
    SparseReconstruction,
)

from .attention import _check_dims, _check_tokens
from .spec import MixerSpec, reject_extra
from .state_aliases import alias_state_dict_keys
from .vars_config import VARS_D_CONFIGS, SolveConfig, make_threshold, solve_config

__all__ = ["VARS_D", "VARS_SD", "build_vars_d", "build_vars_sd"]


def _check_grid(grid_size: Any) -> tuple[int, int]:
    """Validate a ``(h, w)`` token grid."""
    if (
        not isinstance(grid_size, (tuple, list))
        or len(grid_size) != 2
        or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid_size)
    ):
        raise ValueError(f"grid_size must be a pair (h, w) of positive ints, got {grid_size!r}")
    return int(grid_size[0]), int(grid_size[1])


class VARS_D(nn.Module):  # noqa: N801 - the released class name
    """VARS-D: Y = concat_h(Φ_h U_h*) W_o + b_o, U_h* the sparse code of V_hᵀ on Φ_h = Φ(Q_h) (see module docstring).

    Args:
        dim: token width C.
        num_heads: number of heads; ``dim`` must be divisible by it.
        variant: ``"original"`` (released code) or ``"paper"`` (paper equations), see :mod:`.vars_config`.
        qkv_bias: bias of the query/value projection ``qkv`` (C → 2C).
        attn_drop: accepted for the mixer factory; VARS has no attention matrix to drop (must be in [0, 1)).
        proj_drop: dropout after the output projection.
        seed: seed of the random projection ``rand_matrix`` (and of the static atoms of VARS-SD).
        feature_ratio: m / head_dim (2 in the released code).
        lam: override the variant's λ.
        num_steps: override the variant's number of solver steps.
        grid_size: the token grid ``(h, w)``; VARS-D does not depend on it (VARS-SD's static atoms do).
    """

    has_static_atoms = False

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        variant: str = "original",
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        seed: int = 0,
        feature_ratio: int = 2,
        lam: float | None = None,
        num_steps: int | None = None,
        grid_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        head_dim = _check_dims(dim, num_heads)
        if isinstance(feature_ratio, bool) or not isinstance(feature_ratio, int) or feature_ratio <= 0:
            raise ValueError(f"feature_ratio must be a positive int, got {feature_ratio!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not 0.0 <= attn_drop < 1.0:
            raise ValueError(f"attn_drop must be in [0, 1), got {attn_drop!r}")
        self.config: SolveConfig = solve_config(VARS_D_CONFIGS, variant, lam, num_steps)
        self.variant = variant
        self.dim, self.num_heads, self.head_dim = dim, num_heads, head_dim
        self.num_features = head_dim * feature_ratio
        self.qkv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.grid_size = _check_grid(grid_size) if grid_size is not None else None
        generator = torch.Generator(device="cpu").manual_seed(seed)
        dictionary = self._build_dictionary(generator)
        n_atoms = self.num_features * (2 if self.has_static_atoms else 1)
        threshold = make_threshold(self.config)
        if self.config.learned:
            solver = LearnedISTA(n_atoms, max_iter=self.config.num_steps)
        else:
            solver = ISTA(max_iter=self.config.num_steps, init=self.config.init)
        self.sparse = SparseReconstruction(dictionary, solver, threshold, residual=False, check_finite=False)
        aliases = {"rand_matrix": self._projection_key()}
        shapes: dict[str, tuple[int, ...]] = {}
        if self.has_static_atoms:
            aliases["kernel"] = "sparse.dictionary.parts.1.weight"
            shapes["kernel"] = (1, num_heads, self.num_tokens, self.num_features)
        if self.config.learned:
            # the released code keeps an unused per-head buffer L (initialised to 25)
            self.register_buffer("L", torch.full((num_heads,), 25.0))
            for name in ("learned_k", "learned_lam", "learned_L"):
                aliases[name] = f"sparse.solver.{name}"
        alias_state_dict_keys(self, aliases, hidden=("sparse.threshold.lam_param",), public_shapes=shapes)

    def _projection_key(self) -> str:
        return "sparse.dictionary.projection"

    def _features(self, generator: torch.Generator) -> PerformerDictionary:
        """The dynamic part Φ(Q): random features of the L2-normalised queries."""
        lipschitz = "perron" if self.config.exact_step else "row_sum"
        normalize = not self.has_static_atoms  # VARS-SD normalises after the concatenation
        return PerformerDictionary(self.num_heads, self.head_dim, self.num_features, normalize_input=True,
                                   normalize_atoms=normalize, lipschitz=lipschitz, generator=generator)

    def _build_dictionary(self, generator: torch.Generator) -> Any:
        """The dictionary of the sparse reconstruction (VARS-D: the random features alone)."""
        return self._features(generator)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and values ``(B, heads, N, head_dim)`` of tokens ``(B, N, C)``."""
        batch, tokens, _ = x.shape
        # unbind (whose backward is one stack) rather than two selections (each a zero-filled full-size gradient)
        q, v = self.qkv(x).reshape(batch, tokens, 2, self.num_heads, self.head_dim).unbind(dim=2)
        return q.transpose(1, 2), v.transpose(1, 2)

    def _check_input(self, x: torch.Tensor) -> None:
        _check_tokens(x, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens ``x`` of shape ``(B, N, C)``; returns ``(B, N, C)``."""
        self._check_input(x)
        batch, tokens, channels = x.shape
        q, v = self._split_heads(x)
        recon = self.sparse(v.transpose(-1, -2), context=q)  # (B, heads, head_dim, N)
        out = recon.permute(0, 3, 1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-output-token weights a_j ∝ (Σ_k p̄_k ρ_k P_jk)₊ over the value tokens (see module docstring).

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.

        Returns:
            ``(B, heads, N)`` non-negative weights summing to one over the tokens.
        """
        self._check_input(x)
        q, v = self._split_heads(x)
        signal = v.transpose(-1, -2)
        operator: DenseOperator = self.sparse.bind(q)
        code = self.sparse.solve(signal, q).code
        dtype = torch.promote_types(code.dtype, torch.float32)
        atoms = operator.weight.to(dtype)  # (B, heads, N, M)
        encoding = operator.encode(signal).to(dtype)  # (B, heads, head_dim, M)
        code = code.to(dtype)
        gain = (code * encoding).sum(dim=-2) / encoding.pow(2).sum(dim=-2).clamp_min(torch.finfo(dtype).tiny)
        mean_row = atoms.mean(dim=-2)  # (B, heads, M)
        weights = (atoms @ (mean_row * gain).unsqueeze(-1)).squeeze(-1).clamp_min(0)  # (B, heads, N)
        total = weights.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
        return torch.where(total > 0, weights / total.clamp_min(torch.finfo(dtype).tiny), uniform)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_features={self.num_features}, "
                f"variant={self.variant!r}, lam={self.config.lam}, num_steps={self.config.num_steps}")


class VARS_SD(VARS_D):  # noqa: N801 - the released class name
    """VARS-SD: VARS-D with the dictionary [Φ(Q_h), K_h] (2m atoms), K_h a learned static N × m dictionary per head.

    Args:
        dim: token width C.
        num_heads: number of heads.
        grid_size: the token grid ``(h, w)`` (N = h·w rows of the static atoms ``kernel``).
        variant: ``"original"`` or ``"paper"``.
        qkv_bias: bias of ``qkv``.
        attn_drop: accepted for the mixer factory (unused).
        proj_drop: dropout after the output projection.
        seed: seed of ``rand_matrix`` and of the N(0, 1) initial static atoms.
        feature_ratio: m / head_dim.
        lam: override the variant's λ.
        num_steps: override the variant's number of steps.
    """

    has_static_atoms = True

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        grid_size: tuple[int, int] = (14, 14),
        *,
        variant: str = "original",
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        seed: int = 0,
        feature_ratio: int = 2,
        lam: float | None = None,
        num_steps: int | None = None,
    ) -> None:
        grid = _check_grid(grid_size)
        self.num_tokens = grid[0] * grid[1]
        super().__init__(dim, num_heads, variant=variant, qkv_bias=qkv_bias, attn_drop=attn_drop,
                         proj_drop=proj_drop, seed=seed, feature_ratio=feature_ratio, lam=lam, num_steps=num_steps,
                         grid_size=grid)

    def _projection_key(self) -> str:
        return "sparse.dictionary.parts.0.projection"

    def _build_dictionary(self, generator: torch.Generator) -> Any:
        """[Φ(Q), K] with atoms normalised over the tokens after the concatenation."""
        features = self._features(generator)
        static = torch.randn(self.num_heads, self.num_tokens, self.num_features, generator=generator, device="cpu")
        kernel = LinearDictionary(weight=static, learnable=True, device=torch.get_default_device())
        lipschitz = "perron" if self.config.exact_step else "row_sum"
        return ConcatDictionary([features, kernel], normalize_atoms=True, lipschitz=lipschitz)

    def _check_input(self, x: torch.Tensor) -> None:
        _check_tokens(x, self.dim)
        if x.shape[1] != self.num_tokens:
            raise ValueError(f"x must have {self.num_tokens} tokens (grid {self.grid_size}), got {x.shape[1]}")


_VARS_D_OPTIONS = ("feature_ratio", "lam", "num_steps")


def build_vars_d(spec: MixerSpec, **extra: Any) -> nn.Module:
    """Mixer-table constructor of VARS-D (the grid does not matter to it); ``extra``: feature_ratio, lam, num_steps."""
    return VARS_D(spec.dim, spec.num_heads, variant=spec.variant, qkv_bias=spec.qkv_bias, attn_drop=spec.attn_drop,
                  proj_drop=spec.proj_drop, seed=spec.seed, **reject_extra("vars_d", extra, _VARS_D_OPTIONS))


def build_vars_sd(spec: MixerSpec, **extra: Any) -> nn.Module:
    """Mixer-table constructor of VARS-SD (static atoms on the grid); ``extra``: feature_ratio, lam, num_steps."""
    return VARS_SD(spec.dim, spec.num_heads, tuple(spec.grid_size), variant=spec.variant, qkv_bias=spec.qkv_bias,
                   attn_drop=spec.attn_drop, proj_drop=spec.proj_drop, seed=spec.seed,
                   **reject_extra("vars_sd", extra, _VARS_D_OPTIONS))
