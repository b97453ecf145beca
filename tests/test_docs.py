"""The documentation's promises, checked.

* Every ```python block of ``docs/**/*.md`` and of ``README.md`` runs: blocks of one page execute in order in one
  fresh namespace (a page is a script). A block opts out only with an HTML comment on the line(s) right before its
  fence, ``<!-- skip-test: reason -->``, with a non-empty reason (commands that need data, a GPU or a long run).
* Every image a page shows exists, and every figure under ``docs/assets/figures`` is made by a script in
  ``docs/scripts`` whose command is written under the figure.
* Every page is in the navigation of ``mkdocs.yml``, and the site builds with ``mkdocs build --strict`` (slow).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

__all__ = ["CodeBlock", "extract_python_blocks", "documentation_pages"]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_SKIP = re.compile(r"<!--\s*skip-test:(?P<reason>.*?)-->")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block: its source (dedented), the line its fence opens on, and why it is skipped, if it is."""

    source: str
    line: int
    skip_reason: str | None


def extract_python_blocks(markdown: str) -> list[CodeBlock]:
    """The ```python blocks of a Markdown text, in order (fences may be indented, e.g. inside admonitions).

    A block is skipped when the nearest non-blank line above its fence is a ``<!-- skip-test: reason -->`` comment;
    an empty reason is an error.
    """
    lines = markdown.splitlines()
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = lines[i].strip()
            if closing.startswith(fence[0] * len(fence)) and set(closing) <= {fence[0]}:
                break
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        language = info.split()[0].lstrip("{.").rstrip("}") if info else ""
        if language not in ("python", "py"):
            continue
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        skip = _SKIP.search(lines[above]) if above >= 0 else None
        reason = None
        if skip is not None:
            reason = skip["reason"].strip()
            if not reason:
                raise ValueError(f"line {above + 1}: a skip-test marker needs a reason: <!-- skip-test: why -->")
        blocks.append(CodeBlock("\n".join(body) + "\n", start + 1, reason))
    return blocks


def documentation_pages() -> list[Path]:
    """Every Markdown page of the site, then the README."""
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


PAGES_WITH_CODE = [p for p in documentation_pages() if extract_python_blocks(p.read_text())]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_page_id)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a page's Python blocks in order in one fresh namespace, in a temporary working directory."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_page_{page.stem.replace('-', '_')}"}
    for block in extract_python_blocks(page.read_text()):
        if block.skip_reason is not None:
            continue
        code = compile(block.source, f"{_page_id(page)}:{block.line}", "exec")
        try:
            exec(code, namespace)  # noqa: S102 - running the documentation is the point of this test
        except Exception as exc:  # name the page and the block in the failure
            raise AssertionError(f"{_page_id(page)}, block at line {block.line} failed: {exc!r}") from exc


def test_extractor_reads_fences_markers_and_indentation() -> None:
    text = (
        "Intro\n\n```python\nx = 1\n```\n\n<!-- skip-test: needs a GPU -->\n\n```python\nraise SystemExit\n```\n"
        "\n```bash\necho hi\n```\n\n!!! note\n    ```python\n    y = x + 1\n    ```\n"
    )
    blocks = extract_python_blocks(text)
    assert [b.source for b in blocks] == ["x = 1\n", "raise SystemExit\n", "y = x + 1\n"]
    assert [b.skip_reason for b in blocks] == [None, "needs a GPU", None]
    assert [b.line for b in blocks] == [3, 9, 18]
    with pytest.raises(ValueError, match="needs a reason"):
        extract_python_blocks("<!-- skip-test: -->\n```python\npass\n```\n")


def test_skip_markers_are_rare_and_explained() -> None:
    """Skipping is for data/GPU/long runs only: every marker states a reason, and most code runs."""
    blocks = [b for p in documentation_pages() for b in extract_python_blocks(p.read_text())]
    skipped = [b for b in blocks if b.skip_reason is not None]
    assert blocks, "the documentation has no Python examples"
    assert all(len(b.skip_reason) >= 10 for b in skipped)
    assert len(skipped) <= len(blocks) // 3


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav] if nav.endswith(".md") else []
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")

    class _Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may use !!python/name tags (e.g. for emoji); they are irrelevant here
    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)


