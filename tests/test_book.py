"""Checks of the book's infrastructure: config, table of contents, notebooks,
launch links, citations, cross-references and the student notebooks.

These tests read source files only and run in seconds. The two tests at the end
look at the built HTML and are skipped when ``_build/html`` does not exist.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

yaml = pytest.importorskip("yaml")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
HTML = ROOT / "_build" / "html"


def _toc_files(node) -> list[str]:
    """Every ``root`` / ``file`` entry of a jb-book table of contents, in order."""
    files = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                files.append(node[key])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []):
                files.extend(_toc_files(child))
    return files


DOCS = _toc_files(TOC)
NOTEBOOKS = [d for d in DOCS if (ROOT / f"{d}.ipynb").exists()]
MARKDOWN = [d for d in DOCS if (ROOT / f"{d}.md").exists()]


def _read(doc: str):
    return nbformat.read(ROOT / f"{doc}.ipynb", as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _repo_parts() -> tuple[str, str, str]:
    owner, repo = CONFIG["repository"]["url"].rstrip("/").split("/")[-2:]
    return owner, repo, CONFIG["repository"]["branch"]


def _all_markdown() -> dict[str, str]:
    """Markdown text of every book page: .md files and notebook markdown cells."""
    texts = {f"{d}.md": (ROOT / f"{d}.md").read_text() for d in MARKDOWN}
    for d in NOTEBOOKS:
        texts[f"{d}.ipynb"] = "\n\n".join(c.source for c in _read(d).cells if c.cell_type == "markdown")
    return texts


# --------------------------------------------------------------- config and toc


def test_config_is_valid_for_jupyter_book():
    jb_config = pytest.importorskip("jupyter_book.config")
    jb_config.get_final_config(user_yaml=ROOT / "_config.yml", sourcedir=ROOT,
                               cli_config={"latex_individualpages": False},
                               validate=True, raise_on_invalid=True)


def test_toc_order_and_files_exist():
    assert TOC["format"] == "jb-book"
    assert DOCS[0] == "book/intro"
    assert [p["caption"] for p in TOC["parts"]] == ["Background", "Chapters", "Appendix"]
    for doc in DOCS:
        assert (ROOT / f"{doc}.md").exists() or (ROOT / f"{doc}.ipynb").exists(), doc
    for doc in DOCS:
        if doc.startswith("notebooks/"):
            assert doc in NOTEBOOKS, f"{doc}.ipynb is missing"


def test_mathjax_is_served_by_the_book():
    extensions = CONFIG["sphinx"]["extra_extensions"]
    assert "sphinx-mathjax-offline" in extensions
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None:
        pytest.skip("sphinx-mathjax-offline is not installed (pip install -e '.[book]')")
    static = Path(spec.origin).parent / "static" / "mathjax" / "tex-chtml.js"
    assert static.exists(), static
    assert "mathjax_path" not in CONFIG["sphinx"].get("config", {}), "leave mathjax_path to the extension"


# ------------------------------------------------------------------- notebooks


@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_first_code_cell_is_the_colab_setup(doc):
    """(a) The Colab cell clones the repository and branch that _config.yml names."""
    source = _code_cells(_read(doc))[0].source
    values = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            names = [t.id for t in node.targets[0].elts]
            values.update(zip(names, (ast.literal_eval(v) for v in node.value.elts)))
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    assert values.get("REPO_URL") == CONFIG["repository"]["url"], source
    assert values.get("BRANCH") == CONFIG["repository"]["branch"], source
    assert "google.colab" in source


@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_one_parameters_cell_reads_samlib_scale(doc):
    """(c) Exactly one papermill ``parameters`` cell, the second code cell."""
    code = _code_cells(_read(doc))
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{doc}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0] == 1, f"{doc}: the parameters cell is code cell {tagged[0] + 1}, not 2"
    assert "SAMLIB_SCALE" in code[1].source


@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_notebook_has_a_python_kernel(doc):
    """The launch button and jupyter-cache both need the kernelspec."""
    assert _read(doc).metadata.get("kernelspec", {}).get("name") == "python3"


# --------------------------------------------------------------- launch links


def _theme_launch_buttons(doc: str) -> list[dict]:
    """The launch buttons sphinx-book-theme builds for ``doc``, from _config.yml.

    Runs the theme's own code (``update_context_with_repository_info`` and
    ``add_launch_buttons``) on the Sphinx configuration Jupyter Book derives
    from ``_config.yml``, with a stand-in for the Sphinx application.
    """
    jb_config = pytest.importorskip("jupyter_book.config")
    buttons = pytest.importorskip("sphinx_book_theme.header_buttons")
    launch = pytest.importorskip("sphinx_book_theme.header_buttons.launch")
    sphinx_config, _ = jb_config.get_final_config(
        user_yaml=ROOT / "_config.yml", sourcedir=ROOT, cli_config={"latex_individualpages": False}
    )

    class Config(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError as exc:
                raise AttributeError(name) from exc

    app = SimpleNamespace(
        builder=None,
        config=Config(html_theme_options=sphinx_config["html_theme_options"], html_context={}),
        env=SimpleNamespace(
            doc2path=lambda name: str(ROOT / f"{name}.ipynb"),
            metadata={doc: {"kernelspec": {"name": "python3"}}},
        ),
    )
    buttons.update_context_with_repository_info(app)
    context = dict(app.config.html_context, pagename=doc, header_buttons=[],
                   sourcename=f"{doc}.ipynb", page_source_suffix=".ipynb")
    launch.add_launch_buttons(app, doc, "page.html", context, None)
    assert context["header_buttons"], "the theme added no launch buttons"
    return context["header_buttons"][-1]["buttons"]


@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_colab_link(doc):
    """(b) The theme's Colab link opens this notebook on GitHub."""
    owner, repo, branch = _repo_parts()
    links = [b["url"] for b in _theme_launch_buttons(doc) if b.get("text") == "Colab"]
    want = f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/{doc}.ipynb"
    assert links == [want]
    assert (ROOT / f"{doc}.ipynb").exists()
    assert doc.startswith("notebooks/")


