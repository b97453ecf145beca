r"""Token-mixer and whole-model speed and memory benchmark, as ratios to timm's softmax attention.

**Mixers** (dim 192, 6 heads, tokens ``(B, N, 192)`` on square grids of side 14, 28, 56, i.e. N = 196, 784, 3136,
batch 8 by default, no biases on the query/key/value projections): timm's
``timm.models.vision_transformer.Attention`` (the reference, ratio 1), our ``SelfAttention``, ``PerformerAttention``,
VARS-S, VARS-D and VARS-SD, each VARS mixer in its ``original`` (released code) and ``paper`` configuration. One timed
call is a forward pass, ``out.square().mean().backward()``, and the parameter gradients dropped.

* **Time**: every mixer of one N is built in the same process; after ``--warmup`` untimed calls each, the repetitions
  are interleaved (repetition r times every mixer once, in an order rotated by r), so that a slow phase of a shared
  machine hits all mixers alike; the reported time is the median over ``--reps`` repetitions and the ratio is the
  mixer's median divided by timm's median.
* **Memory**: on CUDA, ``torch.cuda.max_memory_allocated`` during one call minus the memory allocated before it (the
  allocator's true peak). On the CPU there is no allocator peak to read, so the benchmark reports the bytes of the
  distinct tensor storages autograd saves for the backward pass during the forward
  (:func:`torch.autograd.graph.saved_tensors_hooks`, each storage counted once by its data pointer): the activations
  a training step keeps alive, which is what grows with N and dominates a step's peak; transient buffers of single
  operations and the gradients are not counted. (A resident-set delta would mix in the allocator's caching and the
  other processes of a shared machine.)

**Models**: DeiT-tiny and RVT-tiny (``integrations.vision``) with each attention type (``self``, ``perf``,
``vars_s``, ``vars_d``, ``vars_sd``; the ``original`` configuration) at 224×224, batch 8: images per second of a
forward + backward pass (median of interleaved repetitions) and the ratio to the same family with softmax attention.

Run ``python benchmarks/layers.py`` (full, under 10 minutes on one idle core), ``--quick`` (a smoke run of seconds),
``--device cuda`` on a GPU, ``--compile`` to add ``torch.compile``d VARS-D/VARS-SD rows, ``--keep-heap`` to run every
mixer with glibc's allocator keeping its heap between steps (:func:`keep_heap`). Writes ``NAME.json``,
``NAME.md`` and ``NAME.png`` (``--name``, default ``layers``) into ``--out``
(default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import os
import sys


def _pin_threads_from_argv(argv: list[str]) -> int:
    # thread pools read these at import: set them before torch is imported
    n = 1
    if "--threads" in argv:
        n = int(argv[argv.index("--threads") + 1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


_THREADS = _pin_threads_from_argv(sys.argv) if __name__ == "__main__" else 1

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import saved_tensor_bytes  # noqa: E402  (one definition of the CPU memory measure)

__all__ = [
    "MixerSpec",
    "MIXERS",
    "COMPILED_MIXERS",
    "MODEL_FAMILIES",
    "MODEL_ATTENTIONS",
    "REFERENCE",
    "build_reference_attention",
    "saved_tensor_bytes",
    "peak_memory_bytes",
    "time_interleaved",
    "bench_mixers",
    "bench_models",
    "keep_heap",
    "markdown_report",
    "plot_report",
    "main",
]

REFERENCE = "timm_attention"
MODEL_FAMILIES = ("deit", "rvt")
MODEL_ATTENTIONS = ("self", "perf", "vars_s", "vars_d", "vars_sd")


@dataclass(frozen=True)
class MixerSpec:
    """One benchmarked mixer: a display name, the ``integrations.vision`` kind (or timm's reference) and variant.

    Args:
        name: the row name in the tables.
        kind: ``"timm"`` for timm's ``Attention``, else a mixer kind of ``integrations.vision.mixers``.
        variant: ``"original"`` or ``"paper"`` (only the VARS kinds differ).
        compiled: wrap the mixer in ``torch.compile`` (the compilation happens in the untimed warm-up).
        compile_mode: ``torch.compile``'s ``mode`` (``"reduce-overhead"``: CUDA graphs on a GPU).
    """

    name: str
    kind: str
    variant: str = "original"
    compiled: bool = False
    compile_mode: str = "default"


MIXERS: tuple[MixerSpec, ...] = (
    MixerSpec(REFERENCE, "timm"),
    MixerSpec("self", "self"),
    MixerSpec("perf", "perf"),
    MixerSpec("vars_s/original", "vars_s", "original"),
    MixerSpec("vars_s/paper", "vars_s", "paper"),
    MixerSpec("vars_d/original", "vars_d", "original"),
    MixerSpec("vars_d/paper", "vars_d", "paper"),
    MixerSpec("vars_sd/original", "vars_sd", "original"),
    MixerSpec("vars_sd/paper", "vars_sd", "paper"),
)


#: the ``--compile`` additions: the released configurations of VARS-D and VARS-SD under ``torch.compile``
COMPILED_MIXERS: tuple[MixerSpec, ...] = (
    MixerSpec("vars_d/original+compile", "vars_d", "original", compiled=True),
    MixerSpec("vars_sd/original+compile", "vars_sd", "original", compiled=True),
)


def build_reference_attention(dim: int, num_heads: int) -> nn.Module:
    """timm's softmax attention ``Attention(dim, num_heads, qkv_bias=False)`` (fused SDPA kernel where timm uses it).

    Args:
        dim: token width.
        num_heads: number of heads.
    """
    from timm.models.vision_transformer import Attention

    return Attention(dim, num_heads=num_heads, qkv_bias=False)


def _build_mixer(spec: MixerSpec, dim: int, num_heads: int, grid: int, seed: int) -> nn.Module:
    if spec.kind == "timm":
        torch.manual_seed(seed)
        return build_reference_attention(dim, num_heads)
    from integrations.vision.mixers import build_mixer

    torch.manual_seed(seed)
    module = build_mixer(spec.kind, dim, num_heads, grid, spec.variant, qkv_bias=False, seed=seed)
    return torch.compile(module, mode=spec.compile_mode) if spec.compiled else module


def _train_step(module: nn.Module, x: torch.Tensor) -> None:
    """Forward, backward of the mean square output, gradients dropped."""
    module(x).square().mean().backward()
    for p in module.parameters():
        p.grad = None
    x.grad = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(module: nn.Module, x: torch.Tensor) -> tuple[int, str]:
    """Peak memory of one training step of ``module`` on ``x`` and the name of the measure.

    CUDA: ``max_memory_allocated`` during the step minus what was allocated before it (``"cuda_peak"``). CPU: the
    bytes autograd saves for the backward pass (``"saved_for_backward"``), see the module docstring.

    Args:
        module: the mixer or model.
        x: its input (requires grad).
    """
    if x.device.type == "cuda":
        _sync(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        _train_step(module, x)
        _sync(x.device)
        return int(torch.cuda.max_memory_allocated(x.device) - before), "cuda_peak"
    saved, out = saved_tensor_bytes(lambda: module(x))
    out.square().mean().backward()
    for p in module.parameters():
        p.grad = None
    x.grad = None
    return int(saved), "saved_for_backward"


def time_interleaved(calls: dict[str, Callable[[], None]], reps: int, warmup: int, device: torch.device,
                     desc: str = "") -> dict[str, list[float]]:
    """Seconds per call of every entry of ``calls``, repetitions interleaved (order rotated each repetition).

    Args:
        calls: name → a zero-argument callable (one timed unit).
        reps: timed repetitions per entry.
        warmup: untimed calls per entry first.
        device: synchronised around each timed call when CUDA.
        desc: progress-bar label.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(reps), desc=desc, leave=False):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            calls[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def bench_mixers(grids: Sequence[int], batch: int, dim: int, num_heads: int, reps: int, warmup: int,
                 device: torch.device, mixers: Sequence[MixerSpec] = MIXERS, seed: int = 0,
                 reps_large: int | None = None, large_tokens: int = 1024) -> list[dict]:
    """Time and memory of every mixer at every grid side, as ratios to timm's attention (see the module docstring).

    Args:
        grids: grid sides (N = side²).
        batch: batch size.
        dim, num_heads: mixer width and heads.
        reps, warmup: timed repetitions and warm-up calls.
        device: where to run.
        mixers: the mixers (must include :data:`REFERENCE`).
        seed: seed of the parameters and inputs.
        reps_large: repetitions (and at most that many warm-up calls) when N > ``large_tokens`` (``None``: ``reps``);
            quadratic attention makes those calls seconds long.
        large_tokens: the N above which ``reps_large`` applies.
    """
    if not any(m.name == REFERENCE for m in mixers):
        raise ValueError(f"mixers must include the reference {REFERENCE!r}, got {[m.name for m in mixers]}")
    rows = []
    for grid in grids:
        tokens = grid * grid
        modules = {m.name: _build_mixer(m, dim, num_heads, grid, seed).to(device).train() for m in mixers}
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, tokens, dim, generator=gen).to(device).requires_grad_(True)
        calls = {name: (lambda mod=mod: _train_step(mod, x)) for name, mod in modules.items()}
        n_reps, n_warmup = reps, warmup
        if reps_large is not None and tokens > large_tokens:
            n_reps, n_warmup = reps_large, min(warmup, reps_large)
        times = time_interleaved(calls, n_reps, n_warmup, device, desc=f"mixers N={tokens}")
        memory = {name: peak_memory_bytes(mod, x) for name, mod in modules.items()}
        ref_time = statistics.median(times[REFERENCE])
        ref_mem = memory[REFERENCE][0]
        for m in mixers:
            median = statistics.median(times[m.name])
            rows.append({
                "tokens": tokens, "grid": grid, "mixer": m.name, "kind": m.kind, "variant": m.variant,
                "median_ms": 1e3 * median, "times_ms": [1e3 * t for t in times[m.name]], "reps": n_reps,
                "time_ratio": median / ref_time,
                "memory_bytes": memory[m.name][0], "memory_measure": memory[m.name][1],
                "memory_ratio": memory[m.name][0] / ref_mem if ref_mem else None,
            })
        del modules, calls
    return rows


