"""Every runner on tiny trees in the exact layouts: ImageNet wnids (1000 logits) and a demo label space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from integrations.vision.robustness import (
    BENCHMARKS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PACS_DOMAINS,
    Preprocessing,
    alexnet_imagenet_c_errors,
    imagenet_a_wnids,
    imagenet_r_wnids,
    imagenet_wnids,
    load_rgb,
    run_suite,
)
from integrations.vision.robustness.synthetic_trees import (
    write_class_folder_tree,
    write_imagenet_c_tree,
    write_mit1003_tree,
    write_pacs_tree,
    write_voc_tree,
)

PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")


def _pooled_linear(classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, classes))


def _brightness(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(images.mean(1, keepdim=True), 4)[:, 0]


def _darkness(images: torch.Tensor) -> torch.Tensor:
    return 1.0 - _brightness(images)


class _RecordingFinetune:
    """Replaces the head by a 7-way one and records the domains' labels it was given."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, model: nn.Module, datasets) -> nn.Module:
        self.calls.append([Path(d.root).name for d in datasets])
        assert all({label for _, label in d.samples} <= set(range(7)) for d in datasets)
        model[-1] = nn.Linear(12, len(PACS_CLASSES))
        return model


def _imagenet_tree(root: Path) -> None:
    wnids = imagenet_wnids()
    val_labels = [wnids.index(w) for w in imagenet_r_wnids()[:2]] + [0, 999]
    write_class_folder_tree(root / "imagenet" / "val", wnids, val_labels, per_class=2)
    write_class_folder_tree(root / "imagenet-r", wnids, [wnids.index(w) for w in imagenet_r_wnids()[:3]], per_class=2)
    write_class_folder_tree(root / "imagenet-a", wnids, [wnids.index(w) for w in imagenet_a_wnids()[-2:]], per_class=2)
    write_class_folder_tree(root / "imagenet-sketch", wnids, [5, 6, 7], per_class=1)
    write_imagenet_c_tree(root / "imagenet-c", wnids, [0, 999], ["gaussian_noise", "fog"], per_class=1)
    write_pacs_tree(root / "PACS", PACS_CLASSES, per_class=1)
    write_voc_tree(root / "VOCdevkit" / "VOC2012", images=4, size=(40, 48))
    write_mit1003_tree(root / "MIT1003", images=3, size=(36, 48))


def test_every_runner_on_imagenet_layouts(tmp_path: Path) -> None:
    _imagenet_tree(tmp_path)
    model = _pooled_linear(1000)
    finetune = _RecordingFinetune()
    results = run_suite(
        model, model_name="tiny", checkpoint_digest="a" * 64, data_root=tmp_path, benchmarks=list(BENCHMARKS),
        out_dir=tmp_path / "run", image_size=24, attention_fn=_brightness, finetune_fn=finetune,
        batch_size=4, progress=False,
    )
    assert set(results) == set(BENCHMARKS)
    # Clean top-1 by hand: same preprocessing, normalisation and arg-max over 1000 logits.
    policy = Preprocessing.standard(24)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    wnids = imagenet_wnids()
    correct = 0
    for path in sorted((tmp_path / "imagenet" / "val").glob("*/*")):
        logits = model(((policy(load_rgb(path)) - mean) / std)[None])
        correct += int(int(logits.argmax()) == wnids.index(path.parent.name))
    assert results["clean"]["total"] == 8 and results["clean"]["correct"] == correct
    assert results["clean"]["top1"] == pytest.approx(100 * correct / 8)
    assert results["imagenet_r"]["classes_scored"] == 200 and results["imagenet_r"]["total"] == 6
    assert results["imagenet_a"]["classes_scored"] == 200 and results["imagenet_a"]["total"] == 4
    assert results["imagenet_sketch"]["total"] == 3
    assert results["pgd"]["total"] == results["fgsm"]["total"] == 8
    assert results["pgd"]["steps"] == 5 and results["pgd"]["eps"] == pytest.approx(1 / 255)
    # ImageNet-C: mCE from the stored per-severity entries, by hand, against AlexNet.
    imagenet_c = results["imagenet_c"]
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    entries = stored["models"]["tiny"]["a" * 64]["imagenet_c"]["entries"]
    assert len(entries) == 10
    alexnet = alexnet_imagenet_c_errors()
    expected_errors = {
        c: sum(1 - entries[f"{c}/{s}"]["top1"] / 100 for s in range(1, 6)) / 5 for c in ("gaussian_noise", "fog")
    }
    assert imagenet_c["corruption_errors"] == pytest.approx(expected_errors)
    assert imagenet_c["mce"] == pytest.approx(100 * sum(expected_errors[c] / alexnet[c] for c in expected_errors) / 2)
    assert imagenet_c["complete"] is False
    # PACS: one fine-tune per held-out domain, on the other three.
    assert sorted(map(sorted, finetune.calls)) == sorted(sorted(set(PACS_DOMAINS) - {d}) for d in PACS_DOMAINS)
    assert set(results["pacs"]["domains"]) == set(PACS_DOMAINS) and results["pacs"]["classes"] == list(PACS_CLASSES)
    assert results["voc_segmentation"]["images"] == 4 and results["voc_segmentation"]["miou"] > 80.0
    assert results["mit1003_nss"]["images"] == 3 and results["mit1003_nss"]["nss"] > 1.0
    for name in ("results.json", "results.md", "robustness.png", "imagenet_c.png"):
        assert (tmp_path / "run" / name).is_file()
    json.dumps(results)