# ------------------------------------------------------- citations, references

_CITE = re.compile(r"\{(?:foot)?cite(?::\w+)?\}`([^`]+)`")
_BIBKEY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.M)


def test_every_cited_key_is_in_the_bibliography():
    """(e) Every {cite} key in the book is in book/references.bib."""
    keys = set(_BIBKEY.findall((ROOT / "book" / "references.bib").read_text()))
    missing = {}
    for name, text in _all_markdown().items():
        for group in _CITE.findall(text):
            for key in (k.strip() for k in group.split(",")):
                if key not in keys:
                    missing.setdefault(name, []).append(key)
    assert not missing, f"keys not in book/references.bib: {missing}"


def test_bibliography_has_no_duplicate_keys():
    keys = _BIBKEY.findall((ROOT / "book" / "references.bib").read_text())
    assert len(keys) == len(set(keys))


_LABEL_DEF = re.compile(r"^\s*\(([\w-]+)\)=\s*$|^\s*:(?:label|name):\s*(\S+)", re.M)
_REF_USE = re.compile(r"\{(?:ref|numref|prf:ref)\}`(?:[^`<]*<)?([\w-]+)>?`")


def test_every_ref_target_exists():
    """Every {ref} in the book points at a label defined in the book."""
    texts = _all_markdown()
    labels = {a or b for t in texts.values() for a, b in _LABEL_DEF.findall(t)}
    missing = {n: [r for r in _REF_USE.findall(t) if r not in labels] for n, t in texts.items()}
    missing = {n: r for n, r in missing.items() if r}
    assert not missing, f"undefined labels: {missing}"


# ------------------------------------------------------------ student notebooks

_SOLUTION_OPEN = re.compile(r"^ {0,3}(`{3,}|:{3,})\s*\{solution\}")


def _solution_lines(nb) -> set[str]:
    """Body lines of every solution (directives and tagged cells), found
    independently of tools/student_notebooks.py."""
    inside, outside = set(), set()
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if "solution" in cell.metadata.get("tags", []):
            inside.update(lines)
            continue
        if cell.cell_type != "markdown":
            outside.update(lines)
            continue
        fence = None
        for line in lines:
            if fence is None:
                m = _SOLUTION_OPEN.match(line)
                if m:
                    fence = m.group(1)
                else:
                    outside.add(line)
            elif line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
                fence = None
            else:
                inside.add(line)
    outside = {line.strip() for line in outside}
    return {line.strip() for line in inside if len(line.strip()) > 3} - outside