def bench_models(families: Sequence[str], attentions: Sequence[str], img_size: int, batch: int, reps: int,
                 warmup: int, device: torch.device, variant: str = "original", seed: int = 0) -> list[dict]:
    """Images per second of a forward + backward pass of every family × attention, ratios to softmax attention.

    Args:
        families: model families (``"deit"``, ``"rvt"``), tiny size.
        attentions: mixer kinds (must include ``"self"``).
        img_size: image side.
        batch: images per step.
        reps, warmup: timed repetitions and warm-up steps.
        device: where to run.
        variant: the VARS configuration.
        seed: seed of the parameters and images.
    """
    from integrations.vision.models import create_model, model_name

    if "self" not in attentions:
        raise ValueError(f"attentions must include 'self' (the reference), got {list(attentions)}")
    rows = []
    for family in families:
        models = {}
        for attention in attentions:
            torch.manual_seed(seed)
            models[attention] = create_model(model_name(family, attention), img_size=img_size, num_classes=1000,
                                             variant=variant).to(device).train()
        gen = torch.Generator().manual_seed(seed)
        images = torch.randn(batch, 3, img_size, img_size, generator=gen).to(device).requires_grad_(True)
        calls = {a: (lambda mod=mod: _train_step(mod, images)) for a, mod in models.items()}
        times = time_interleaved(calls, reps, warmup, device, desc=f"models {family}")
        ref = statistics.median(times["self"])
        for attention in attentions:
            median = statistics.median(times[attention])
            rows.append({"family": family, "attention": attention, "model": model_name(family, attention),
                         "variant": variant, "median_s": median, "times_s": times[attention],
                         "images_per_s": batch / median, "speed_ratio": ref / median})
        del models, calls
    return rows


