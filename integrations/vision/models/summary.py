"""Parameter counts and FLOPs of the tiny models: ``python -m integrations.vision.models.summary``.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one image (matrix products and
convolutions; element-wise operations and FFTs are not counted; softmax attention runs its explicit
path so that its products are counted). The table reports GMACs
(multiply–accumulates, = counted FLOPs / 2, the unit papers call "GFLOPs") and the counted GFLOPs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..mixers import SelfAttention
from .registry import create_model, describe_model, model_names

__all__ = ["ModelCost", "measure_model", "format_table", "main"]


@dataclass(frozen=True)
class ModelCost:
    """Cost of one model: name, parameters (millions), multiply–accumulates and FLOPs (billions) per image."""

    name: str
    params_m: float
    gmacs: float
    gflops: float


def measure_model(name: str, img_size: int = 224) -> ModelCost:
    """Count the parameters and the forward FLOPs of ``create_model(name, img_size=img_size)`` on one image.

    Args:
        name: registered model name.
        img_size: input side.
    """
    model = create_model(name, img_size=img_size).eval()
    params = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.fused = False  # the fused kernel is invisible to FlopCounterMode on the CPU
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, model.in_chans, img_size, img_size))
    flops = counter.get_total_flops()
    return ModelCost(name, params / 1e6, flops / 2e9, flops / 1e9)


def format_table(costs: Sequence[ModelCost]) -> str:
    """A Markdown table of ``costs``."""
    lines = ["| model | params (M) | GMACs | GFLOPs (2·MAC) |", "|---|---:|---:|---:|"]
    lines += [f"| {c.name} | {c.params_m:.2f} | {c.gmacs:.2f} | {c.gflops:.2f} |" for c in costs]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """Print the table for the tiny models (or ``--models``) and return it.

    Args:
        argv: command-line arguments (``--img-size``, ``--models``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224, help="input side (default 224)")
    parser.add_argument("--models", nargs="*", default=None, help="model names (default: every tiny model)")
    args = parser.parse_args(argv)
    names = args.models or [n for n in model_names() if describe_model(n)[2] == "tiny" and not n.endswith("_tiny")]
    table = format_table([measure_model(name, args.img_size) for name in names])
    print(table)
    return table


if __name__ == "__main__":
    main()