def _fixture_notebook(path: Path) -> set[str]:
    """A notebook with an exercise and four solutions; returns their secret lines."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell("answer = 6 * 7  # SECRET-CODE\nprint(answer)")
    code.metadata["tags"] = ["solution"]
    code.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Fixture\n\n"
            "````{exercise}\n:label: ex-fixture\n\nWhat is six times seven?\n````\n\n"
            "````{solution} ex-fixture\n:label: sol-fixture\n:class: dropdown\n\n"
            "SECRET-PROSE: multiply the two numbers.\n\n"
            "```python\nsecret_value = 42  # SECRET-NESTED\n```\n"
            "````\n\nText after the solution stays."
        ),
        nbformat.v4.new_markdown_cell(":::{solution} ex-fixture\nSECRET-COLON line\n:::"),
        code,
        nbformat.v4.new_code_cell("print('exercise scaffold stays')"),
    ]
    nbformat.write(nb, path)
    return {"SECRET-PROSE", "SECRET-NESTED", "SECRET-COLON", "SECRET-CODE", "secret_value", "6 * 7"}


def test_student_notebooks_remove_every_solution(tmp_path):
    """(d) tools/student_notebooks.py leaks no solution, on a fixture and on the chapters."""
    fixture = tmp_path / "fixture.ipynb"
    secrets = _fixture_notebook(fixture)
    out = tmp_path / "student"
    chapters = [ROOT / f"{d}.ipynb" for d in NOTEBOOKS]
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_notebooks.py"), str(fixture),
         *map(str, chapters), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr

    student = nbformat.read(out / "fixture.ipynb", as_version=4)
    text = json.dumps(student)
    for secret in secrets:
        assert secret not in text, f"solution text {secret!r} leaked"
    assert "What is six times seven?" in text and "Text after the solution stays." in text
    assert "exercise scaffold stays" in text
    assert [c.source for c in student.cells if c.cell_type == "code"][0] == "# Your answer here"

    for path in [fixture, *chapters]:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(out / path.name, as_version=4)
        secret_lines = _solution_lines(original)
        for cell in copy.cells:
            if cell.cell_type == "markdown":
                assert "{solution" not in cell.source, f"{path.name}: a solution directive survived"
            else:
                assert "solution" not in cell.metadata.get("tags", []), f"{path.name}: tagged cell kept"
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs kept"
            leaked = secret_lines & {line.strip() for line in cell.source.splitlines()}
            assert not leaked, f"{path.name}: solution lines leaked: {sorted(leaked)[:3]}"
        n_solution_code = sum(
            c.cell_type == "code" and "solution" in c.metadata.get("tags", []) for c in original.cells
        )
        assert sum(c.source == "# Your answer here" for c in copy.cells) >= n_solution_code


def test_student_notebooks_default_is_the_toc(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_notebooks.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == sorted(
        Path(d).name + ".ipynb" for d in NOTEBOOKS
    )


# --------------------------------------------------- the built site, if present

needs_build = pytest.mark.skipif(
    not (HTML / "index.html").exists(),
    reason="_build/html is missing: run `make book` to check the built site",
)


@needs_build
def test_built_pages_use_local_mathjax():
    """Pages with math load MathJax from _static, not from a CDN."""
    pages = [HTML / f"{d}.html" for d in DOCS if (HTML / f"{d}.html").exists()]
    script = re.compile(r'<script[^>]+src="([^"]*mathjax[^"]*)"', re.I)
    loaded = {page: script.findall(page.read_text()) for page in pages}
    assert any(loaded.values()), "no built page loads MathJax"
    for page, srcs in loaded.items():
        for src in srcs:
            assert "://" not in src, f"{page.name}: MathJax from {src}"
            local = (page.parent / src.split("?")[0]).resolve()
            assert local.is_relative_to(HTML / "_static"), local
            assert local.exists(), f"{page.name}: {local} does not exist"


@needs_build
@pytest.mark.parametrize("doc", NOTEBOOKS)
def test_built_colab_link(doc):
    page = HTML / f"{doc}.html"
    if not page.exists():
        pytest.skip(f"{page} was not built")
    owner, repo, branch = _repo_parts()
    want = f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/{doc}.ipynb"
    assert f'href="{want}"' in page.read_text()
