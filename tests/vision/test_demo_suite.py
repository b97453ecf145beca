"""Tests of the generated demo suite: layouts, counts, ground truth, determinism, caching, contact sheet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from integrations.vision.corruptions import CORRUPTIONS
from integrations.vision.demo import (
    PACS_DOMAINS,
    DemoSuiteInfo,
    ObjectPose,
    generate_demo_suite,
    load_demo_suite_info,
    object_mask,
    save_contact_sheet,
)
from integrations.vision.demo import suite as suite_module
from integrations.vision.demo.voc import VOID_LABEL, label_map_with_void

SMALL = dict(
    seed=3,
    image_size=40,
    num_classes=3,
    n_train_per_class=3,
    n_test_per_class=2,
    n_corrupted_per_class=1,
    n_rendition_per_class=2,
    n_sketch_per_class=2,
    n_pacs_per_class=2,
    n_voc_images=6,
    n_saliency_images=6,
    n_fixations=25,
    progress=False,
)
CLASSES = ["arrow", "cross", "disk"]


def _digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> DemoSuiteInfo:
    return generate_demo_suite(tmp_path_factory.mktemp("demo") / "suite", num_workers=0, **SMALL)


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_layout_names_and_counts(suite: DemoSuiteInfo) -> None:
    root = suite.root
    assert suite.class_names == tuple(CLASSES)
    assert json.loads((root / "classes.json").read_text()) == CLASSES
    for split, per_class in [("train", 3), ("val", 2), ("imagenet-r", 2), ("imagenet-sketch", 2)]:
        assert sorted(p.name for p in (root / split).iterdir()) == CLASSES
        for name in CLASSES:
            assert len(_pngs(root / split / name)) == per_class, (split, name)
        assert suite.counts[split] == per_class * 3
    assert sorted(p.name for p in (root / "PACS").iterdir()) == sorted(PACS_DOMAINS)
    for domain in PACS_DOMAINS:
        for name in CLASSES:
            assert len(_pngs(root / "PACS" / domain / name)) == 2
    assert sorted(p.name for p in (root / "imagenet-c").iterdir()) == sorted(CORRUPTIONS)
    for corruption in CORRUPTIONS:
        assert sorted(p.name for p in (root / "imagenet-c" / corruption).iterdir()) == ["1", "2", "3", "4", "5"]
        for severity in range(1, 6):
            for name in CLASSES:
                files = _pngs(root / "imagenet-c" / corruption / str(severity) / name)
                assert [f.name for f in files] == [f"{name}_00000.png"]
    assert suite.counts["imagenet-c"] == 15 * 5 * 3
    voc = root / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(ids) == 6
    for image_id in ids:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (voc / "SegmentationClass" / f"{image_id}.png").is_file()
        assert (voc / "SegmentationObject" / f"{image_id}.png").is_file()
    mit = root / "MIT1003"
    stimuli = sorted((mit / "ALLSTIMULI").glob("*.jpeg"))
    assert len(stimuli) == 6
    for stimulus in stimuli:
        assert (mit / "ALLFIXATIONMAPS" / f"{stimulus.stem}_fixMap.jpg").is_file()
        assert (mit / "ALLFIXATIONMAPS" / f"{stimulus.stem}_fixPts.jpg").is_file()
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["generator"] == "integrations.vision.demo"
    assert manifest["config"]["seed"] == 3 and manifest["config"]["image_size"] == 40
    for key, path in suite.paths.items():
        assert path.exists(), key
    assert load_demo_suite_info(root) == suite


def test_images_load_at_the_right_size(suite: DemoSuiteInfo) -> None:
    root = suite.root
    rgb_files = [*root.glob("train/*/*.png"), *root.glob("imagenet-c/*/*/*/*.png"), *root.glob("PACS/*/*/*.png"),
                 *root.glob("imagenet-r/*/*.png"), *root.glob("VOCdevkit/VOC2012/JPEGImages/*.jpg"),
                 *root.glob("MIT1003/ALLSTIMULI/*.jpeg")]
    assert len(rgb_files) > 250
    for path in rgb_files:
        with Image.open(path) as image:
            assert image.size == (40, 40) and image.mode == "RGB", path
    for path in root.glob("VOCdevkit/VOC2012/SegmentationClass/*.png"):
        with Image.open(path) as image:
            assert image.mode == "P" and image.size == (40, 40)
            assert image.getpalette()[3:6] == [128, 0, 0]
            assert set(np.unique(np.asarray(image))) <= {0, 1, 2, 3, VOID_LABEL}
    for path in root.glob("MIT1003/ALLFIXATIONMAPS/*.jpg"):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (40, 40)


def test_corrupted_images_are_corrupted_val_images(suite: DemoSuiteInfo) -> None:
    clean = np.asarray(Image.open(suite.root / "val" / "disk" / "disk_00000.png"), dtype=float)
    for corruption in ("gaussian_noise", "fog", "pixelate"):
        distortion = [
            np.abs(np.asarray(Image.open(suite.root / "imagenet-c" / corruption / str(s) / "disk" / "disk_00000.png"),
                              dtype=float) - clean).mean()
            for s in (1, 5)
        ]
        assert 0 < distortion[0] < distortion[1], corruption


def test_segmentation_masks_match_a_rerender_of_the_objects(suite: DemoSuiteInfo) -> None:
    root = suite.root
    records = json.loads((root / "annotations" / "voc.json").read_text())
    assert len(records) == 6
    for record in records:
        ids = np.zeros((40, 40), dtype=np.int32)
        for index, obj in enumerate(record["objects"]):
            pose = ObjectPose(obj["center_x"], obj["center_y"], obj["radius"], obj["angle"], obj["aspect"])
            ids[object_mask(obj["class"], pose, (40, 40))] = index + 1
        expected = label_map_with_void(ids, [obj["label"] + 1 for obj in record["objects"]])
        stored = np.asarray(Image.open(root / "VOCdevkit/VOC2012/SegmentationClass" / f"{record['id']}.png"))
        np.testing.assert_array_equal(stored, expected)
        foreground = (stored > 0) & (stored != VOID_LABEL)
        assert foreground.sum() > 20  # at least one visible object
        image = np.asarray(Image.open(root / "VOCdevkit/VOC2012/JPEGImages" / f"{record['id']}.jpg"), dtype=float)
        assert image.shape == (40, 40, 3)


def test_fixations_fall_mostly_on_objects_and_give_objects_high_nss(suite: DemoSuiteInfo) -> None:
    root = suite.root
    records = json.loads((root / "annotations" / "mit1003.json").read_text())
    on_object, nss = [], []
    for record in records:
        points = np.asarray(Image.open(root / "MIT1003/ALLFIXATIONMAPS" / f"{record['name']}_fixPts.jpg")) > 127
        expected = np.zeros((40, 40), dtype=bool)
        rows, cols = np.asarray(record["fixations_row_col"]).T
        expected[rows, cols] = True
        np.testing.assert_array_equal(points, expected)  # the JPEG keeps the binary point map exact
        mask = np.zeros((40, 40), dtype=bool)
        for obj in record["objects"]:
            pose = ObjectPose(obj["center_x"], obj["center_y"], obj["radius"], obj["angle"], obj["aspect"])
            mask |= object_mask(obj["class"], pose, (40, 40))
        on_object.append(ndimage.binary_dilation(mask)[points].mean())
        saliency = mask.astype(float)
        nss.append(((saliency - saliency.mean()) / saliency.std())[points].mean())
        density = np.asarray(Image.open(root / "MIT1003/ALLFIXATIONMAPS" / f"{record['name']}_fixMap.jpg"), dtype=float)
        assert density.max() >= 250 and density[points].mean() > density.mean()
    assert np.mean(on_object) > 0.75
    assert np.mean(nss) > 1.0  # an attention map covering the objects scores a high NSS


def test_generation_is_byte_identical_and_worker_independent(suite: DemoSuiteInfo, tmp_path: Path) -> None:
    again = generate_demo_suite(tmp_path / "again", num_workers=2, **SMALL)
    assert again.counts == suite.counts
    assert _digest(again.root) == _digest(suite.root)


def test_matching_manifest_skips_generation(suite: DemoSuiteInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (suite.root / "manifest.json").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached suite must not be regenerated")

    monkeypatch.setattr(suite_module, "_run_job", fail)
    info = generate_demo_suite(suite.root, num_workers=0, **SMALL)
    assert info == suite
    assert (suite.root / "manifest.json").stat().st_mtime_ns == before


def test_truncated_or_changed_root_is_regenerated(tmp_path: Path) -> None:
    config = {**SMALL, "n_voc_images": 2, "n_saliency_images": 2, "n_corrupted_per_class": 0}
    root = tmp_path / "suite"
    generate_demo_suite(root, num_workers=0, **config)
    reference = _digest(root)
    (root / "manifest.json").unlink()  # as if the run had been interrupted
    for path in sorted((root / "train").rglob("*.png"))[::2]:
        path.unlink()
    (root / "val" / "disk" / "stray.png").write_bytes(b"partial")
    (root / "notes.txt").write_text("not ours")
    generate_demo_suite(root, num_workers=0, **config)
    digest = _digest(root)
    assert digest.pop("notes.txt")  # files that are not part of the suite are left alone
    assert digest == reference
    changed = generate_demo_suite(root, num_workers=0, **{**config, "seed": 4})
    assert changed.config["seed"] == 4
    assert _digest(root)["train/arrow/arrow_00000.png"] != reference["train/arrow/arrow_00000.png"]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"image_size": 16}, ValueError, "image_size"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 11}, ValueError, "num_classes"),
        ({"n_corrupted_per_class": 3}, ValueError, "n_corrupted_per_class"),
        ({"n_train_per_class": -1}, ValueError, "n_train_per_class"),
        ({"n_test_per_class": 0, "n_corrupted_per_class": 0}, ValueError, "n_test_per_class"),
        ({"n_voc_images": 1.5}, TypeError, "n_voc_images"),
        ({"corruptions": ("fog", "rain")}, ValueError, "rain"),
        ({"corruptions": "fog"}, TypeError, "corruptions"),
        ({"num_workers": -1}, ValueError, "num_workers"),
    ],
)
def test_bad_configuration_is_rejected(tmp_path: Path, overrides: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        generate_demo_suite(tmp_path / "bad", **{**SMALL, **overrides})


def test_root_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="root must be a directory"):
        generate_demo_suite(path, **SMALL)


def test_contact_sheet(suite: DemoSuiteInfo, tmp_path: Path) -> None:
    out = save_contact_sheet(suite.root, tmp_path / "sheets" / "sheet.png", columns=4, cell=32)
    with Image.open(out) as sheet:
        rows = 13  # train, val, C, R, sketch, 4 PACS, VOC image, VOC mask, MIT, MIT fixations
        assert sheet.size == (110 + 4 * 36, rows * 36 + 4)
        pixels = np.asarray(sheet.convert("RGB"))
    assert pixels.std() > 20
    with pytest.raises(ValueError, match="columns"):
        save_contact_sheet(suite.root, tmp_path / "x.png", columns=0)
