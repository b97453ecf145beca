"""Pixel-space FGSM / PGD: the ε-ball, their effect on a trained linear model, and torchattacks parity."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from integrations.vision.robustness import NormalizedModel, evaluate, fgsm_attack, pgd_attack
from integrations.vision.robustness.imagenet_facts import IMAGENET_MEAN, IMAGENET_STD


def _linear_model(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, classes))


def _separable_data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    colours = torch.tensor([[0.45, 0.5, 0.5], [0.5, 0.45, 0.5], [0.5, 0.5, 0.45]])
    images = colours[labels][:, :, None, None] + 0.01 * torch.randn(count, 3, 8, 8, generator=generator)
    return images.clamp(0, 1), labels


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = _linear_model()
    pixel_model = NormalizedModel(model, IMAGENET_MEAN, IMAGENET_STD)
    images, labels = _separable_data(60, seed=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(pixel_model(images), labels).backward()
        optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    model.eval()
    return model, *_separable_data(30, seed=2)


def test_pgd_lowers_accuracy_of_a_trained_linear_model(trained) -> None:
    model, images, labels = trained
    loader = [(images, labels)]
    clean = evaluate(model, loader, progress=False)
    assert clean.top1 == 100.0
    generator = torch.Generator().manual_seed(0)

    def attack(pixel_model, x, y):
        return pgd_attack(pixel_model, x, y, eps=8 / 255, alpha=2 / 255, steps=10, generator=generator)

    attacked = evaluate(model, loader, attack=attack, progress=False)
    assert attacked.total == clean.total and attacked.top1 < 50.0
    fgsm = evaluate(model, loader, attack=lambda m, x, y: fgsm_attack(m, x, y, eps=8 / 255), progress=False)
    assert fgsm.top1 < clean.top1
    assert all(p.grad is None for p in model.parameters())


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 0.1), st.integers(0, 3), st.booleans(), st.integers(0, 1000))
def test_pgd_stays_in_the_eps_ball_and_in_range(eps: float, steps: int, random_start: bool, seed: int) -> None:
    model = NormalizedModel(_linear_model(seed % 7))
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor([0, 1, 2, 0])
    generator = torch.Generator().manual_seed(seed)
    adversarial = pgd_attack(model, images, labels, eps=eps, alpha=eps / 2, steps=steps, random_start=random_start, generator=generator)
    assert float((adversarial - images).abs().max()) <= eps + 1e-6
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    again = pgd_attack(
        model, images, labels, eps=eps, alpha=eps / 2, steps=steps, random_start=random_start,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(adversarial, again)


def test_attack_arguments_are_validated() -> None:
    model = NormalizedModel(_linear_model())
    images, labels = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(model, images, labels, eps=-1.0)
    with pytest.raises(ValueError, match="steps"):
        pgd_attack(model, images, labels, steps=-2)
    with pytest.raises(ValueError, match="labels"):
        fgsm_attack(model, images, torch.tensor([0]))


def test_normalized_model_normalises() -> None:
    inner = nn.Identity()
    model = NormalizedModel(inner, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    out = model(torch.ones(1, 3, 1, 1))
    assert out.flatten().tolist() == pytest.approx([1.0, 3.0, 0.5])
    with pytest.raises(ValueError, match="std"):
        NormalizedModel(inner, mean=(0.0,), std=(0.0,))
    with pytest.raises(ValueError, match="shape"):
        model(torch.ones(1, 1, 2, 2))


def test_matches_torchattacks() -> None:
    torchattacks = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    model = NormalizedModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))).eval()
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    ours = fgsm_attack(model, images, labels, eps=1 / 255)
    theirs = torchattacks.FGSM(model, eps=1 / 255)(images, labels)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    ours = pgd_attack(model, images, labels, eps=4 / 255, alpha=1 / 255, steps=5, random_start=False)
    theirs = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=5, random_start=False)(images, labels)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert float((ours - images).abs().max()) > 0
