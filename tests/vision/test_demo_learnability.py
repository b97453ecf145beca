"""Learnability sanity check of the demo suite (slow; opt in with ``pytest -m slow``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from integrations.vision.demo import generate_demo_suite

pytestmark = pytest.mark.slow


def _features(image: np.ndarray) -> np.ndarray:
    """HOG of the grey image (shape) and a saturation-weighted hue histogram (colour)."""
    from skimage.color import rgb2hsv
    from skimage.feature import hog

    grey = image.mean(axis=2) / 255.0
    shape = hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    hsv = rgb2hsv(image)
    colour = np.histogram(hsv[..., 0], bins=20, range=(0, 1), weights=hsv[..., 1] * hsv[..., 2])[0] / grey.size
    return np.concatenate([shape, 10.0 * colour])


def _load(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.png")):
            features.append(_features(np.asarray(Image.open(path).convert("RGB"))))
            labels.append(label)
    return np.asarray(features), np.asarray(labels)


def test_hog_colour_logistic_regression_learns_well_above_chance(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    info = generate_demo_suite(
        tmp_path / "suite", seed=0, n_train_per_class=100, n_test_per_class=30, n_corrupted_per_class=0,
        n_rendition_per_class=20, n_sketch_per_class=20, n_pacs_per_class=0, n_voc_images=0,
        n_saliency_images=0, progress=False,
    )
    classes = json.loads((info.root / "classes.json").read_text())
    x_train, y_train = _load(info.root / "train", classes)
    x_val, y_val = _load(info.root / "val", classes)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300)).fit(x_train, y_train)
    chance = 1.0 / len(classes)
    assert model.score(x_val, y_val) > 4 * chance  # measured: 0.57 with 100 images per class
    assert model.score(*_load(info.root / "imagenet-sketch", classes)) > 2 * chance  # shape alone carries the class