def test_demo_label_space_and_reference_mce(tmp_path: Path) -> None:
    classes = tuple(f"class_{i}" for i in range(10))
    write_class_folder_tree(tmp_path / "val", classes, range(10), per_class=2, size=16, extension=".png")
    write_class_folder_tree(tmp_path / "imagenet-r", classes, [2, 7], per_class=2, size=16, extension=".png")
    write_imagenet_c_tree(tmp_path / "imagenet-c", classes, range(10), ["blur", "noise"], severities=(1, 2), per_class=1, size=16, extension=".png")
    reference = {"blur": 0.8, "noise": 0.5}
    results = run_suite(
        _pooled_linear(10), model_name="demo", checkpoint_digest="b" * 64, data_root=tmp_path,
        benchmarks=["clean", "imagenet_r", "imagenet_c"], out_dir=tmp_path / "run", class_names=classes,
        image_size=None, resize=False, batch_size=8, progress=False, imagenet_c_reference=reference,
        reference_clean_error=0.2, plots=False,
    )
    assert results["clean"]["total"] == 20
    assert results["imagenet_r"]["classes_scored"] == 2
    errors = results["imagenet_c"]["corruption_errors"]
    clean_error = 1 - results["clean"]["top1"] / 100
    assert results["imagenet_c"]["mce"] == pytest.approx(100 * (errors["blur"] / 0.8 + errors["noise"] / 0.5) / 2)
    assert results["imagenet_c"]["relative_mce"] == pytest.approx(
        100 * ((errors["blur"] - clean_error) / 0.6 + (errors["noise"] - clean_error) / 0.3) / 2
    )
    assert results["imagenet_c"]["reference"] == "custom"


def test_attention_runners_prefer_the_right_maps(tmp_path: Path) -> None:
    write_voc_tree(tmp_path / "VOCdevkit" / "VOC2012", images=3, size=(40, 48), mask_folder="SegmentationObject")
    write_mit1003_tree(tmp_path / "MIT1003", images=3, size=(36, 48))
    common = dict(
        checkpoint_digest="c" * 64, data_root=tmp_path, benchmarks=["voc_segmentation", "mit1003_nss"],
        class_names=("x",), image_size=32, resize=False, batch_size=2, progress=False, plots=False,
    )
    good = run_suite(_pooled_linear(1), model_name="good", out_dir=tmp_path / "good", attention_fn=_brightness, **common)
    bad = run_suite(_pooled_linear(1), model_name="bad", out_dir=tmp_path / "bad", attention_fn=_darkness, **common)
    assert good["voc_segmentation"]["miou"] > 80.0 and good["voc_segmentation"]["fp"] < 20.0
    assert bad["voc_segmentation"]["miou"] < 30.0 and bad["voc_segmentation"]["fn"] > 70.0
    assert good["mit1003_nss"]["nss"] > 1.0 > 0.0 > bad["mit1003_nss"]["nss"]


def test_voc_with_mixed_image_sizes_and_no_resize(tmp_path: Path) -> None:
    root = write_voc_tree(tmp_path / "VOCdevkit" / "VOC2012", images=3, size=(40, 48))
    first = "2007_000000"
    image = Image.open(root / "JPEGImages" / f"{first}.jpg")
    image.resize((60, 30), Image.Resampling.BILINEAR).save(root / "JPEGImages" / f"{first}.jpg", quality=95)
    mask = Image.open(root / "SegmentationClass" / f"{first}.png")
    mask.resize((60, 30), Image.Resampling.NEAREST).save(root / "SegmentationClass" / f"{first}.png")
    results = run_suite(
        _pooled_linear(1), model_name="m", checkpoint_digest="9" * 64, data_root=tmp_path, benchmarks=["voc_segmentation"],
        out_dir=tmp_path / "run", class_names=("x",), image_size=None, batch_size=3, progress=False, plots=False,
        attention_fn=_brightness,
    )
    assert results["voc_segmentation"]["images"] == 3 and results["voc_segmentation"]["miou"] > 70.0


def test_runner_argument_errors(tmp_path: Path) -> None:
    write_voc_tree(tmp_path / "VOCdevkit" / "VOC2012", images=1)
    write_pacs_tree(tmp_path / "PACS", PACS_CLASSES[:2], per_class=1)
    common = dict(model_name="m", checkpoint_digest="f" * 64, data_root=tmp_path, out_dir=tmp_path / "run", progress=False, plots=False)
    with pytest.raises(ValueError, match="attention_fn"):
        run_suite(_pooled_linear(2), benchmarks=["voc_segmentation"], **common)
    with pytest.raises(ValueError, match="finetune_fn"):
        run_suite(_pooled_linear(2), benchmarks=["pacs"], **common)
    with pytest.raises(ValueError, match="unknown|non-empty list"):
        run_suite(_pooled_linear(2), benchmarks=["imagenet_z"], **common)
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        run_suite(_pooled_linear(2), benchmarks=["voc_segmentation"], attention_fn=lambda x: x.mean(1).flatten(1), **common)
