r"""Peak training memory of ``unroll`` vs ``implicit`` differentiation at 5, 20 and 50 solver iterations.

One training step is ``loss = ‖layer(x)‖²; loss.backward()`` for a :class:`sparsecode.SparseReconstruction` layer
(FISTA, soft threshold, learnable dictionary). The measure:

* **GPU** (CUDA available and ``--device cuda``): ``torch.cuda.max_memory_allocated`` over the forward and backward
  pass, minus the memory allocated before it (parameters, inputs) — the true peak of the caching allocator.
* **CPU**: the bytes of the distinct tensors autograd saves for the backward pass during the forward, collected with
  :func:`torch.autograd.graph.saved_tensors_hooks` (a pack hook that records each saved tensor's storage once, keyed by
  its data pointer). Saved activations are what grows with the iteration count under unrolling and what dominates the
  peak of a training step; the transient buffers of a single operation (the same for every mode and iteration count)
  are not counted, and the implicit mode's backward fixed-point solve reuses one iteration's graph.

Usage::

    python benchmarks/memory.py                       # CPU, saved-tensor bytes
    python benchmarks/memory.py --device cuda --out results/memory.json

prints a table with, per iteration count, both modes' memory, the ratio unroll/implicit, and each mode's memory
relative to its 5-iteration value.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Sequence

import torch
from tqdm import tqdm

from sparsecode import FISTA, LinearDictionary, SoftThreshold, SparseReconstruction

__all__ = ["saved_tensor_bytes", "measure", "main"]

ITERATIONS = (5, 20, 50)
MODES = ("unroll", "implicit")


def saved_tensor_bytes(fn) -> tuple[int, object]:
    r"""Run ``fn()`` and return (bytes of the distinct storages autograd saved for backward, ``fn``'s result)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def _layer(mode: str, n_iter: int, n_features: int, n_atoms: int, device: torch.device) -> SparseReconstruction:
    g = torch.Generator().manual_seed(0)
    dictionary = LinearDictionary(n_features, n_atoms, generator=g, lipschitz="exact")
    return SparseReconstruction(dictionary, solver=FISTA(max_iter=n_iter), threshold=SoftThreshold(0.1),
                                differentiation=mode, backward_max_iter=200, backward_tol=1e-6).to(device)


def measure(mode: str, n_iter: int, *, batch: int = 256, n_features: int = 64, n_atoms: int = 256,
            device: str = "cpu") -> int:
    r"""Memory (bytes) of one training step of the layer in ``mode`` with ``n_iter`` FISTA iterations (see the
    module docstring for the measure on each device).

    Args:
        mode: ``"unroll"`` or ``"implicit"``.
        n_iter: solver iterations.
        batch, n_features, n_atoms: problem size.
        device: ``"cpu"`` or ``"cuda"``.
    """
    dev = torch.device(device)
    layer = _layer(mode, n_iter, n_features, n_atoms, dev)
    x = torch.randn(batch, n_features, generator=torch.Generator().manual_seed(1)).to(dev)
    if dev.type == "cuda":
        # an untimed step first: the first matrix product allocates cuBLAS's workspace through the caching allocator
        # (it made the first measured step look 67 MiB heavier on an H200)
        layer(x).square().sum().backward()
        layer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        layer(x).square().sum().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    nbytes, out = saved_tensor_bytes(lambda: layer(x))
    out.square().sum().backward()
    return nbytes


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> dict:
    """Measure every (mode, iterations) pair, print the table, optionally write JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--n-atoms", type=int, default=256)
    parser.add_argument("--out", default=None, help="write the results as JSON here, and the table beside it as .md (atomically)")
    args = parser.parse_args(argv)
    results: dict[str, dict[int, int]] = {m: {} for m in MODES}
    for mode in MODES:
        for n in tqdm(ITERATIONS, desc=mode):
            results[mode][n] = measure(mode, n, batch=args.batch, n_features=args.n_features,
                                       n_atoms=args.n_atoms, device=args.device)
    what = "peak allocated (CUDA)" if args.device == "cuda" else "saved-for-backward bytes (CPU)"
    first = ITERATIONS[0]
    lines = [f"### Memory of one training step: unroll vs implicit differentiation", "",
             f"Command: `python benchmarks/memory.py --device {args.device}`  ",
             f"Measure: {what}; FISTA, batch={args.batch}, n={args.n_features}, m={args.n_atoms}.", "",
             "| iterations | unroll MiB | implicit MiB | unroll / implicit | unroll / unroll@5 | implicit / implicit@5 |",
             "|---|---|---|---|---|---|"]
    for n in ITERATIONS:
        u, i = results["unroll"][n], results["implicit"][n]
        lines.append(f"| {n} | {u / 2**20:.2f} | {i / 2**20:.2f} | {u / i:.2f} | "
                     f"{u / results['unroll'][first]:.2f} | {i / results['implicit'][first]:.2f} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    payload = {"device": args.device, "measure": what, "batch": args.batch, "n_features": args.n_features,
               "n_atoms": args.n_atoms, "bytes": {m: {str(k): v for k, v in r.items()} for m, r in results.items()}}
    if args.out:
        _write_atomic(args.out, json.dumps(payload, indent=2))
        _write_atomic(os.path.splitext(args.out)[0] + ".md", table)
    return payload


if __name__ == "__main__":
    main()
