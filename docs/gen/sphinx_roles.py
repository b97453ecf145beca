r"""A griffe extension that turns the reStructuredText math and cross-reference roles of the docstrings into Markdown.

The library's docstrings are Google style with Sphinx roles for math (``:math:`L```, ``.. math::``) and references
(``:class:`~sparsecode.solvers.base.Solver```). mkdocstrings renders docstrings as Markdown, so before they are parsed
this extension rewrites

* ``:math:`x``` into ``$x$`` and a ``.. math::`` directive (same line or indented block) into a ``$$ … $$`` block —
  which ``pymdownx.arithmatex`` hands to KaTeX;
* ``:class:`` / ``:func:`` / ``:meth:`` / ``:data:`` / ``:mod:`` / ``:attr:`` roles into inline code (``~`` keeps
  the last component);
* reStructuredText *simple tables* (``=====  =====`` borders) into Markdown tables;
* ````literal```` into ```literal``` and a paragraph's closing ``::`` into ``:``.

It is loaded by mkdocstrings (``extensions:`` in ``mkdocs.yml``); the Python sources are not modified.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["rst_to_markdown", "SphinxRolesToMarkdown"]

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_XREF = re.compile(r":(?:py:)?(?:class|func|meth|data|mod|attr|obj|exc):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+?)``")
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::\s*(?P<rest>.*)$")
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"]] if match["rest"].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        continuation = [line for line in body[1 if match["rest"].strip() else 0:] if line.strip()]
        cut = min((_indent_of(line) for line in continuation), default=0)
        content = [body[0].strip()] if match["rest"].strip() else []
        content += [line[cut:] if line.strip() else "" for line in body[len(content):]]
        out += ["", f"{indent}$$"] + [f"{indent}{line}" if line else "" for line in content] + [f"{indent}$$", ""]
    return out


def _simple_tables(lines: list[str]) -> list[str]:
    """Rewrite RST simple tables (border, header, border, rows, border) as Markdown tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
        ends = [i + 1 + k for k, line in enumerate(lines[i + 1:]) if line.rstrip() == border.rstrip()]
        if len(ends) < 2:  # not a complete table: leave it alone
            out.append(lines[i])
            i += 1
            continue
        header_end, table_end = ends[0], ends[1]

        def rows(block: list[str]) -> list[list[str]]:
            result: list[list[str]] = []
            for line in block:
                if not line.strip():
                    continue
                cells = [line[a:(spans[k + 1][0] if k + 1 < len(spans) else len(line))].strip()
                         for k, (a, _) in enumerate(spans)]
                if result and not cells[0]:  # a continuation line: extend the previous row's cells
                    result[-1] = [f"{old} {new}".strip() for old, new in zip(result[-1], cells)]
                else:
                    result.append(cells)
            return result

        header = rows(lines[i + 1:header_end]) or [[""] * len(spans)]
        body = rows(lines[header_end + 1:table_end])
        indent = border[: len(border) - len(border.lstrip())]
        out += [""] + [f"{indent}| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                       for row in header[:1]]
        out.append(f"{indent}|" + "---|" * len(spans))
        out += [f"{indent}| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body] + [""]
        i = table_end + 1
    return out


def rst_to_markdown(text: str) -> str:
    """Rewrite the Sphinx math and cross-reference roles of a docstring as Markdown (see the module docstring)."""
    lines = _math_blocks(_simple_tables(text.splitlines()))
    converted = []
    for line in lines:
        line = _INLINE_MATH.sub(lambda m: f"${m[1].strip()}$", line)
        line = _XREF.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", line)
        line = _LITERAL.sub(lambda m: f"`{m[1]}`", line)
        if line.rstrip().endswith("::") and not line.strip().startswith("$"):
            head = line.rstrip()[:-1]
            line = f"*{head.strip()}*" if head.strip() in ("Example:", "Examples:") else head
        converted.append(line)
    return "\n".join(converted)


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` as objects are loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102 - griffe hook
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
