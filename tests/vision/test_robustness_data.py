"""Data layouts, preprocessing, fault-tolerant loading and sharding of the robustness suite."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from integrations.vision.robustness import (
    ClassFolderDataset,
    DataRoot,
    DatasetLayoutError,
    MIT1003FixationDataset,
    Preprocessing,
    UnpaddedDistributedSampler,
    VOCForegroundDataset,
    add_data_arguments,
    data_root_from_args,
    evaluate,
    imagenet_c_layout,
    imagenet_r_wnids,
    imagenet_wnids,
    limit_dataset,
    make_loader,
    two_hundred_class_subset,
)
from integrations.vision.robustness.synthetic_trees import (
    write_class_folder_tree,
    write_imagenet_c_tree,
    write_mit1003_tree,
    write_voc_tree,
)

CLASSES = tuple(f"class_{i}" for i in range(5))


def test_preprocessing_standard_shapes() -> None:
    image = Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8))
    policy = Preprocessing.standard(224)
    assert policy == Preprocessing(crop_size=224, resize_size=256)
    assert policy(image).shape == (3, 224, 224)
    assert Preprocessing.standard(64, resize=False) == Preprocessing(crop_size=64, resize_size=None)
    assert Preprocessing.standard(None)(image).shape == (3, 300, 400)
    with pytest.raises(ValueError, match="crop_size"):
        Preprocessing(crop_size=0)


def test_crop_box_hand_computed() -> None:
    # resize 256: (300, 400) -> (256, 341); crop 224 at top 16, left round(58.5) = 58.
    box = Preprocessing(224, 256).crop_box_in_original(300, 400)
    scale = 300 / 256
    assert box.top == int(16 * scale + 0.5) and box.height == int(240 * scale + 0.5) - box.top
    assert box.left == int(58 * 400 / 341 + 0.5)
    plain = Preprocessing(32, None).crop_box_in_original(40, 48)
    assert (plain.top, plain.left, plain.height, plain.width) == (4, 8, 32, 32)
    whole = Preprocessing(None, None).crop_box_in_original(40, 48)
    assert (whole.top, whole.left, whole.height, whole.width) == (0, 0, 40, 48)


def test_crop_box_matches_what_the_model_sees() -> None:
    # A marker inside the visible region must land inside the box, one outside must not.
    policy = Preprocessing(16, None)
    box = policy.crop_box_in_original(30, 20)
    pixels = np.zeros((30, 20, 3), dtype=np.uint8)
    pixels[box.top, box.left] = 255
    pixels[box.top + box.height - 1, box.left + box.width - 1] = 255
    seen = policy(Image.fromarray(pixels))
    assert float(seen[0, 0, 0]) == 1.0 and float(seen[0, -1, -1]) == 1.0


def test_class_folder_labels_follow_the_class_list(tmp_path: Path) -> None:
    write_class_folder_tree(tmp_path / "val", CLASSES, [3, 1], per_class=2, extension=".png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "val" / CLASSES[1] / "extra.bmp")
    dataset = ClassFolderDataset(tmp_path / "val", CLASSES, Preprocessing(None, None))
    assert len(dataset) == 5
    assert dataset.present_class_indices == (1, 3)
    assert sorted({label for _, label in dataset.samples}) == [1, 3]
    image, label = dataset[0]
    assert image.shape == (3, 32, 32)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and label == 1


def test_class_folder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        ClassFolderDataset(tmp_path / "missing", CLASSES, Preprocessing(None, None), layout="<val>/<class>/<image>")
    write_class_folder_tree(tmp_path / "val", CLASSES, [0], per_class=1)
    (tmp_path / "val" / "not_a_class").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"not_a_class.*<val>/<class>/<image>"):
        ClassFolderDataset(tmp_path / "val", CLASSES, Preprocessing(None, None), layout="<val>/<class>/<image>")
    (tmp_path / "empty" / CLASSES[0]).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no image files"):
        ClassFolderDataset(tmp_path / "empty", CLASSES, Preprocessing(None, None))


def test_two_hundred_class_mask_selects_exactly_the_listed_wnids(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    r_wnids = imagenet_r_wnids()
    chosen = [wnids.index(w) for w in r_wnids[:3]]
    write_class_folder_tree(tmp_path / "imagenet-r", wnids, chosen, per_class=1)
    dataset = ClassFolderDataset(tmp_path / "imagenet-r", wnids, Preprocessing(None, None))
    subset = two_hundred_class_subset(wnids, r_wnids, dataset.present_class_indices)
    assert len(subset) == 200 and subset == sorted(subset)
    assert {wnids[i] for i in subset} == set(r_wnids)
    assert set(dataset.present_class_indices) <= set(subset)
    outsider = next(i for i, w in enumerate(wnids) if w not in set(r_wnids))
    with pytest.raises(DatasetLayoutError, match="200 listed classes"):
        two_hundred_class_subset(wnids, r_wnids, (outsider,))
    # Another label space: the folders present.
    assert two_hundred_class_subset(CLASSES, r_wnids, (4, 2)) == [2, 4]


def test_corrupt_image_is_named_counted_and_skipped(tmp_path: Path) -> None:
    write_class_folder_tree(tmp_path / "val", CLASSES, [0, 1], per_class=3)
    bad = tmp_path / "val" / CLASSES[1] / "broken.JPEG"
    bad.write_bytes(b"this is not a jpeg")
    good = next((tmp_path / "val" / CLASSES[0]).glob("*.JPEG")).read_bytes()
    (tmp_path / "val" / CLASSES[0] / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    dataset = ClassFolderDataset(tmp_path / "val", CLASSES, Preprocessing(None, None))
    loader = make_loader(dataset, batch_size=4)
    with pytest.warns(RuntimeWarning) as record:
        batches = list(loader)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.JPEG" in messages and "truncated.JPEG" in messages
    failures = [f for batch in batches for f in batch.failures]
    assert sorted(Path(f.path).name for f in failures) == ["broken.JPEG", "truncated.JPEG"]
    assert sum(batch.size for batch in batches) == 6
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, len(CLASSES)))
    with pytest.warns(RuntimeWarning):
        counts = evaluate(model, loader, progress=False)
    assert (counts.total, counts.failed) == (6, 2)


def test_data_root_resolution(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    root = DataRoot(tmp_path)
    assert root.resolve("imagenet_val") == tmp_path / "imagenet" / "val"
    (tmp_path / "imagenet" / "val").rmdir()
    assert root.resolve("imagenet_val") == tmp_path / "val"
    with pytest.raises(DatasetLayoutError, match=r"imagenet-c.*<corruption>/<severity 1..5>"):
        root.resolve("imagenet_c")
    explicit = DataRoot(paths={"imagenet_c": tmp_path / "val"})
    assert explicit.resolve("imagenet_c") == tmp_path / "val"
    with pytest.raises(ValueError, match="unknown data-set keys"):
        DataRoot(tmp_path, paths={"imagenet-x": tmp_path})
    parser = add_data_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data-root", str(tmp_path), "--imagenet-c", str(tmp_path / "val")])
    from_args = data_root_from_args(args)
    assert from_args.resolve("imagenet_c") == tmp_path / "val" and from_args.resolve("imagenet_val") == tmp_path / "val"


def test_imagenet_c_layout_order_and_errors(tmp_path: Path) -> None:
    write_imagenet_c_tree(tmp_path / "c", CLASSES, [0], ["fog", "gaussian_noise", "speckle_noise"], severities=(2, 1), per_class=1)
    leaves = imagenet_c_layout(tmp_path / "c")
    assert [(c, s) for c, s, _ in leaves] == [
        ("gaussian_noise", 1), ("gaussian_noise", 2), ("fog", 1), ("fog", 2), ("speckle_noise", 1), ("speckle_noise", 2)
    ]
    (tmp_path / "c" / "fog" / "7").mkdir()
    with pytest.raises(DatasetLayoutError, match="severities 1..5"):
        imagenet_c_layout(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="<corruption>/<severity"):
        imagenet_c_layout(tmp_path / "empty")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(1, 5))
def test_unpadded_sampler_covers_every_index_once(size: int, world: int) -> None:
    dataset = list(range(size))
    seen = []
    for rank in range(world):
        sampler = UnpaddedDistributedSampler(dataset, num_replicas=world, rank=rank)
        indices = list(sampler)
        assert len(indices) == len(sampler)
        seen.extend(indices)
    assert sorted(seen) == dataset


def test_limit_dataset_is_seeded() -> None:
    dataset = list(range(50))
    first = limit_dataset(dataset, 10, seed=3)
    again = limit_dataset(dataset, 10, seed=3)
    assert list(first.indices) == list(again.indices) == sorted(first.indices)
    assert limit_dataset(dataset, None) is dataset and limit_dataset(dataset, 80) is dataset
    with pytest.raises(ValueError, match="max_images"):
        limit_dataset(dataset, 0)


def test_voc_dataset_masks_align_with_the_crop(tmp_path: Path) -> None:
    root = write_voc_tree(tmp_path / "VOC2012", images=2, size=(40, 48))
    dataset = VOCForegroundDataset(root, Preprocessing(32, None))
    image, mask = dataset[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.uint8
    assert set(torch.unique(mask).tolist()) <= set(range(21)) | {255}
    # The mask marks the bright square: object pixels are bright in the image.
    objects = (mask != 0) & (mask != 255)
    assert float(image.mean(0)[objects].min()) > 0.7
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000000\nmissing_id\n")
    with pytest.raises(DatasetLayoutError, match="missing_id"):
        VOCForegroundDataset(root, Preprocessing(32, None))
    with pytest.raises(DatasetLayoutError, match="JPEGImages"):
        VOCForegroundDataset(tmp_path, Preprocessing(32, None))


def test_mit1003_dataset_reads_fixation_points(tmp_path: Path) -> None:
    root = write_mit1003_tree(tmp_path / "MIT1003", images=2, size=(36, 48))
    dataset = MIT1003FixationDataset(root, Preprocessing(None, None))
    image, fixations = dataset[0]
    assert image.shape == (3, 36, 48) and fixations.shape == (36, 48) and fixations.dtype == torch.bool
    assert 1 <= int(fixations.sum()) <= 5
    assert float(image.mean(0)[fixations].min()) > 0.7
    next((root / "ALLFIXATIONMAPS").glob("*_fixPts.jpg")).unlink()
    with pytest.raises(DatasetLayoutError, match="_fixPts.jpg"):
        MIT1003FixationDataset(root, Preprocessing(None, None))
