r"""Vendor KaTeX (math rendering) from the npm registry into ``docs/javascripts/katex/``.

The site renders the ``\( … \)`` / ``\[ … \]`` spans written by ``pymdownx.arithmatex`` with KaTeX served from the
site itself, so equations render without any network access (no CDN). This script fetches the pinned ``katex``
package with ``npm pack``, and copies only what the browser needs: ``katex.min.js``, ``katex.min.css``,
``contrib/auto-render.min.js``, the ``woff2`` fonts (every current browser reads woff2, the CSS lists it first) and
the licence. About 0.6 MB in all.

Usage::

    python docs/scripts/vendor_katex.py            # the pinned version
    python docs/scripts/vendor_katex.py --version 0.19.1
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

__all__ = ["KATEX_VERSION", "KATEX_FILES", "vendor_katex"]

#: the KaTeX release the site is built with
KATEX_VERSION = "0.19.1"

#: files copied from the package's ``dist/`` (plus every ``dist/fonts/*.woff2``)
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")

DEFAULT_TARGET = Path(__file__).resolve().parents[1] / "javascripts" / "katex"


def vendor_katex(target: Path = DEFAULT_TARGET, version: str = KATEX_VERSION) -> list[Path]:
    """Download ``katex@version`` with ``npm pack`` and copy its browser files into ``target`` (replacing it).

    Args:
        target: the folder to fill (``docs/javascripts/katex`` by default).
        version: the npm version of ``katex``.

    Returns:
        The files written, relative to ``target``.
    """
    if not isinstance(version, str) or not version:
        raise ValueError(f"version must be a non-empty string such as '0.19.1', got {version!r}")
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to fetch KaTeX: install Node.js (e.g. `apt-get install -y npm`)")
    target = Path(target)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"katex@{version}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        (tarball,) = Path(tmp).glob("katex-*.tgz")
        staging = Path(tmp) / "staging"
        written: list[Path] = []
        with tarfile.open(tarball) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            wanted = {f"package/dist/{name}": Path(name) for name in KATEX_FILES}
            wanted.update({name: Path("fonts") / Path(name).name for name in members
                           if name.startswith("package/dist/fonts/") and name.endswith(".woff2")})
            wanted["package/LICENSE"] = Path("LICENSE")
            for source, relative in sorted(wanted.items()):
                if source not in members:
                    raise RuntimeError(f"katex@{version} has no {source}; pick another version")
                out = staging / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                extracted = tar.extractfile(members[source])
                if extracted is None:
                    raise RuntimeError(f"could not read {source} from {tarball.name}")
                out.write_bytes(extracted.read())
                written.append(relative)
        (staging / "VERSION").write_text(version + "\n")
        written.append(Path("VERSION"))
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=KATEX_VERSION, help="katex version on npm")
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET, help="output folder")
    args = parser.parse_args()
    files = vendor_katex(args.target, args.version)
    size = sum(os.path.getsize(args.target / f) for f in files)
    print(f"wrote {len(files)} files ({size / 1e6:.2f} MB) to {args.target}")


if __name__ == "__main__":
    main()
