"""Input checks shared by the public boundary of :mod:`sparsecode`.

Every check raises an error that names the argument, what was expected and what was given.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["check_float_tensor", "check_trailing_shape", "check_nonnegative", "check_positive_int"]


def check_float_tensor(x: object, name: str, *, min_ndim: int = 1, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor with at least ``min_ndim`` dimensions.

    Args:
        x: the value to check.
        name: the argument's name, used in the error message.
        min_ndim: the least number of dimensions accepted.
        finite: also check that every entry is finite (one reduction; a host sync on GPU).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name} must have a floating-point dtype (float16/bfloat16/float32/float64), got {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values (pass check_finite=False to skip this check)")
    return x


def check_trailing_shape(x: torch.Tensor, name: str, expected: Sequence[int], what: str) -> None:
    """Check that the last ``len(expected)`` dimensions of ``x`` equal ``expected``.

    Args:
        x: the tensor to check.
        name: the argument's name.
        expected: the required trailing shape.
        what: a short description of the trailing dimensions, e.g. ``"(..., n_features)"``.
    """
    expected = tuple(int(e) for e in expected)
    k = len(expected)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != expected:
        raise ValueError(
            f"{name} must have trailing shape {expected} {what}, got shape {tuple(x.shape)}"
        )


def check_nonnegative(value: float | torch.Tensor, name: str) -> None:
    """Check that a scalar or every entry of a tensor is finite and ``>= 0``.

    Values on the ``meta`` device (shape-only construction) are checked for dtype only.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number or a real tensor, got bool")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        return
    t = torch.as_tensor(value, device=value.device if isinstance(value, torch.Tensor) else "cpu")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must be a real number or a real tensor, got {t.dtype}")
    if t.device.type == "meta":
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value}")
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be >= 0, got {value if t.numel() == 1 else 'a tensor with negative entries'}")


def check_positive_int(value: object, name: str, *, allow_none: bool = False) -> None:
    """Check that ``value`` is a positive ``int`` (or ``None`` when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