#: glibc ``mallopt`` parameters (``malloc.h``) and the values ``--keep-heap`` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_HEAP_TRIM_BYTES, KEEP_HEAP_MMAP_BYTES = 1 << 30, 32 << 20


def keep_heap() -> str:
    """Make glibc's allocator keep freed memory in the heap between training steps (``--keep-heap``).

    By default glibc serves blocks above a (dynamic) threshold with fresh ``mmap`` pages and trims the top of the heap
    when more than 128 KiB is free, so a step whose saved tensors grow and free tens of MiB faults in thousands of
    fresh pages every time. Raising ``M_TRIM_THRESHOLD`` to 1 GiB and fixing ``M_MMAP_THRESHOLD`` at its 32 MiB
    maximum is what ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` do from the environment (PyTorch's
    performance tuning guide suggests jemalloc or TCMalloc for the same reason). It applies to every mixer of the
    process alike, from the call on.

    Returns:
        a description of the setting, for the report.

    Raises:
        RuntimeError: not glibc (no ``mallopt``), or ``mallopt`` refused a value.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        raise RuntimeError("--keep-heap needs glibc's mallopt (Linux with glibc); this C library has none")
    for param, value in ((_M_TRIM_THRESHOLD, KEEP_HEAP_TRIM_BYTES), (_M_MMAP_THRESHOLD, KEEP_HEAP_MMAP_BYTES)):
        if libc.mallopt(param, value) != 1:
            raise RuntimeError(f"mallopt({param}, {value}) failed")
    return (f"glibc, heap kept (M_TRIM_THRESHOLD {KEEP_HEAP_TRIM_BYTES >> 20} MiB, "
            f"M_MMAP_THRESHOLD {KEEP_HEAP_MMAP_BYTES >> 20} MiB)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt_bytes(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def markdown_report(results: dict) -> str:
    """The Markdown tables of a results dictionary (as written to ``layers.json``).

    Args:
        results: ``{"meta": ..., "mixers": [...], "models": [...]}``.
    """
    meta = results["meta"]
    lines = [f"Device: {meta['device_name']}; threads: {meta['threads']}; torch {meta['torch']}; "
             f"mixer batch {meta['batch']}, dim {meta['dim']}, heads {meta['num_heads']}; "
             f"median of {meta['reps']} interleaved repetitions ({meta['reps_large']} for N > 1024) after "
             f"{meta['warmup']} warm-up calls; "
             f"memory measure: {meta['memory_measure']}; allocator: {meta.get('allocator', 'default')}.", ""]
    tokens = sorted({r["tokens"] for r in results["mixers"]})
    names = list(dict.fromkeys(r["mixer"] for r in results["mixers"]))
    by = {(r["mixer"], r["tokens"]): r for r in results["mixers"]}
    lines.append("Forward + backward time of the mixers, ratio to timm `Attention` (median ms in brackets):")
    lines.append("")
    lines.append("| mixer | " + " | ".join(f"N = {n}" for n in tokens) + " |")
    lines.append("|---|" + "---|" * len(tokens))
    for name in names:
        cells = [f"{by[name, n]['time_ratio']:.2f}× ({by[name, n]['median_ms']:.1f} ms)" for n in tokens]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Memory of a training step, ratio to timm `Attention` (bytes in brackets):", ""]
    lines.append("| mixer | " + " | ".join(f"N = {n}" for n in tokens) + " |")
    lines.append("|---|" + "---|" * len(tokens))
    for name in names:
        cells = []
        for n in tokens:
            row = by[name, n]
            ratio = "n/a" if row["memory_ratio"] is None else f"{row['memory_ratio']:.2f}×"
            cells.append(f"{ratio} ({_fmt_bytes(row['memory_bytes'])})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if results.get("models"):
        lines += ["", f"Whole tiny models, forward + backward at {meta['img_size']}², batch {meta['model_batch']} "
                      f"(VARS configuration {meta['model_variant']!r}):", ""]
        lines.append("| model | images/s | ratio to softmax attention |")
        lines.append("|---|---|---|")
        for r in results["models"]:
            lines.append(f"| {r['model']} | {r['images_per_s']:.2f} | {r['speed_ratio']:.2f}× |")
    return "\n".join(lines) + "\n"


def plot_report(results: dict, path: Path) -> None:
    """Bar chart of the mixers' time ratios per N (log scale), written to ``path`` (PNG).

    Args:
        results: the results dictionary.
        path: the PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = sorted({r["tokens"] for r in results["mixers"]})
    names = list(dict.fromkeys(r["mixer"] for r in results["mixers"]))
    by = {(r["mixer"], r["tokens"]): r for r in results["mixers"]}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(tokens))]
        ax.bar(xs, [by[name, n]["time_ratio"] for n in tokens], width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tokens)), [f"N = {n}" for n in tokens])
    ax.set_yscale("log")
    ax.set_ylabel("forward+backward time / timm Attention")
    ax.set_title(f"Token mixers, dim {results['meta']['dim']}, {results['meta']['num_heads']} heads, "
                 f"batch {results['meta']['batch']} ({results['meta']['device_name']})")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (CPU)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grids", type=int, nargs="+", default=[14, 28, 56], help="grid sides (N = side²)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--reps-large", type=int, default=3, help="repetitions when N > 1024")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--model-reps", type=int, default=3)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--no-models", action="store_true", help="skip the whole-model benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="add torch.compile'd VARS-D / VARS-SD (original) rows (minutes of compilation per N)")
    parser.add_argument("--compile-mode", default="default",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile mode of the --compile rows (reduce-overhead: CUDA graphs on a GPU)")
    parser.add_argument("--keep-heap", action="store_true",
                        help="glibc: keep freed memory in the heap between steps (see keep_heap), for every mixer")
    parser.add_argument("--name", default="layers", help="output file stem (NAME.json, NAME.md, NAME.png)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``layers.json``, ``layers.md`` and ``layers.png`` into ``--out``.

    Args:
        argv: command-line arguments (``None``: ``sys.argv``).
    """
    args = _parse(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but CUDA is not available")
    warnings.filterwarnings("ignore", category=FutureWarning)
    allocator = keep_heap() if args.keep_heap else "default"
    if args.quick:
        args.grids, args.batch, args.reps, args.warmup = [4, 8], 2, 2, 1
        args.model_batch, args.model_reps, args.img_size = 2, 1, 64
    compiled = tuple(spec if args.compile_mode == "default" else
                     replace(spec, name=f"{spec.name}({args.compile_mode})", compile_mode=args.compile_mode)
                     for spec in COMPILED_MIXERS)
    mixers = MIXERS + (compiled if args.compile else ())
    mixer_rows = bench_mixers(args.grids, args.batch, 192, 6, args.reps, args.warmup, device, mixers=mixers,
                              seed=args.seed, reps_large=args.reps_large)
    model_rows = [] if args.no_models else bench_models(
        MODEL_FAMILIES, MODEL_ATTENTIONS, args.img_size, args.model_batch, args.model_reps, 1, device,
        seed=args.seed)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {_cpu_model()}"
    meta = {"device": str(device), "device_name": device_name, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "batch": args.batch, "dim": 192, "num_heads": 6, "tokens": [g * g for g in args.grids],
            "reps": args.reps, "reps_large": args.reps_large, "warmup": args.warmup, "reference": REFERENCE,
            "memory_measure": "cuda_peak" if device.type == "cuda" else "saved_for_backward",
            "img_size": args.img_size, "model_batch": args.model_batch, "model_reps": args.model_reps,
            "model_variant": "original", "quick": bool(args.quick), "compiled_rows": bool(args.compile),
            "compile_mode": args.compile_mode,
            "allocator": allocator,
            "command": " ".join(["python", "benchmarks/layers.py", *(argv if argv is not None else sys.argv[1:])])}
    results = {"meta": meta, "mixers": mixer_rows, "models": model_rows}
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / f"{args.name}.json", json.dumps(results, indent=1))
    report = markdown_report(results)
    _write_atomic(args.out / f"{args.name}.md", report)
    plot_report(results, args.out / f"{args.name}.png")
    print(report)
    return results


if __name__ == "__main__":
    main()
