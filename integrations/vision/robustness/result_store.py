"""A resumable JSON store of results keyed by (model name, checkpoint digest, benchmark, entry).

The whole store is one JSON file per run directory, rewritten atomically (temp file in the same
folder, ``fsync``, ``os.replace``) after every finished entry, so an interrupted run never leaves a
corrupt file and a restarted run skips the entries already there. Layout::

    {"format": "sparsecode.robustness/1",
     "models": {<model name>: {<digest>: {<benchmark>: {
         "config": {...}, "entries": {<entry>: {...metrics...}}, "summary": {...}}}}}}

A benchmark's ``config`` (image size, max images, ...) is stored with it; resuming with another
config discards that benchmark's old entries (with a warning) rather than mixing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["STORE_FORMAT", "atomic_write_text", "checkpoint_digest", "ResultStore", "EntryRecorder"]

STORE_FORMAT = "sparsecode.robustness/1"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a partial one.

    Args:
        path: Destination file (its folder is created).
        text: Content (UTF-8).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise


def _load_state_dict(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(loaded.get(key), Mapping):
                return loaded[key]
    if not isinstance(loaded, Mapping):
        raise TypeError(f"checkpoint {path} holds a {type(loaded).__name__}, expected a state dict")
    return loaded


def checkpoint_digest(source: str | Path | Mapping[str, Any] | nn.Module) -> str:
    """SHA-256 over the weights: for each tensor in key order, its name, dtype, shape and raw bytes.

    The digest depends on the weights only, not on the file format: the same state dict saved as
    ``.pt`` or ``.safetensors`` gives the same digest. Non-tensor entries are ignored.

    Args:
        source: A checkpoint file (``.safetensors``, or a ``torch.save`` file holding a state dict,
            possibly under ``"state_dict"``/``"model"``), a state dict, or a module.

    Returns:
        The 64-character hex digest.
    """
    if isinstance(source, nn.Module):
        state = source.state_dict()
    elif isinstance(source, (str, Path)):
        state = _load_state_dict(Path(source))
    elif isinstance(source, Mapping):
        state = source
    else:
        raise TypeError(f"source must be a path, a state dict or an nn.Module, got {type(source).__name__}")
    digest = hashlib.sha256()
    tensors = 0
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{key}|{str(tensor.dtype)}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        tensors += 1
    if tensors == 0:
        raise ValueError("source holds no tensors to digest")
    return digest.hexdigest()


class ResultStore:
    """The JSON result file of one run directory (see module doc); every write is atomic.

    Args:
        path: The JSON file (created on the first write; an existing one is loaded).
        writable: Whether this process writes (False on non-zero distributed ranks).
    """

    def __init__(self, path: str | Path, *, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable
        self.data: dict[str, Any] = {"format": STORE_FORMAT, "models": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"result file {self.path} is not valid JSON ({error}); move it away to start over") from error
            if not isinstance(loaded, dict) or loaded.get("format") != STORE_FORMAT:
                raise ValueError(f"result file {self.path} is not a {STORE_FORMAT} store")
            self.data = loaded

    def _benchmark(self, model_name: str, digest: str, benchmark: str) -> dict[str, Any]:
        models = self.data["models"]
        record = models.setdefault(model_name, {}).setdefault(digest, {}).setdefault(benchmark, {})
        record.setdefault("config", {})
        record.setdefault("entries", {})
        return record

    def save(self) -> None:
        """Write the store atomically (no-op when not writable)."""
        if self.writable:
            atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def begin(self, model_name: str, digest: str, benchmark: str, config: Mapping[str, Any]) -> None:
        """Start (or resume) a benchmark; a different stored config discards its old entries.

        Args:
            model_name: Model name.
            digest: Checkpoint digest.
            benchmark: Benchmark name.
            config: JSON-serialisable settings the results depend on.
        """
        record = self._benchmark(model_name, digest, benchmark)
        config = json.loads(json.dumps(dict(config)))
        if record["entries"] and record["config"] != config:
            warnings.warn(
                f"{benchmark} results of {model_name} in {self.path} were made with config {record['config']}, "
                f"now {config}; recomputing",
                RuntimeWarning,
                stacklevel=2,
            )
            record["entries"] = {}
            record.pop("summary", None)
        record["config"] = config

    def entry(self, model_name: str, digest: str, benchmark: str, entry: str) -> dict[str, Any] | None:
        """The stored metrics of one entry, or None when not finished.

        Args:
            model_name: Model name.
            digest: Checkpoint digest.
            benchmark: Benchmark name.
            entry: Entry name (e.g. ``"all"`` or ``"fog/3"``).

        Returns:
            The metrics dict or None.
        """
        record = self.data["models"].get(model_name, {}).get(digest, {}).get(benchmark, {})
        return record.get("entries", {}).get(entry)

    def put_entry(self, model_name: str, digest: str, benchmark: str, entry: str, metrics: Mapping[str, Any]) -> None:
        """Record a finished entry and save.

        Args:
            model_name: Model name.
            digest: Checkpoint digest.
            benchmark: Benchmark name.
            entry: Entry name.
            metrics: JSON-serialisable metrics.
        """
        self._benchmark(model_name, digest, benchmark)["entries"][entry] = json.loads(json.dumps(dict(metrics)))
        self.save()

    def put_summary(self, model_name: str, digest: str, benchmark: str, summary: Mapping[str, Any]) -> None:
        """Record a benchmark's summary and save.

        Args:
            model_name: Model name.
            digest: Checkpoint digest.
            benchmark: Benchmark name.
            summary: JSON-serialisable summary metrics.
        """
        self._benchmark(model_name, digest, benchmark)["summary"] = json.loads(json.dumps(dict(summary)))
        self.save()

    def summaries(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"<model>@<digest[:8]>": {benchmark: summary}}`` for every finished benchmark.

        Returns:
            The nested dict.
        """
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for model_name, by_digest in self.data["models"].items():
            for digest, by_benchmark in by_digest.items():
                row = {b: r["summary"] for b, r in by_benchmark.items() if "summary" in r}
                if row:
                    table[f"{model_name}@{digest[:8]}"] = row
        return table

    def entries(self, benchmark: str) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"<model>@<digest[:8]>": {entry: metrics}}`` of one benchmark.

        Args:
            benchmark: Benchmark name.

        Returns:
            The nested dict.
        """
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for model_name, by_digest in self.data["models"].items():
            for digest, by_benchmark in by_digest.items():
                if by_benchmark.get(benchmark, {}).get("entries"):
                    table[f"{model_name}@{digest[:8]}"] = by_benchmark[benchmark]["entries"]
        return table


class EntryRecorder:
    """Runs entries of one (model, digest, benchmark) through the store: stored ones are not recomputed.

    Args:
        store: The result store.
        model_name: Model name.
        digest: Checkpoint digest.
        benchmark: Benchmark name.
    """

    def __init__(self, store: ResultStore, model_name: str, digest: str, benchmark: str) -> None:
        self.store, self.model_name, self.digest, self.benchmark = store, model_name, digest, benchmark
        self.computed: list[str] = []
        """Entries computed (not loaded) by this recorder, in order."""

    def run(self, entry: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """The stored metrics of ``entry``, or ``compute()`` stored atomically before returning.

        Args:
            entry: Entry name.
            compute: Produces the entry's JSON-serialisable metrics.

        Returns:
            The metrics.
        """
        stored = self.store.entry(self.model_name, self.digest, self.benchmark, entry)
        if stored is not None:
            return stored
        metrics = dict(compute())
        self.store.put_entry(self.model_name, self.digest, self.benchmark, entry, metrics)
        self.computed.append(entry)
        return json.loads(json.dumps(metrics))
