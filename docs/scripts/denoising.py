r"""Figure (home page): a sparse-reconstruction layer separates and denoises a 1-D signal.

The signal is three cosines plus two spikes plus Gaussian noise (standard deviation 0.1), length 256. The dictionary
is the union of the orthonormal DCT basis and the identity, :math:`P = [C \;|\; I]` (256 × 512), so a cosine and a
spike each cost one atom. FISTA solves :math:`\min_u \tfrac12\|Pu - x\|^2 + \lambda\|u\|_1` with
:math:`\lambda = 0.25`; the output :math:`z = Pu^\star` is the denoised signal and the two halves of :math:`u^\star`
are the cosine and the spike parts.

Usage::

    python docs/scripts/denoising.py             # writes docs/assets/figures/denoising.png
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsecode import DCTDictionary, FISTA, LinearDictionary, SoftThreshold, SparseReconstruction

from _figure_io import FIGURE_DIR, plt, save_figure

__all__ = ["DenoisingExample", "cosine_spike_dictionary", "cosines_and_spikes", "denoise", "main"]


def cosine_spike_dictionary(n: int) -> LinearDictionary:
    """The fixed dictionary :math:`[C \\;|\\; I]`: the ``n`` orthonormal DCT atoms, then the ``n`` spikes."""
    cosines = DCTDictionary(n).decode(torch.eye(n)).T  # column j = decode(e_j)
    return LinearDictionary(weight=torch.cat([cosines, torch.eye(n)], dim=1), learnable=False)


def cosines_and_spikes(n: int = 256, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean signal (three DCT atoms and two spikes) and its noisy copy, each of shape ``(1, n)``."""
    g = torch.Generator().manual_seed(seed)
    code = torch.zeros(1, 2 * n)
    code[0, [5, 12, 31]] = torch.tensor([6.0, -4.0, 3.0])  # cosines
    code[0, n + torch.tensor([70, 180])] = torch.tensor([2.5, -2.0])  # spikes
    clean = cosine_spike_dictionary(n).decode(code)
    return clean, clean + noise * torch.randn(clean.shape, generator=g)


@dataclass
class DenoisingExample:
    """The clean and noisy signals, the layer's output and the code."""

    clean: torch.Tensor
    noisy: torch.Tensor
    denoised: torch.Tensor
    code: torch.Tensor


def denoise(n: int = 256, lam: float = 0.25, seed: int = 0) -> DenoisingExample:
    """Run the layer of the module docstring on :func:`cosines_and_spikes`."""
    clean, noisy = cosines_and_spikes(n, seed=seed)
    layer = SparseReconstruction(cosine_spike_dictionary(n), FISTA(max_iter=500, tol=1e-6), SoftThreshold(lam))
    with torch.no_grad():
        code = layer.solve(noisy).code
        denoised = layer(noisy)
    return DenoisingExample(clean, noisy, denoised, code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIGURE_DIR / "denoising.png")
    args = parser.parse_args()
    ex = denoise()
    n = ex.clean.shape[-1]
    mse_in = float((ex.noisy - ex.clean).pow(2).mean())
    mse_out = float((ex.denoised - ex.clean).pow(2).mean())
    fig, (ax_sig, ax_code) = plt.subplots(2, 1, figsize=(9, 5.2), constrained_layout=True,
                                          gridspec_kw={"height_ratios": [3, 2]})
    t = torch.arange(n)
    ax_sig.plot(t, ex.noisy[0], color="0.7", lw=1, label=f"input x (noisy, MSE {mse_in:.4f})")
    ax_sig.plot(t, ex.clean[0], color="k", lw=1, ls="--", label="clean signal")
    ax_sig.plot(t, ex.denoised[0], color="C3", lw=1.4, label=f"output z = P u* (MSE {mse_out:.4f})")
    ax_sig.set(xlabel="sample", title="SparseReconstruction(LinearDictionary([DCT | I]), FISTA, SoftThreshold)")
    ax_sig.legend(fontsize=8, loc="upper right")
    code = ex.code[0]
    parts = ((code[:n], "C0", "cosine atoms (DCT part)"), (code[n:], "C1", "spike atoms (identity part)"))
    for part, color, label in parts:
        active = part != 0
        ax_code.stem(t[active], part[active], linefmt=f"{color}-", markerfmt=f"{color}o", basefmt=" ", label=label)
    ax_code.axhline(0, color="0.5", lw=0.8)
    ax_code.set_xlim(-5, n + 5)
    ax_code.set(xlabel="atom index within each part", ylabel="u*",
                title=f"the sparse code: {int((code != 0).sum())} of {2 * n} atoms active")
    ax_code.legend(fontsize=8)
    print(f"MSE noisy {mse_in:.5f} -> denoised {mse_out:.5f}")
    print("wrote", save_figure(fig, args.out))


if __name__ == "__main__":
    main()
