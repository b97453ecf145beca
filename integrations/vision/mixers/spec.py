"""What every token mixer is told when it is built, and the check of kind-specific options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["MixerSpec", "reject_extra"]


@dataclass(frozen=True)
class MixerSpec:
    """The options every entry of the mixer table receives (:func:`~integrations.vision.mixers.build_mixer`).

    Attributes:
        dim: token width C.
        num_heads: number of heads (head-less mixers ignore it).
        grid_size: the token grid ``(h, w)``, N = h·w.
        variant: ``"original"`` (released VARS code) or ``"paper"`` (its equations); only VARS kinds differ.
        qkv_bias: whether query/key/value projections have a bias.
        attn_drop: attention-weight dropout probability.
        proj_drop: output-projection dropout probability.
        seed: seed of any fixed random quantity of the mixer.
    """

    dim: int
    num_heads: int
    grid_size: tuple[int, int]
    variant: str
    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    seed: int = 0


def reject_extra(kind: str, extra: dict[str, Any], allowed: Iterable[str] = ()) -> dict[str, Any]:
    """Return ``extra`` if every key is in ``allowed``; raise a ``TypeError`` naming the kind otherwise."""
    allowed = sorted(allowed)
    unknown = sorted(set(extra) - set(allowed))
    if unknown:
        if not allowed:
            raise TypeError(f"mixer kind {kind!r} takes no extra options, got {sorted(extra)}")
        raise TypeError(f"mixer kind {kind!r} accepts the extra options {allowed}, got {unknown}")
    return extra
