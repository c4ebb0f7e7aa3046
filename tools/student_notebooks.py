#!/usr/bin/env python3
"""Write student copies of the chapter notebooks, with the solutions removed.

Usage::

    python tools/student_notebooks.py [NOTEBOOK ...] [--out build/student]

Without NOTEBOOK arguments, every notebook listed in ``_toc.yml`` is converted.
In each copy:

* every sphinx-exercise ``solution`` directive in a markdown cell is removed,
  with its body: the backtick form (```` ```{solution} label ````, any fence
  length, any options such as ``:label:`` or ``:class: dropdown``), the colon
  form (``:::{solution}``) and the gated form (``{solution-start}`` ...
  ``{solution-end}``); a markdown cell left empty is dropped;
* every code cell tagged ``solution`` is replaced by ``# Your answer here``
  (a markdown cell tagged ``solution`` by ``*Your answer here.*``);
* all outputs and execution counts are cleared.

Fences follow the CommonMark rule that MyST uses: a block opened by N backticks
(or colons) is closed by a line of at least N of the same character and nothing
else, so nested code blocks inside a solution need a shorter fence, exactly as
the book's build requires.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_CODE = "# Your answer here"
PLACEHOLDER_MARKDOWN = "*Your answer here.*"

# An opening fence: up to 3 spaces, >= 3 backticks or colons, then {name}.
_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[\w:-]+)\}")


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(stripped) >= len(fence)
        and set(stripped) == {fence[0]}
        and len(line) - len(line.lstrip(" ")) <= 3
    )


def _block_end(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes the block opened at ``start`` (or len(lines))."""
    for j in range(start + 1, len(lines)):
        if _closes(lines[j], fence):
            return j
    return len(lines)


def strip_solutions(markdown: str) -> str:
    """Remove every solution directive (and gated solution) from MyST markdown."""
    lines = markdown.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    gated = False  # inside {solution-start} ... {solution-end}
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m is None:
            if not gated:
                out.append(lines[i])
            i += 1
            continue
        name, fence = m.group("name"), m.group("fence")
        end = _block_end(lines, i, fence)
        if name == "solution-start":
            gated = True
        elif name == "solution-end":
            gated = False
        elif name != "solution" and not gated:
            # Another directive: keep it, but look for solutions nested inside
            # (e.g. a solution in a tab set or an admonition).
            out.append(lines[i])
            if end > i + 1:
                out.append(strip_solutions("".join(lines[i + 1 : end])))
                if not out[-1].endswith("\n"):
                    out[-1] += "\n"
            if end < len(lines):
                out.append(lines[end])
        i = end + 1
    result = "".join(out)
    if result == markdown:
        return markdown
    return re.sub(r"\n{3,}", "\n\n", result).strip("\n")


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` without solutions and without outputs."""
    nb = nbformat.from_dict(nb)
    cells = []
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if "solution" in tags:
            cell.metadata["tags"] = [t for t in tags if t != "solution"]
            if not cell.metadata["tags"]:
                del cell.metadata["tags"]
            cell.source = PLACEHOLDER_CODE if cell.cell_type == "code" else PLACEHOLDER_MARKDOWN
            cell.pop("attachments", None)
        elif cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source)
            if not cell.source.strip():
                continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    nb.cells = cells
    return nb


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The .ipynb files listed in ``_toc.yml``, in order."""
    text = (root / "_toc.yml").read_text()
    names = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", text, flags=re.M)
    paths = [root / (n if n.endswith(".ipynb") else n + ".ipynb") for n in names]
    return [p for p in paths if p.exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to convert (default: those in _toc.yml)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student",
                        help="output folder (default: build/student)")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or toc_notebooks()
    if not notebooks:
        print("no notebooks found", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        target = args.out / path.name
        nbformat.write(student_notebook(nb), target)
        print(f"{path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
