"""Copy the benchmark results (``benchmarks/results/*.md`` and ``*.png``) into the Benchmarks page of the site.

The benchmark scripts write their tables and plots to ``benchmarks/results/``; this script pastes each table into
``docs/benchmarks.md`` between the markers ``<!-- results:start -->`` and ``<!-- results:end -->`` (headings demoted
to fit under the page's "Results" section), copies each plot to ``docs/assets/benchmarks/`` and shows it under its
table with the command that regenerates it. Results that do not exist are listed as pending. Files are written
atomically.

Usage::

    python benchmarks/solvers.py && python docs/scripts/sync_benchmarks.py
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["BENCHMARKS", "results_section", "sync"]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
ASSETS = ROOT / "docs" / "assets" / "benchmarks"
START, END = "<!-- results:start -->", "<!-- results:end -->"

#: result name → the command that regenerates it
BENCHMARKS: dict[str, str] = {
    "solvers": "python benchmarks/solvers.py",
    "layers": "python benchmarks/layers.py",
    "memory": "python benchmarks/memory.py --out benchmarks/results/memory.json",
    "polish": "python benchmarks/polish.py",
    "layers_cuda": "python benchmarks/layers.py --device cuda --name layers_cuda",
    "layers_cuda_b64": "python benchmarks/layers.py --device cuda --batch 64 --no-models --name layers_cuda_b64",
    "layers_cuda_compile": "python benchmarks/layers.py --device cuda --compile --grids 14 --no-models "
                           "--compile-mode reduce-overhead --name layers_cuda_compile",
    "batched_solve": "python benchmarks/batched_solve.py --device cuda",
    "memory_cuda": "python benchmarks/memory.py --device cuda --out benchmarks/results/memory_cuda.json",
}


def _demote(markdown: str, levels: int = 2) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m[1]) + levels) + " ", markdown, flags=re.M)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def results_section(results: Path = RESULTS, assets: Path = ASSETS) -> str:
    """The Markdown of the "Results" section; copies the plots into ``assets`` as a side effect."""
    parts: list[str] = []
    pending: list[str] = []
    for name, command in BENCHMARKS.items():
        table = results / f"{name}.md"
        if not table.is_file():
            pending.append(f"`{name}` (`{command}`)")
            continue
        parts.append(f"Regenerate with `{command}`, then `python docs/scripts/sync_benchmarks.py`.\n")
        parts.append(_demote(table.read_text().strip()) + "\n")
        plot = results / f"{name}.png"
        if plot.is_file():
            _write_atomically(assets / plot.name, plot.read_bytes())
            parts.append(f"![{name} benchmark](assets/benchmarks/{plot.name})\n")
    if pending:
        parts.append("!!! note \"Pending\"\n    No result files yet for: " + ", ".join(pending) +
                     ". Run the commands above; each prints its table and writes it to `benchmarks/results/`.\n")
    return "\n".join(parts)


def sync(page: Path = PAGE) -> None:
    """Replace the text between the result markers of ``page`` with :func:`results_section`."""
    text = page.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{page} must contain the markers {START} and {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    _write_atomically(page, (head + START + "\n\n" + results_section() + "\n" + END + tail).encode())


if __name__ == "__main__":
    sync()
    print(f"updated {PAGE.relative_to(ROOT)} and {ASSETS.relative_to(ROOT)}/")
