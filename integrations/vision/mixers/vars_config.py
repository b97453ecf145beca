"""The two named configurations of the VARS mixers: ``"original"`` (the released code) and ``"paper"`` (its equations).

=================  ===========================================  =============================================
                   ``original`` (golden vectors, checkpoints)   ``paper`` (Eq. 12, §4.4)
=================  ===========================================  =============================================
VARS-D / VARS-SD   λ = 0.3, 5 steps, sign·GELU(|v| − τ)          λ = 0.3, 3 steps, soft threshold,
                   threshold, LearnedISTA (``learned_k``,        ISTA from u₀ = Pᵀx with L = ‖PᵀP‖₂
                   ``learned_lam``, ``learned_L``), L = max      (Collatz–Wielandt bound: exact to 1e-5 for
                   row ℓ₁ of the Gram + 1, u₀ = T(Pᵀx)           the positive VARS-D Gram, about 1% above
                                                                 for VARS-SD)
VARS-S             λ = 3.5, 3 steps, soft threshold, ISTA from   λ = 0.3, 3 steps, soft threshold, ISTA from
                   u₀ = T(Pᵀx), pointwise Gram KKᴴ, L = the      u₀ = Pᵀx, Gram exactly encode∘decode,
                   running buffer ``L`` (``refresh_step_size``)  L = ‖PᵀP‖₂ per channel (closed form)
=================  ===========================================  =============================================

The dictionaries are the same in both configurations (random features of the L2-normalised query
heads, atoms L2-normalised over the tokens; the static atoms of VARS-SD; 5 FFT atoms per channel in VARS-S).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsecode import SmoothSoftThreshold, SoftThreshold, Threshold

__all__ = ["SolveConfig", "VARS_D_CONFIGS", "VARS_S_CONFIGS", "solve_config", "make_threshold"]


@dataclass(frozen=True)
class SolveConfig:
    """How a VARS mixer runs its sparse reconstruction.

    Args:
        lam: sparsity weight λ.
        num_steps: number of solver iterations.
        threshold: ``"smooth_soft"`` (sign·GELU(|v| − τ), the released VARS-D/SD) or ``"soft"`` (the ℓ₁ prox).
        learned: use :class:`sparsecode.LearnedISTA` (released VARS-D/SD) instead of :class:`sparsecode.ISTA`.
        init: the start of ISTA: ``"prox_encode"`` (u₀ = T_λ(Pᵀx)) or ``"encode"`` (u₀ = Pᵀx).
        exact_step: ``True``: L = ‖PᵀP‖₂ (power iteration / closed form); ``False``: the released rule
            (VARS-D/SD: max row ℓ₁ of the Gram + 1; VARS-S: the running buffer ``L``).
    """

    lam: float
    num_steps: int
    threshold: str
    learned: bool
    init: str
    exact_step: bool


VARS_D_CONFIGS: dict[str, SolveConfig] = {
    "original": SolveConfig(lam=0.3, num_steps=5, threshold="smooth_soft", learned=True, init="prox_encode",
                            exact_step=False),
    "paper": SolveConfig(lam=0.3, num_steps=3, threshold="soft", learned=False, init="encode", exact_step=True),
}
"""VARS-D and VARS-SD configurations."""

VARS_S_CONFIGS: dict[str, SolveConfig] = {
    "original": SolveConfig(lam=3.5, num_steps=3, threshold="soft", learned=False, init="prox_encode",
                            exact_step=False),
    "paper": SolveConfig(lam=0.3, num_steps=3, threshold="soft", learned=False, init="encode", exact_step=True),
}
"""VARS-S configurations."""


def solve_config(
    table: dict[str, SolveConfig], variant: str, lam: float | None = None, num_steps: int | None = None
) -> SolveConfig:
    """The configuration ``table[variant]`` with optional overrides of λ and the number of steps.

    Args:
        table: :data:`VARS_D_CONFIGS` or :data:`VARS_S_CONFIGS`.
        variant: ``"original"`` or ``"paper"``.
        lam: a different λ ≥ 0 (``None``: the variant's).
        num_steps: a different number of steps ≥ 1 (``None``: the variant's).
    """
    if variant not in table:
        raise ValueError(f"variant must be one of {tuple(table)}, got {variant!r}")
    config = table[variant]
    if lam is not None:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
            raise ValueError(f"lam must be a number >= 0, got {lam!r}")
        config = SolveConfig(float(lam), config.num_steps, config.threshold, config.learned, config.init,
                             config.exact_step)
    if num_steps is not None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
        config = SolveConfig(config.lam, num_steps, config.threshold, config.learned, config.init, config.exact_step)
    return config



def make_threshold(config: SolveConfig) -> Threshold:
    """The threshold of ``config``: ``SmoothSoftThreshold(λ)`` (sign·GELU(|v| − τ)) or ``SoftThreshold(λ)``.

    It is built on the CPU whatever the ambient default device: a ``sparsecode`` threshold validates λ by
    inspecting its value, which a meta tensor (``with torch.device("meta")``, as ``convert_original_state_dict``
    builds its reference model) cannot provide. Its λ is a 0-d float64 tensor, which combines with tensors on
    any device.

    Args:
        config: the solve configuration.
    """
    threshold_class = SmoothSoftThreshold if config.threshold == "smooth_soft" else SoftThreshold
    with torch.device("cpu"):
        return threshold_class(config.lam)