def test_every_page_is_in_the_navigation() -> None:
    nav = set(_nav_pages(_mkdocs_config()["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml nav"
    assert nav - pages == set(), "nav entries without a page"


def test_math_is_served_locally() -> None:
    """The site renders math with the vendored KaTeX, never from a CDN (the screenshot check runs offline)."""
    config = _mkdocs_config()
    scripts = [s if isinstance(s, str) else s.get("path", "") for s in config.get("extra_javascript", [])]
    assert all(not s.startswith(("http://", "https://", "//")) for s in scripts)
    for asset in scripts + list(config.get("extra_css", [])):
        assert (DOCS / asset).is_file(), f"{asset} is missing: run python docs/scripts/vendor_katex.py"
    fonts = list((DOCS / "javascripts" / "katex" / "fonts").glob("*.woff2"))
    assert len(fonts) >= 15


_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)")


def test_images_exist_and_figures_name_their_script() -> None:
    shown: set[Path] = set()
    for page in DOCS.rglob("*.md"):
        text = page.read_text()
        for match in _IMAGE.finditer(text):
            target = (page.parent / match["target"]).resolve()
            assert target.is_file(), f"{page.relative_to(ROOT)} shows a missing image {match['target']}"
            shown.add(target)
            if "assets/figures/" in match["target"]:
                # the command that regenerates the figure is written right under it
                after = text[match.end(): match.end() + 400]
                command = re.search(r"python (docs/scripts/\w+\.py)", after)
                assert command, f"{page.relative_to(ROOT)}: no regeneration command under {match['target']}"
                assert (ROOT / command[1]).is_file()
    figures = set((DOCS / "assets" / "figures").glob("*.png"))
    assert figures, "no generated figures"
    assert figures - shown == set(), "figures that no page shows"


def test_home_quick_start_matches_readme() -> None:
    def quick_start(text: str) -> str:
        section = text.split("## Quick start", 1)[1]
        return re.search(r"```bash\n(.*?)```", section, re.S)[1]

    assert quick_start((DOCS / "index.md").read_text()) == quick_start((ROOT / "README.md").read_text())


@pytest.mark.slow
def test_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` (what CI runs) succeeds."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


# --- the documentation tooling ---------------------------------------------------------------------------------------

def _load_script(path: Path, monkeypatch: pytest.MonkeyPatch):
    """Import a script of the repository by path (its folder first on ``sys.path``, as when it is run)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(path.parent))
    name = f"docs_tool_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_become_markdown(monkeypatch: pytest.MonkeyPatch) -> None:
    roles = _load_script(DOCS / "gen" / "sphinx_roles.py", monkeypatch)
    text = ("Step :math:`1/L` for :class:`~sparsecode.solvers.base.Solver` and :func:`sparsecode.objective`.\n\n"
            "Example::\n\n    layer(x)\n\n.. math:: u = T(v)\n\nThen\n\n    .. math::\n        a = b\n        c = d\n\n"
            "Uses ``tol``.")
    out = roles.rst_to_markdown(text)
    assert "$1/L$" in out and "`Solver`" in out and "`sparsecode.objective`" in out and "`tol`" in out
    assert "*Example:*" in out and "::" not in out
    assert "$$\nu = T(v)\n$$" in out
    assert "    $$\n    a = b\n    c = d\n    $$" in out
    table = "=====  =====\nkind   note\n=====  =====\na      one\n       more\nb      |x|\n=====  =====\n"
    assert roles.rst_to_markdown(table).split("\n")[1:5] == [
        "| kind | note |", "|---|---|", "| a | one more |", "| b | \\|x\\| |"]


def test_figure_helpers_write_png_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = _load_script(DOCS / "scripts" / "_figure_io.py", monkeypatch)
    fig = io.plt.figure()
    out = io.save_figure(fig, tmp_path / "sub" / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["f.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="must end in .png"):
        io.save_figure(io.plt.figure(), tmp_path / "f.jpg")


def test_convergence_figure_data_orders_the_solvers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The convergence figure's computation, on a small problem: every curve ends near F*, FISTA ahead of ISTA."""
    script = _load_script(DOCS / "scripts" / "convergence.py", monkeypatch)
    problem = script.make_problem(n_features=16, n_atoms=32, n_nonzero=3, lam=0.05)
    curves = script.convergence_curves(problem, script.default_solvers(60))
    assert set(curves) == {"ISTA", "FISTA", "FISTA + restart", "LCA (VARS form, Euler)", "LCA (Rozell, Euler)"}
    for curve in curves.values():
        assert curve["gap"].shape == (60,) and (curve["gap"] > -1e-9).all()  # F* is the minimum
    assert curves["FISTA + restart"]["gap"][-1] <= curves["ISTA"]["gap"][-1]


def test_screenshot_tool_serves_and_names_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    tool = _load_script(ROOT / "scripts" / "screenshot_docs.py", monkeypatch)
    (tmp_path / "index.html").write_text("<p>served</p>")
    with tool.serve(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "index.html", timeout=10) as response:
            assert response.read() == b"<p>served</p>"
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        tool.find_chromium(candidates=(str(tmp_path / "no-chromium"),))
    flags = " ".join(tool.CHROMIUM_FLAGS)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        assert flag in flags


@pytest.mark.slow
def test_screenshots_of_the_built_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build, serve and shoot the site in headless Chromium (skipped without Chromium)."""
    tool = _load_script(ROOT / "scripts" / "screenshot_docs.py", monkeypatch)
    try:
        tool.find_chromium()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert tool.main(["--out-dir", str(tmp_path), "--width", "800", "--height", "600"]) == 0
    for name in ("home.png", "api_solvers.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _api_directives() -> list[tuple[str, list[str] | None]]:
    """The ``::: target`` directives of the API pages, with their ``members:`` filter if any."""
    directives: list[tuple[str, list[str] | None]] = []
    for page in sorted((DOCS / "api").rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("::: "):
                members = None
                for option in lines[i + 1:]:
                    if not option.startswith((" ", "\t")):  # the directive's indented options end here
                        break
                    found = re.match(r"\s+members:\s*\[(.*)\]", option)
                    if found:
                        members = [m.strip() for m in found[1].split(",")]
                directives.append((line[4:].strip(), members))
    return directives


def test_every_public_name_is_in_the_api_reference() -> None:
    """Each name of ``sparsecode.__all__`` is rendered by some ``:::`` directive of docs/api."""
    import importlib
    import inspect

    import sparsecode

    directives = [(target, members) for target, members in _api_directives() if target.startswith("sparsecode")]
    missing = []
    for name in sparsecode.__all__:
        obj = getattr(sparsecode, name)
        home = getattr(obj, "__module__", None) if inspect.isclass(obj) or inspect.isfunction(obj) else None
        covered = False
        for target, members in directives:
            if target.rsplit(".", 1)[-1] == name:
                covered = True
            elif members is None or name in members:
                try:
                    module = importlib.import_module(target)
                except ImportError:
                    continue
                defined_here = home == target if home else name in getattr(module, "__all__", ())
                covered = covered or (defined_here and name in vars(module))
        if not covered:
            missing.append(name)
    assert missing == [], "public names without an API entry"


def test_benchmark_results_are_pasted_with_their_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = _load_script(DOCS / "scripts" / "sync_benchmarks.py", monkeypatch)
    results, assets = tmp_path / "results", tmp_path / "assets"
    results.mkdir()
    (results / "solvers.md").write_text("# Title\n\n| a |\n|---|\n| 1 |\n")
    (results / "solvers.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    section = sync.results_section(results, assets)
    assert "### Title" in section and "`python benchmarks/solvers.py`" in section
    assert "![solvers benchmark](assets/benchmarks/solvers.png)" in section
    assert (assets / "solvers.png").read_bytes() == b"\x89PNG\r\n\x1a\n"
    assert "Pending" in section and "`layers`" in section  # no layers.md in this folder
    bare = tmp_path / "bare.md"
    bare.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        sync.sync(bare)
