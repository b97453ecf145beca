"""Resumable result store: digests, atomic writes, interrupted runs (exception and SIGKILL), reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from integrations.vision.robustness import (
    ResultStore,
    atomic_write_text,
    checkpoint_digest,
    markdown_table,
    plot_corruption_severity,
    plot_robustness_bars,
    run_suite,
)
from integrations.vision.robustness.synthetic_trees import write_imagenet_c_tree

CLASSES = tuple(f"c{i}" for i in range(4))
CORRUPTIONS = ("gaussian_noise", "fog")
SEVERITIES = (1, 2, 3)


class CountingModel(nn.Module):
    """A linear classifier over pooled pixels that counts its forward calls and can fail after some."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, len(CLASSES)))
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        return self.net(images)


def _write_corruptions(root: Path) -> None:
    write_imagenet_c_tree(root / "imagenet-c", CLASSES, range(4), CORRUPTIONS, severities=SEVERITIES, per_class=1, extension=".png")


def _suite(model: nn.Module, data: Path, out: Path, **overrides) -> dict:
    options = dict(
        model_name="tiny", checkpoint_digest="d" * 64, data_root=data, benchmarks=["imagenet_c"], out_dir=out,
        class_names=CLASSES, image_size=None, resize=False, batch_size=64, progress=False, plots=False,
    )
    options.update(overrides)
    return run_suite(model, **options)


def test_checkpoint_digest_depends_on_weights_only(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    state = model.state_dict()
    digest = checkpoint_digest(state)
    assert len(digest) == 64 and digest == checkpoint_digest(model)
    torch.save(state, tmp_path / "w.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    assert checkpoint_digest(tmp_path / "w.pt") == digest
    assert checkpoint_digest(tmp_path / "nested.pth") == digest
    assert checkpoint_digest(tmp_path / "w.safetensors") == digest
    changed = {k: v.clone() for k, v in state.items()}
    changed["bias"][0] += 1e-3
    assert checkpoint_digest(changed) != digest
    assert checkpoint_digest({k: v.double() for k, v in state.items()}) != digest
    with pytest.raises(TypeError, match="source"):
        checkpoint_digest(3)
    with pytest.raises(FileNotFoundError):
        checkpoint_digest(tmp_path / "absent.pt")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    atomic_write_text(target, '{"a": 1}')
    atomic_write_text(target, '{"a": 2}')
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path) -> None:
    _write_corruptions(tmp_path)
    out = tmp_path / "run"
    crashing = CountingModel(fail_after=4)  # one forward per corruption x severity entry
    with pytest.raises(RuntimeError, match="simulated crash"):
        _suite(crashing, tmp_path, out)
    stored = json.loads((out / "results.json").read_text())
    entries = stored["models"]["tiny"]["d" * 64]["imagenet_c"]["entries"]
    assert sorted(entries) == ["fog/1", "gaussian_noise/1", "gaussian_noise/2", "gaussian_noise/3"]
    resumed_model = CountingModel()
    resumed = _suite(resumed_model, tmp_path, out)
    assert resumed_model.calls == 2  # only fog/2 and fog/3
    fresh_model = CountingModel()
    fresh = _suite(fresh_model, tmp_path, tmp_path / "fresh")
    assert fresh_model.calls == 6
    assert resumed == fresh
    again = CountingModel()
    _suite(again, tmp_path, out)
    assert again.calls == 0


def test_changed_config_recomputes(tmp_path: Path) -> None:
    _write_corruptions(tmp_path)
    out = tmp_path / "run"
    _suite(CountingModel(), tmp_path, out)
    model = CountingModel()
    with pytest.warns(RuntimeWarning, match="recomputing"):
        _suite(model, tmp_path, out, max_images=2)
    assert model.calls == 6


_KILLED_RUN = textwrap.dedent(
    """
    import sys, time, torch
    from torch import nn
    from integrations.vision.robustness import run_suite

    class HangsOnThirdEntry(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 4))
            self.calls = 0
        def forward(self, x):
            self.calls += 1
            if self.calls == 3:  # one forward per entry: 2 entries are stored, then wait for SIGKILL
                time.sleep(3600)
            return self.net(x)

    run_suite(HangsOnThirdEntry(), model_name="tiny", checkpoint_digest="d" * 64, data_root=sys.argv[1], benchmarks=["imagenet_c"],
              out_dir=sys.argv[2], class_names=[f"c{i}" for i in range(4)], image_size=None, resize=False,
              batch_size=64, progress=False, plots=False)
    """
)


def test_sigkilled_run_leaves_valid_json_and_resumes(tmp_path: Path) -> None:
    _write_corruptions(tmp_path)
    out = tmp_path / "run"
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(out)], stderr=subprocess.PIPE)
    results = out / "results.json"
    finished: dict = {}
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if results.exists():
                finished = json.loads(results.read_text())["models"]["tiny"]["d" * 64]["imagenet_c"]["entries"]
                if len(finished) >= 2:
                    break
            time.sleep(0.05)
    finally:
        still_running = process.poll() is None
        if still_running:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert still_running and len(finished) == 2, process.stderr.read().decode()[-2000:]
    stored = json.loads(results.read_text())  # never a torn file
    kept = stored["models"]["tiny"]["d" * 64]["imagenet_c"]["entries"]
    assert sorted(kept) == ["gaussian_noise/1", "gaussian_noise/2"]
    model = CountingModel()
    _suite(model, tmp_path, out)
    assert model.calls == 4


def test_store_rejects_a_foreign_file(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ResultStore(tmp_path / "results.json")


def test_reports(tmp_path: Path) -> None:
    summaries = {
        "a@1234": {"clean": {"top1": 71.234}, "imagenet_c": {"mce": 60.0}, "mit1003_nss": {"nss": 0.5}},
        "b@5678": {"clean": {"top1": 50.0}},
    }
    table = markdown_table(summaries)
    lines = table.strip().splitlines()
    assert lines[0] == "| model | Clean top-1 ↑ | IN-C mCE ↓ | MIT1003 NSS ↑ |"
    assert lines[2] == "| a@1234 | 71.23 | 60.00 | 0.500 |"
    assert lines[3] == "| b@5678 | 50.00 | – | – |"
    plot_robustness_bars(summaries, tmp_path / "bars.png")
    plot_corruption_severity({"a@1234": {"fog/1": {"top1": 50.0}, "fog/3": {"top1": 20.0}}}, tmp_path / "c.png")
    for name in ("bars.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
