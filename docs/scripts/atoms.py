r"""Figure: dictionary atoms — the 2-D DCT basis and a dictionary learned from image patches.

Left: the 64 atoms of ``DCTDictionary((8, 8))`` (each atom is ``decode`` of a unit code). Right: 100 atoms of a
``LinearDictionary(64, 100, normalize_atoms=True)`` learned from 8 × 8 patches of scikit-image's ``camera`` picture
by alternating minimisation of :math:`\tfrac12\|Pu - x\|^2 + \lambda\|u\|_1`: FISTA codes the batch (no gradient), then
one Adam step on :math:`P` with the codes fixed.

Usage::

    python docs/scripts/atoms.py                 # writes docs/assets/figures/atoms.png
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm import tqdm

from sparsecode import DCTDictionary, FISTA, LinearDictionary, SoftThreshold, SparseReconstruction

from _figure_io import FIGURE_DIR, plt, save_figure

__all__ = ["dct_atoms", "image_patches", "learn_patch_dictionary", "tile_atoms", "main"]


def dct_atoms(size: int = 8) -> torch.Tensor:
    """The ``size²`` atoms of the orthonormal 2-D DCT, shape ``(size², size, size)`` (``decode`` of unit codes)."""
    dictionary = DCTDictionary((size, size))
    units = torch.eye(size * size).reshape(size * size, size, size)
    return dictionary.decode(units)


def image_patches(n_patches: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """``n_patches`` random ``size × size`` patches of ``skimage.data.camera()``, mean removed, unit norm.

    Returns:
        A float32 tensor of shape ``(n_patches, size * size)``.
    """
    from skimage import data

    image = torch.from_numpy(data.camera()).float() / 255.0
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, image.shape[0] - size, (n_patches,), generator=g)
    cols = torch.randint(0, image.shape[1] - size, (n_patches,), generator=g)
    offsets = torch.arange(size)
    patches = image[(rows[:, None, None] + offsets[None, :, None]), (cols[:, None, None] + offsets[None, None, :])]
    patches = patches.reshape(n_patches, size * size)
    patches = patches - patches.mean(dim=1, keepdim=True)
    norms = patches.norm(dim=1)
    keep = norms > 0.05  # drop flat patches: they carry no structure to learn
    return patches[keep] / norms[keep, None]


def learn_patch_dictionary(patches: torch.Tensor, n_atoms: int = 100, lam: float = 0.1, steps: int = 600,
                           batch_size: int = 256, lr: float = 0.01, seed: int = 0) -> LinearDictionary:
    """Learn a dictionary by alternating sparse coding (FISTA, 50 iterations) and Adam steps on the atoms.

    Args:
        patches: ``(N, n_features)`` training signals.
        n_atoms: number of atoms.
        lam: the penalty weight.
        steps: number of Adam steps.
        batch_size: patches per step.
        lr: Adam learning rate.
        seed: seed of the initial atoms and of the batch draws.
    """
    g = torch.Generator().manual_seed(seed)
    dictionary = LinearDictionary(patches.shape[1], n_atoms, normalize_atoms=True, generator=g)
    layer = SparseReconstruction(dictionary, FISTA(max_iter=50), SoftThreshold(lam))
    optimizer = torch.optim.Adam(dictionary.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="learning atoms", leave=False):
        batch = patches[torch.randint(0, patches.shape[0], (batch_size,), generator=g)]
        with torch.no_grad():
            code = layer.solve(batch).code
        loss = 0.5 * (dictionary.decode(code) - batch).pow(2).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return dictionary


def tile_atoms(atoms: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Arrange ``(K, h, w)`` atoms in a near-square grid, each scaled to [-1, 1], separated by ``pad`` zeros."""
    k, h, w = atoms.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    scaled = atoms / atoms.reshape(k, -1).abs().amax(dim=1).clamp_min(1e-12)[:, None, None]
    canvas = torch.zeros(rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(k):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = scaled[i]
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=FIGURE_DIR / "atoms.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    patches = image_patches(20_000)
    learned = learn_patch_dictionary(patches, steps=args.steps)
    with torch.no_grad():
        learned_atoms = learned.matrix().T.reshape(-1, 8, 8)
    fig, (ax_dct, ax_learned) = plt.subplots(1, 2, figsize=(9, 4.6), constrained_layout=True)
    for ax, atoms, title in ((ax_dct, dct_atoms(8), "DCTDictionary((8, 8)): 64 atoms"),
                             (ax_learned, learned_atoms, "LinearDictionary(64, 100) learned from patches")):
        ax.imshow(tile_atoms(atoms).numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    print("wrote", save_figure(fig, args.out))


if __name__ == "__main__":
    main()
