"""Untargeted L∞ attacks in pixel space: FGSM and PGD (Madry et al., 2017).

Both maximise the mean cross-entropy ``ℓ(f(x'), y)`` of a pixel-space classifier ``f`` (use
:class:`NormalizedModel`) over ``‖x' − x‖_∞ ≤ ε`` and ``x' ∈ [0, 1]``. Gradients are taken with
respect to the input only (``torch.autograd.grad``), so model parameters never accumulate ``.grad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fgsm_attack", "pgd_attack"]


def _check_inputs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, C, H, W), got {getattr(images, 'shape', images)!r}")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},), got {getattr(labels, 'shape', labels)!r}")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


def _input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(images), labels)
        (gradient,) = torch.autograd.grad(loss, images)
    return gradient


def fgsm_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float = 1 / 255) -> torch.Tensor:
    """One signed-gradient step: ``x' = clip_[0,1](x + ε · sign(∇_x ℓ(f(x), y)))``.

    Args:
        model: Pixel-space classifier ``f`` (in eval mode).
        images: Clean pixels ``x`` in [0, 1], shape (B, C, H, W).
        labels: True classes ``y`` (B,), indices into ``f``'s logits.
        eps: Step and L∞ radius ε in pixel units (1/255 = one grey level).

    Returns:
        The adversarial images (detached), same shape and dtype as ``images``.
    """
    _check_inputs(model, images, labels)
    _check_positive("eps", eps, allow_zero=True)
    gradient = _input_gradient(model, images, labels)
    return (images.detach() + eps * gradient.sign()).clamp(0.0, 1.0).detach()


def pgd_attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 1 / 255,
    alpha: float = 0.5 / 255,
    steps: int = 5,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy inside the ε-ball.

    ``x⁰ = clip_[0,1](x + U(−ε, ε))`` (or ``x`` without random start), then for ``t < steps``:
    ``x^{t+1} = clip_[0,1](x + clip_[−ε,ε](x^t + α · sign(∇ ℓ(f(x^t), y)) − x))``.

    Args:
        model: Pixel-space classifier ``f`` (in eval mode).
        images: Clean pixels ``x`` in [0, 1], shape (B, C, H, W).
        labels: True classes ``y`` (B,), indices into ``f``'s logits.
        eps: L∞ radius ε in pixel units.
        alpha: Step size α in pixel units.
        steps: Number of gradient steps.
        random_start: Start from a uniform point of the ε-ball.
        generator: Random source of the start (seed it for reproducible attacks); must live on
            the device of ``images``. None uses the global generator.

    Returns:
        The adversarial images (detached), with ``‖x' − x‖_∞ ≤ ε`` and values in [0, 1].
    """
    _check_inputs(model, images, labels)
    _check_positive("eps", eps, allow_zero=True)
    _check_positive("alpha", alpha, allow_zero=True)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    clean = images.detach()
    adversarial = clean.clone()
    if random_start:
        noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        adversarial = (adversarial + (2.0 * noise - 1.0) * eps).clamp(0.0, 1.0)
    for _ in range(steps):
        gradient = _input_gradient(model, adversarial, labels)
        stepped = adversarial + alpha * gradient.sign()
        delta = (stepped - clean).clamp(-eps, eps)
        adversarial = (clean + delta).clamp(0.0, 1.0).detach()
    return adversarial
