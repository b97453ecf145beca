"""Distributed evaluation on 2 CPU processes (gloo) gives the single-process counts."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from integrations.vision.robustness import (
    ClassFolderDataset,
    Preprocessing,
    evaluate,
    make_loader,
    run_suite,
)
from integrations.vision.robustness.synthetic_trees import write_class_folder_tree, write_voc_tree

CLASSES = tuple(f"c{i}" for i in range(3))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, len(CLASSES)))


def _brightness(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(images.mean(1, keepdim=True), 4)[:, 0]


def _counts(root: Path) -> dict[str, int]:
    dataset = ClassFolderDataset(root / "val", CLASSES, Preprocessing(None, None))
    counts = evaluate(_model(), make_loader(dataset, batch_size=2), progress=False)
    return {"correct": counts.correct, "total": counts.total, "failed": counts.failed}


def _worker(rank: int, world: int, port: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        counts = _counts(Path(root))
        suite = run_suite(
            _model(), model_name="tiny", checkpoint_digest="e" * 64, data_root=root,
            benchmarks=["clean", "voc_segmentation"], out_dir=Path(root) / "run", class_names=CLASSES,
            image_size=None, resize=False, batch_size=2, progress=False, plots=False, attention_fn=_brightness,
        )
        (Path(root) / f"rank{rank}.json").write_text(json.dumps({"counts": counts, "suite": suite}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.filterwarnings("ignore:skipping unreadable image")
def test_two_process_counts_equal_single_process(tmp_path: Path) -> None:
    write_class_folder_tree(tmp_path / "val", CLASSES, [0, 1, 2], per_class=3, extension=".png")  # 9: uneven over 2
    (tmp_path / "val" / CLASSES[2] / "broken.png").write_bytes(b"not a png")
    write_voc_tree(tmp_path / "VOCdevkit" / "VOC2012", images=5, size=(32, 32))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single_counts = _counts(tmp_path)
    assert single_counts == {"correct": single_counts["correct"], "total": 9, "failed": 1}
    single_suite = run_suite(
        _model(), model_name="tiny", checkpoint_digest="e" * 64, data_root=tmp_path,
        benchmarks=["clean", "voc_segmentation"], out_dir=tmp_path / "single", class_names=CLASSES,
        image_size=None, resize=False, batch_size=2, progress=False, plots=False, attention_fn=_brightness,
    )
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["counts"] == single_counts
        assert result["suite"]["clean"] == single_suite["clean"]
        assert result["suite"]["voc_segmentation"]["images"] == 5
        for key in ("miou", "fp", "fn"):
            assert abs(result["suite"]["voc_segmentation"][key] - single_suite["voc_segmentation"][key]) < 1e-9
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["models"]["tiny"]["e" * 64]["clean"]["summary"]["total"] == 9
