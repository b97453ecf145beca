"""Metrics of the robustness suite against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.vision.robustness import (
    accuracy_percent,
    alexnet_imagenet_c_errors,
    attention_nss,
    corruption_errors,
    foreground_from_attention,
    mean_corruption_accuracy,
    mean_corruption_error,
    mean_segmentation_scores,
    normalize_attention,
    normalized_scanpath_saliency,
    relative_mean_corruption_error,
    segmentation_scores,
    top1_correct,
)


def test_top1_correct_full_and_subset() -> None:
    logits = torch.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 9.0]])
    labels = torch.tensor([1, 0])
    assert top1_correct(logits, labels) == 1  # predictions 1, 2
    assert top1_correct(logits, labels, logit_subset=[0, 1]) == 2  # predictions 1, 0
    assert top1_correct(logits, labels, logit_subset=[2]) == 0  # always class 2
    with pytest.raises(ValueError, match="logit_subset"):
        top1_correct(logits, labels, logit_subset=[3])
    with pytest.raises(ValueError, match="labels"):
        top1_correct(logits, torch.tensor([0]))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 7), st.integers(0, 1000))
def test_top1_subset_of_all_classes_equals_plain(batch: int, classes: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    assert top1_correct(logits, labels, logit_subset=range(classes)) == top1_correct(logits, labels)


def test_accuracy_percent() -> None:
    assert accuracy_percent(3, 4) == 75.0
    assert accuracy_percent(0, 0) == 0.0
    with pytest.raises(ValueError):
        accuracy_percent(5, 4)


def test_corruption_metrics_hand_computed() -> None:
    severity_errors = {"a": {1: 0.2, 2: 0.4}, "b": {1: 0.5, 2: 0.7}}
    errors = corruption_errors(severity_errors)
    assert errors == pytest.approx({"a": 0.3, "b": 0.6})
    reference = {"a": 0.6, "b": 0.8}
    # CE_a = 0.3/0.6 = 0.5, CE_b = 0.6/0.8 = 0.75 -> mCE = 100 * 0.625
    assert mean_corruption_error(errors, reference) == pytest.approx(62.5)
    # mean error over the 4 cells = 0.45 -> 55 %
    assert mean_corruption_accuracy(severity_errors) == pytest.approx(55.0)
    # relative: ((0.3-0.1)/(0.6-0.2) + (0.6-0.1)/(0.8-0.2)) / 2 = (0.5 + 0.8333)/2
    assert relative_mean_corruption_error(errors, 0.1, reference, 0.2) == pytest.approx(100 * (0.5 + 5 / 6) / 2)


def test_mce_of_alexnet_itself_is_100() -> None:
    alexnet = alexnet_imagenet_c_errors()
    assert len(alexnet) == 15
    assert mean_corruption_error(alexnet) == pytest.approx(100.0)
    assert mean_corruption_error({"fog": alexnet["fog"] / 2}) == pytest.approx(50.0)


def test_corruption_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="speckle_noise"):
        mean_corruption_error({"speckle_noise": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corruption_errors({"fog": {1: 1.5}})
    with pytest.raises(ValueError, match="no severities"):
        corruption_errors({"fog": {}})


def test_segmentation_scores_hand_computed() -> None:
    mask = torch.tensor([[0, 1, 1], [255, 0, 1]], dtype=torch.uint8)
    foreground = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    # void pixel (1,0) ignored; TP = (0,1),(1,2); FP = (0,0),(1,1); FN = (0,2)
    scores = segmentation_scores(foreground, mask)
    assert scores.iou == pytest.approx(2 / 5)
    assert scores.false_positive_rate == pytest.approx(2 / 4)
    assert scores.false_negative_rate == pytest.approx(1 / 3)


def test_segmentation_scores_edge_cases() -> None:
    background = torch.zeros(2, 2, dtype=torch.uint8)
    nothing = torch.zeros(2, 2, dtype=torch.bool)
    empty = segmentation_scores(nothing, background)
    assert (empty.iou, empty.false_positive_rate, empty.false_negative_rate) == (1.0, 0.0, 0.0)
    everything = segmentation_scores(~nothing, background)
    assert (everything.iou, everything.false_positive_rate, everything.false_negative_rate) == (0.0, 1.0, 0.0)
    summary = mean_segmentation_scores([empty, everything])
    assert summary == pytest.approx({"miou": 50.0, "fp": 50.0, "fn": 0.0, "images": 2})
    with pytest.raises(ValueError, match="equal shape"):
        segmentation_scores(nothing, torch.zeros(3, 2, dtype=torch.uint8))


def test_foreground_from_attention_threshold() -> None:
    attention = torch.tensor([[2.0, 4.0], [2.4, 3.0]])  # normalised: [[0, 1], [0.2, 0.5]]
    foreground = foreground_from_attention(attention, (2, 2), threshold=0.3)
    assert foreground.tolist() == [[False, True], [False, True]]
    assert foreground_from_attention(attention, (4, 6)).shape == (4, 6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(0, 10_000))
def test_normalize_attention_range(batch: int, height: int, width: int, seed: int) -> None:
    maps = torch.randn(batch, height, width, generator=torch.Generator().manual_seed(seed)) * 5 + 3
    normalised = normalize_attention(maps)
    assert normalised.shape == maps.shape
    assert float(normalised.min()) >= 0.0 and float(normalised.max()) <= 1.0 + 1e-6
    if height * width > 1:
        flat = normalised.flatten(1)
        assert torch.allclose(flat.max(dim=1).values, torch.ones(batch))
        assert torch.allclose(flat.min(dim=1).values, torch.zeros(batch))
    assert torch.equal(normalize_attention(torch.full((2, 3), 7.0)), torch.zeros(2, 3))


def test_nss_hand_computed() -> None:
    saliency = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # mean 1.5, population std sqrt(1.25)
    fixations = torch.tensor([[False, False], [False, True]])
    assert normalized_scanpath_saliency(saliency, fixations) == pytest.approx(1.5 / math.sqrt(1.25))
    both = torch.tensor([[True, False], [False, True]])
    assert normalized_scanpath_saliency(saliency, both) == pytest.approx(0.0, abs=1e-12)
    assert normalized_scanpath_saliency(torch.ones(2, 2), both) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        normalized_scanpath_saliency(saliency, torch.zeros(2, 2, dtype=torch.bool))
    assert attention_nss(saliency, fixations) == pytest.approx(1.5 / math.sqrt(1.25))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 10.0), st.floats(-5.0, 5.0), st.integers(0, 10_000))
def test_nss_invariant_to_positive_affine_maps(scale: float, shift: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # float64: in float32, 0.1 * s + 4.8 keeps only ~5 significant digits of the map's spread
    saliency = torch.rand(5, 7, generator=generator, dtype=torch.float64)
    fixations = torch.rand(5, 7, generator=generator) > 0.7
    fixations[0, 0] = True
    base = normalized_scanpath_saliency(saliency, fixations)
    assert normalized_scanpath_saliency(saliency * scale + shift, fixations) == pytest.approx(base, abs=1e-6)
