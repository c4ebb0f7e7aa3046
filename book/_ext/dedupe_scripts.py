"""Drop duplicate <script> tags from every page.

Sphinx 7.4 registers an inline script added with ``app.add_js_file(None,
body=...)`` after the builder is initialised twice (once with filename None,
once with ""). sphinx-thebe adds such a script (``const THEBE_JS_URL = ...``),
so every page declared the constant twice and the browser logged
"Identifier 'THEBE_JS_URL' has already been declared". This extension keeps
the first of each identical script.
"""

from __future__ import annotations

from typing import Any


def _dedupe(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        key = (
            getattr(js, "filename", js) or "",
            tuple(sorted(getattr(js, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
