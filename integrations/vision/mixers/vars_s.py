"""VARS-S token mixer: sparse reconstruction of every channel on a static global-convolution dictionary.

With tokens X ∈ R^{N×C} on an ``h × w`` grid, values V = X W_v (``v``), and for each channel c a dictionary P_c
of A = 5 global circular filters given by their half spectra (``sparsecode.FFTConvDictionary``, ``kernel``
(C, A, 1, h, w/2+1, 2)), the mixer computes

    u_c* ≈ argmin_u ½‖P_c u − v_c‖² + λ‖u‖₁   (the solver of the configuration, :mod:`.vars_config`),
    r_c = P_c u_c*,   s_c = F⁻¹(K2_c ⊙ F r_c)   (a second per-channel global filter ``kernel2``, a 1-atom
    ``FFTConvDictionary`` used through its analysis operator),   Y = norm(S) W_o + b_o,

where ``norm`` is the identity in the mixer form (DeiT*, GFNet*: the block normalises before the mixer) and a
batch normalisation over channels (:class:`ChannelBatchNorm`, ``norm1``) in the released RVT block
(:class:`integrations.vision.models.VARS_S_Block`).

State-dict keys are the released ``VARS_S_Block``'s: ``kernel`` and ``L`` (our ``sparse.dictionary.kernel`` /
``.L``, the running step-size bound of the original variant), ``kernel2`` (our ``output_filter.kernel``),
``kernel_norm`` (the mean atom norm at initialisation, stored by the original and unused), ``v``, ``proj``.
The 1-atom filter's own step-size buffer and the fixed λ are not stored.

The running bound L is refreshed by ``refresh_step_size(momentum)`` of the dictionary
(L ← (1 − momentum)·L + momentum·max_freq ‖K_{c,:,freq}‖²); the trainer calls it every 100 iterations on every
submodule that has it (``training.step_size.refresh_step_sizes``). Known difference from the released code: its
``update_L`` casts the complex per-frequency Gram to float before the SVD, which keeps only the real part, so it
tracks max σ(Re(K Kᴴ)) ≤ max ‖K‖²; ``sparsecode.FFTConvDictionary`` tracks the true top singular value. The
forward pass is unaffected (it reads the stored ``L``, so loaded checkpoints compute exactly as released); only
the value L drifts to after a refresh, and the initial L of a fresh model, differ.

Attention map (:meth:`VARS_S.attention_map`): a circular convolution weighs every token alike, so the mean
token's weights would be uniform; as for GFNet's filter, the map is the share of the sparse reconstruction's
energy at each token, a_j = ‖r_{·j}‖₂ / Σ_k ‖r_{·k}‖₂ (one head).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsecode import ISTA, FFTConvDictionary, SparseReconstruction

from .attention import _check_tokens
from .spec import MixerSpec, reject_extra
from .state_aliases import alias_state_dict_keys
from .vars_config import VARS_S_CONFIGS, SolveConfig, make_threshold, solve_config
from .vars_d import _check_grid

__all__ = ["VARS_S", "ChannelBatchNorm", "build_vars_s", "normalized_fft_kernel"]


def normalized_fft_kernel(
    channels: int, atoms: int, grid: tuple[int, int], generator: torch.Generator, std: float = 0.06
) -> torch.Tensor:
    """Random half-spectrum atoms scaled to unit mean power: K_{c,a} / (2 Σ_freq |K_{c,a}|² / N)^{1/2}.

    The released initialisation: i.i.d. N(0, std²) real and imaginary parts, each atom rescaled so that
    2 Σ |K|² / N = 1 over its half spectrum (N = h·w).

    Args:
        channels: C.
        atoms: atoms per channel A.
        grid: the token grid ``(h, w)``.
        generator: random generator (CPU).
        std: standard deviation before the rescaling.

    Returns:
        The real view ``(C, A, 1, h, w // 2 + 1, 2)``.
    """
    h, w = grid
    kernel = torch.randn((channels, atoms, 1, h, w // 2 + 1, 2), generator=generator, device="cpu") * std
    power = kernel.pow(2).sum(dim=-1).sum(dim=(2, 3, 4), keepdim=True) * 2 / (h * w)
    return kernel / power.sqrt().unsqueeze(-1)


class ChannelBatchNorm(nn.Module):
    """Batch normalisation of tokens over their channels: y = BN(xᵀ)ᵀ for x ``(B, N, C)`` (the released ``batch_norm``).

    Args:
        dim: channels C.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise tokens ``(B, N, C)``, statistics per channel over batch and tokens."""
        return self.bn(x.transpose(-2, -1)).transpose(-2, -1)


class VARS_S(nn.Module):  # noqa: N801 - the released name
    """VARS-S mixer: Y = norm(F2(P u*(V))) W_o + b_o with a static per-channel FFT dictionary (see module docstring).

    Args:
        dim: token width C.
        grid_size: the token grid ``(h, w)`` of the global filters.
        variant: ``"original"`` (released code) or ``"paper"`` (paper equations), see :mod:`.vars_config`.
        qkv_bias: bias of the value projection ``v``.
        proj_drop: dropout after the output projection.
        seed: seed of the random initial filters.
        atoms_per_channel: A (5 in the released code).
        lam: override the variant's λ.
        num_steps: override the variant's number of ISTA steps.
        norm: module applied between the filters and ``proj`` (default identity; the RVT block passes a
            :class:`ChannelBatchNorm`).
    """

    def __init__(
        self,
        dim: int,
        grid_size: tuple[int, int],
        *,
        variant: str = "original",
        qkv_bias: bool = False,
        proj_drop: float = 0.0,
        seed: int = 0,
        atoms_per_channel: int = 5,
        lam: float | None = None,
        num_steps: int | None = None,
        norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if isinstance(atoms_per_channel, bool) or not isinstance(atoms_per_channel, int) or atoms_per_channel <= 0:
            raise ValueError(f"atoms_per_channel must be a positive int, got {atoms_per_channel!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if norm is not None and not isinstance(norm, nn.Module):
            raise TypeError(f"norm must be an nn.Module or None, got {type(norm).__name__}")
        self.config: SolveConfig = solve_config(VARS_S_CONFIGS, variant, lam, num_steps)
        self.variant = variant
        self.dim = dim
        self.grid_size = _check_grid(tuple(grid_size) if isinstance(grid_size, list) else grid_size)
        self.num_tokens = self.grid_size[0] * self.grid_size[1]
        generator = torch.Generator(device="cpu").manual_seed(seed)
        kernel = normalized_fft_kernel(dim, atoms_per_channel, self.grid_size, generator)
        exact = self.config.exact_step
        device = torch.get_default_device()  # the random draws are made on the CPU, then moved there
        dictionary = FFTConvDictionary(
            dim, atoms_per_channel, self.grid_size, kernel=kernel,
            gram_mode="exact" if exact else "pointwise", lipschitz="exact" if exact else "running", device=device,
        )
        solver = ISTA(max_iter=self.config.num_steps, init=self.config.init)
        self.sparse = SparseReconstruction(dictionary, solver, make_threshold(self.config), residual=False,
                                           check_finite=False)
        h, w = self.grid_size
        filter_kernel = torch.randn((dim, 1, 1, h, w // 2 + 1, 2), generator=generator, device="cpu") * 0.02
        self.output_filter = FFTConvDictionary(dim, 1, self.grid_size, kernel=filter_kernel, lipschitz="exact",
                                               device=device)
        atom_norms = (kernel.pow(2).sum(dim=-1).sum(dim=(2, 3, 4)) * 2 / self.num_tokens).sqrt()
        self.register_buffer("kernel_norm", atom_norms.mean().to(device))  # stored by the released code, unused
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm = norm if norm is not None else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        alias_state_dict_keys(
            self,
            {"kernel": "sparse.dictionary.kernel", "L": "sparse.dictionary.L", "kernel2": "output_filter.kernel"},
            hidden=("sparse.threshold.lam_param", "output_filter.L"),
        )

    @property
    def dictionary(self) -> FFTConvDictionary:
        """The FFT convolution dictionary P (``refresh_step_size`` lives there)."""
        return self.sparse.dictionary

    def _check_input(self, x: torch.Tensor) -> None:
        _check_tokens(x, self.dim)
        if x.shape[1] != self.num_tokens:
            raise ValueError(f"x must have {self.num_tokens} tokens (grid {self.grid_size}), got {x.shape[1]}")

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """The sparse reconstruction r = P u* of the values, channels first ``(B, C, N)``.

        Args:
            x: tokens ``(B, N, C)``.
        """
        self._check_input(x)
        return self.sparse(self.v(x).transpose(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens ``x`` of shape ``(B, N, C)``; returns ``(B, N, C)``."""
        filtered = self.output_filter.encode(self.reconstruction(x)).transpose(-2, -1)
        return self.proj_drop(self.proj(self.norm(filtered.to(x.dtype))))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Share of reconstruction energy per token: a_j = ‖r_{·j}‖₂ / Σ_k ‖r_{·k}‖₂ (see module docstring).

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.

        Returns:
            ``(B, 1, N)`` non-negative weights summing to one over the tokens.
        """
        recon = self.reconstruction(x)
        norms = recon.to(torch.promote_types(recon.dtype, torch.float32)).norm(dim=1)  # (B, N)
        total = norms.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(norms, 1.0 / norms.shape[-1])
        weights = torch.where(total > 0, norms / total.clamp_min(torch.finfo(norms.dtype).tiny), uniform)
        return weights.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, grid_size={self.grid_size}, variant={self.variant!r}, lam={self.config.lam}, "
                f"num_steps={self.config.num_steps}")


def build_vars_s(spec: MixerSpec, **extra: Any) -> nn.Module:
    """Mixer-table constructor of VARS-S (no heads, no attention dropout).

    ``extra`` may hold ``atoms_per_channel``, ``lam`` and ``num_steps`` (see :class:`VARS_S`).
    """
    reject_extra("vars_s", extra, ("atoms_per_channel", "lam", "num_steps"))
    if not 0.0 <= spec.attn_drop < 1.0:
        raise ValueError(f"attn_drop must be in [0, 1), got {spec.attn_drop!r}")
    return VARS_S(spec.dim, tuple(spec.grid_size), variant=spec.variant, qkv_bias=spec.qkv_bias,
                  proj_drop=spec.proj_drop, seed=spec.seed, **extra)
