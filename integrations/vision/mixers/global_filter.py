"""GFNet's global filter token mixer (Rao et al. 2021): a learnable circular convolution over the token grid."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GlobalFilter"]


def _as_grid(grid_size: int | tuple[int, int]) -> tuple[int, int]:
    """Normalise ``grid_size`` to ``(height, width)`` and validate it."""
    if isinstance(grid_size, int) and not isinstance(grid_size, bool):
        grid = (grid_size, grid_size)
    elif isinstance(grid_size, (tuple, list)) and len(grid_size) == 2:
        grid = (int(grid_size[0]), int(grid_size[1]))
    else:
        raise ValueError(f"grid_size must be an int or a (height, width) pair, got {grid_size!r}")
    if grid[0] <= 0 or grid[1] <= 0:
        raise ValueError(f"grid_size must be positive, got {grid_size!r}")
    return grid


class GlobalFilter(nn.Module):
    """Global filter layer: per-channel multiplication by a learnable complex filter in the 2-D Fourier domain.

    For tokens laid out on an ``h × w`` grid, channel c,

        Y_c = F⁻¹( K_c ⊙ F(X_c) ),

    with F the orthonormal real 2-D FFT and K ∈ C^{h × (w//2+1) × C} (``complex_weight`` stores its
    real and imaginary parts in the last axis). This is a circular convolution of every channel with
    its own full-size kernel. The FFT runs in float32 whatever the input dtype; the result is cast back.

    Args:
        dim: token width C.
        grid_size: token grid ``(h, w)`` (or ``h`` for a square grid); N must equal h·w.
        seed: seed of the N(0, 0.02²) initialisation of the filter.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        dim: int,
        grid_size: int | tuple[int, int],
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.grid_size = _as_grid(grid_size)
        self.num_heads = 1
        height, width = self.grid_size
        generator = torch.Generator(device="cpu").manual_seed(seed)
        weight = torch.randn(height, width // 2 + 1, dim, 2, generator=generator, device="cpu") * 0.02
        self.complex_weight = nn.Parameter(weight.to(device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter tokens ``x`` of shape ``(B, h·w, C)``; returns the same shape and dtype."""
        height, width = self.grid_size
        if x.ndim != 3 or x.shape[1] != height * width or x.shape[2] != self.dim:
            raise ValueError(f"x must have shape (B, {height * width}, {self.dim}), got {tuple(x.shape)}")
        batch = x.shape[0]
        grid = x.float().reshape(batch, height, width, self.dim)
        spectrum = torch.fft.rfft2(grid, dim=(1, 2), norm="ortho")
        spectrum = spectrum * torch.view_as_complex(self.complex_weight.float().contiguous())
        filtered = torch.fft.irfft2(spectrum, s=(height, width), dim=(1, 2), norm="ortho")
        return filtered.reshape(batch, height * width, self.dim).to(x.dtype)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Response map of the filter (it has no query/key): a_j = ‖y_j‖₂ / Σ_k ‖y_k‖₂ with Y = GlobalFilter(X).

        A circular convolution mixes every token with the same total weight, so the mean token's
        attention over the grid would be uniform; the share of output energy at each position is
        the informative map instead.

        Args:
            x: the tokens this mixer receives, shape ``(B, N, C)``.

        Returns:
            ``(B, 1, N)`` non-negative weights summing to one over the tokens.
        """
        output = self.forward(x)
        norms = output.to(torch.promote_types(output.dtype, torch.float32)).norm(dim=-1)
        return (norms / norms.sum(dim=-1, keepdim=True).clamp_min(1e-12)).unsqueeze(1)
