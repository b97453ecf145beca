"""Atomic, resumable checkpoints: safetensors weights + a torch file of training state + a JSON run record.

Layout under ``out_dir``::

    checkpoints/epoch-0003/model.safetensors     model weights (safetensors)
    checkpoints/epoch-0003/training_state.pt     optimizer, scheduler, EMA, scaler, RNG states, sampler epoch
    checkpoints/epoch-0003/run.json              model name, config, data manifest, progress
    checkpoints/latest.json                      pointer to the newest complete checkpoint

A checkpoint folder is written under a temporary name and renamed into place, then ``latest.json`` is replaced
(temp file + ``os.replace``): an interrupted write never leaves a half checkpoint behind the pointer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

__all__ = [
    "CHECKPOINT_DIRNAME",
    "CheckpointFiles",
    "atomic_write_text",
    "capture_rng_state",
    "find_checkpoint",
    "load_training_state",
    "read_run_record",
    "restore_rng_state",
    "load_model_weights",
    "write_checkpoint",
]

CHECKPOINT_DIRNAME = "checkpoints"
_POINTER = "latest.json"
_MODEL_FILE = "model.safetensors"
_STATE_FILE = "training_state.pt"
_RUN_FILE = "run.json"


@dataclass(frozen=True)
class CheckpointFiles:
    """The three files of one checkpoint.

    Args:
        folder: The checkpoint folder.
    """

    folder: Path

    @property
    def model(self) -> Path:
        """Safetensors model weights."""
        return self.folder / _MODEL_FILE

    @property
    def state(self) -> Path:
        """Torch file with optimizer / scheduler / EMA / scaler / RNG states."""
        return self.folder / _STATE_FILE

    @property
    def run(self) -> Path:
        """JSON run record (model name, config, data manifest, progress)."""
        return self.folder / _RUN_FILE


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        path: Destination file.
        text: Content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator the training touches: torch CPU and CUDA, numpy's global, ``random``.

    Values are tensors / ints / floats / lists only, so the result loads with ``torch.load(weights_only=True)``.
    """
    np_name, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_name,
            "key": torch.from_numpy(np.asarray(np_key, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back to a state captured by :func:`capture_rng_state`.

    Args:
        state: Output of :func:`capture_rng_state`.
    """
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((
        numpy_state["name"],
        numpy_state["key"].numpy().astype(np.uint32),
        numpy_state["pos"],
        numpy_state["has_gauss"],
        numpy_state["gauss"],
    ))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    out_dir: Path | str,
    epoch: int,
    model: torch.nn.Module,
    training_state: dict[str, Any],
    run_record: dict[str, Any],
    keep: int = 1,
) -> CheckpointFiles:
    """Write the checkpoint after ``epoch`` completed epochs and point ``latest.json`` at it.

    Args:
        out_dir: Run folder (the checkpoint goes to ``out_dir/checkpoints/epoch-XXXX``).
        epoch: Number of completed epochs.
        model: The (unwrapped) model whose weights are saved with safetensors.
        training_state: Tensors / plain values for ``training_state.pt``.
        run_record: JSON-serialisable run description.
        keep: Number of newest checkpoint folders to keep.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(out_dir) / CHECKPOINT_DIRNAME
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        files = CheckpointFiles(temp)
        save_model(model, str(files.model))
        torch.save(training_state, files.state)
        files.run.write_text(json.dumps(run_record, indent=2, sort_keys=True), encoding="utf-8")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    atomic_write_text(root / _POINTER, json.dumps({"checkpoint": name, "epoch": epoch}, sort_keys=True))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch-"))
    for old in folders[:-keep]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return CheckpointFiles(final)


def find_checkpoint(path: Path | str) -> CheckpointFiles | None:
    """Locate a checkpoint from a run folder, its ``checkpoints/`` folder, or a checkpoint folder itself.

    Returns ``None`` when ``path`` holds no checkpoint.

    Args:
        path: Where to look.
    """
    base = Path(path)
    if (base / _RUN_FILE).is_file():
        return CheckpointFiles(base)
    for root in (base / CHECKPOINT_DIRNAME, base):
        pointer = root / _POINTER
        if pointer.is_file():
            name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
            folder = root / name
            if (folder / _RUN_FILE).is_file():
                return CheckpointFiles(folder)
    return None


def read_run_record(files: CheckpointFiles) -> dict[str, Any]:
    """The JSON run record of a checkpoint.

    Args:
        files: The checkpoint.
    """
    return json.loads(files.run.read_text(encoding="utf-8"))


def load_training_state(files: CheckpointFiles) -> dict[str, Any]:
    """Load ``training_state.pt`` on the CPU with ``torch.load(..., weights_only=True)``.

    Args:
        files: The checkpoint.
    """
    return torch.load(files.state, map_location="cpu", weights_only=True)


def load_model_weights(model: torch.nn.Module, files: CheckpointFiles) -> None:
    """Load the checkpoint's safetensors weights into ``model`` (strict: every key must match).

    Args:
        model: The unwrapped model, built like the checkpointed one.
        files: The checkpoint.
    """
    missing, unexpected = load_model(model, str(files.model), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {str(files.model)!r} does not fit the model: missing keys {sorted(missing)[:8]}, "
            f"unexpected keys {sorted(unexpected)[:8]}"
        )
