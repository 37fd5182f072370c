"""The companion as a static book: Sphinx + myst-nb over the committed notebooks and their stored outputs (nothing
is executed), the README as the landing page, the topic guides, the study renders.

Build: ``make book``, or without make ``python -m sphinx -b html -c book . build/book`` from the repository root.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]

project = "DTA-SNN companion"
author = "The DTA-SNN companion contributors"
extensions = ["myst_nb"]
root_doc = "book/index"
include_patterns = ["book/index.md", "docs/*.md", "notebooks/[0-9][0-9]_*.ipynb", "reports/notebooks/study/*.ipynb"]
exclude_patterns = ["build", ".venv"]
nb_execution_mode = "off"  # the committed outputs, as nbval checks them
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "misc.highlighting_failure"]  # links to files outside the book stay text
html_extra_path = ["extra"]  # index.html: a redirect to the landing page
html_theme = "sphinx_book_theme"
html_title = project
html_context = {"default_mode": "light"}  # without it the theme's script logs "invalid theme mode" on a first visit
html_theme_options = {
    "repository_url": REPO, "repository_branch": "main", "path_to_docs": "", "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com", "binderhub_url": "https://mybinder.org"},
}


def _banner(pagename: str) -> str:
    """What a notebook page's outputs come from, and where the study render is."""
    name = pagename.rsplit("/", 1)[-1]
    if pagename.startswith("reports/notebooks/study/"):
        return (f"Rendered at a study preset from the committed runs (<code>make reproduce</code>); the notebook "
                f"itself, with its CI-sized outputs: <a href=\"../../../notebooks/{name}.html\">{name}</a>.")
    nb = json.loads((ROOT / f"{pagename}.ipynb").read_text())
    params = next(("".join(c["source"]) for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])), "")
    preset = next((line.split("=")[1].split("#")[0].strip().strip("\"'") for line in params.splitlines()
                   if line.startswith("PRESET")), "?")
    text = f"The outputs on this page come from the notebook's default parameters: preset <code>{preset}</code>"
    text += " (CI-sized: they show the code path, not results)." if preset == "smoke" else "."
    if (ROOT / "reports" / "notebooks" / "study" / f"{name}.ipynb").is_file():
        text += (f" The same notebook rendered at its study preset from the recorded runs: "
                 f"<a href=\"../reports/notebooks/study/{name}.html\">study render</a>.")
    return text


def _add_banner(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 - Sphinx's event signature
    if pagename.startswith(("notebooks/", "reports/notebooks/")) and "body" in context:
        context["body"] = f'<div class="admonition note dta-preset"><p>{_banner(pagename)}</p></div>' + context["body"]


def setup(app):  # noqa: ANN001, ANN201
    app.connect("html-page-context", _add_banner)
