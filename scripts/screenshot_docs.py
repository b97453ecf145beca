"""Build the documentation site, serve it locally and take headless-Chromium screenshots of it.

Steps: ``mkdocs build --strict`` into a temporary folder; serve that folder with ``http.server`` on 127.0.0.1 at a
free port (a thread of this process); run Debian's ``chromium`` headless on the home page and on one API page; write
the PNGs to ``docs/assets/screenshots/`` (atomically). Chromium runs without network access of its own
(``--disable-background-networking``, a throw-away profile): the site must render from what it serves — which is why
its math renderer (KaTeX) is vendored under ``docs/javascripts/katex/``.

Usage::

    python scripts/screenshot_docs.py                       # home + API page, 1280 x 1000
    python scripts/screenshot_docs.py --page concepts/ode/ --width 1400 --height 1800

Chromium: ``apt-get update && apt-get install -y chromium`` (the script looks for ``/usr/bin/chromium``).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["CHROMIUM_FLAGS", "find_chromium", "build_site", "serve", "screenshot", "main"]

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "assets" / "screenshots"

#: the pages shot by default: (URL path relative to the site root, output file name)
DEFAULT_PAGES: tuple[tuple[str, str], ...] = (("", "home.png"), ("api/solvers/", "api_solvers.png"))

#: every flag Chromium is launched with (plus the profile folder, the window size and the screenshot target)
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--virtual-time-budget=10000",  # let scripts (search index, KaTeX) finish before the capture
)

_INSTALL_HINT = "chromium was not found: install it with `apt-get update && apt-get install -y chromium`"


def find_chromium(candidates: Sequence[str] = ("/usr/bin/chromium", "chromium", "chromium-browser")) -> str:
    """The path of a Chromium executable; raises ``FileNotFoundError`` with the install command if there is none."""
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(_INSTALL_HINT)


def build_site(site_dir: Path) -> Path:
    """Run ``mkdocs build --strict`` into ``site_dir``; raise ``RuntimeError`` with mkdocs' output on failure."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}")
    return site_dir


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 at a free port in a background thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot(chromium: str, url: str, out: Path, *, width: int = 1280, height: int = 1000,
               timeout: float = 120.0) -> Path:
    """Capture ``url`` at ``width`` × ``height`` into the PNG ``out`` (written atomically).

    Args:
        chromium: the Chromium executable.
        url: the page.
        out: the PNG to write.
        width, height: the window size in pixels.
        timeout: seconds before Chromium is stopped.
    """
    if width < 100 or height < 100:
        raise ValueError(f"width and height must be at least 100 pixels, got {width} x {height}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        tmp = Path(profile) / "shot.png"
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/profile",
                   f"--window-size={width},{height}", f"--screenshot={tmp}", url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"chromium wrote no screenshot of {url} (exit {result.returncode}):\n{result.stderr}")
        staged = out.with_suffix(".png.tmp")
        shutil.copyfile(tmp, staged)
        os.replace(staged, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", action="append", default=None,
                        help="a page path relative to the site root, e.g. concepts/ode/ (repeatable; default: "
                             "the home page and api/solvers/)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    try:
        chromium = find_chromium()
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    pages = DEFAULT_PAGES if not args.page else tuple(
        (p.strip("/") + "/" if p.strip("/") else "", (p.strip("/").replace("/", "_") or "home") + ".png")
        for p in args.page)
    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(Path(tmp) / "site")
        with serve(site) as base_url:
            for path, name in pages:
                out = screenshot(chromium, base_url + path, args.out_dir / name, width=args.width,
                                 height=args.height)
                print(f"{base_url + path} -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
