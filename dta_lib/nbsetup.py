"""Notebook helpers: :func:`setup`, the first code cell's one call, and :func:`param_tag`, the output-name tag that
keeps a run with non-default parameters from overwriting the committed figures (docs/testing.md, "Notebook
parameters"). Defaults are read from the notebook's own ``parameters`` cell.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .paths import CHECKOUT, output_root

#: parameters that do not change a figure (PRESET is in the names that depend on it; DOWNLOAD only fetches data)
IGNORED_PARAMETERS = frozenset({"PRESET", "REUSE", "THREADS", "PRECISION_REUSE", "DOWNLOAD"})


def _notebook_path(notebook: str | os.PathLike[str]) -> Path:
    p = Path(notebook).with_suffix(".ipynb")
    for found in [p] + ([CHECKOUT / "notebooks" / p.name] if CHECKOUT is not None else []) + [Path.cwd() / p.name]:
        if found.is_file():
            return found
    raise FileNotFoundError(f"notebook {p.name} not found (looked in the checkout's notebooks/ and {Path.cwd()})")


@dataclass(frozen=True)
class NotebookSetup:
    """What :func:`setup` decided: the name tag and the output folders."""
    tag: str
    reports: Path
    tables: Path
    figures: Path


def setup(notebook: str, namespace: Mapping[str, Any], *, width: int | None = 160, max_colwidth: int | None = None,
          max_columns: int | None = None, dpi: int | None = 80) -> NotebookSetup:
    """The first code cell of a numbered notebook (``namespace``: its ``globals()``): checks parameters, sets
    ``$DTA_OUTPUT_DIR`` (itself, else the project's ``reports/``, else ``./reports``),
    ``torch.use_deterministic_algorithms(True)`` (process-wide), display options, silences tqdm's "IProgress not
    found"; returns the name tag and output folders."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    check_parameters(notebook, namespace)
    project = _notebook_path(notebook).resolve().parent.parent
    reports = output_root(fallback=project / "reports" if (project / "pyproject.toml").is_file() else None)
    os.environ["DTA_OUTPUT_DIR"] = str(reports)
    warnings.filterwarnings("ignore", message="IProgress not found")
    torch.use_deterministic_algorithms(True)
    for option, value in (("width", width), ("max_colwidth", max_colwidth), ("max_columns", max_columns)):
        if value is not None:
            pd.set_option("display." + option, value)
    if dpi is not None:
        plt.rcParams["figure.dpi"] = dpi
    return NotebookSetup(param_tag(notebook, namespace), reports, reports / "tables", reports / "figures")


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                      "list": (list,), "dict": (dict,), "tuple": (tuple, list)}


def check_parameters(notebook: str | os.PathLike[str], namespace: Mapping[str, Any]) -> None:
    """Each parameter in ``namespace`` has the type its ``parameters`` cell declares (``SEEDS: "Optional[list[int]]"``;
    a plain ``list`` holds what its default holds); else a one-line ``ValueError`` naming parameter, value and type."""
    for name, (annotation, default) in _parameter_cell(notebook).items():
        match = re.fullmatch(r"(Optional\[)?(\w+)(?:\[(\w+)\])?\]?", annotation or "")
        if name not in namespace or match is None or match.group(2) not in _TYPES:
            continue
        value, optional, kind = namespace[name], bool(match.group(1)), match.group(2)
        item = match.group(3) or (type(default[0]).__name__ if isinstance(default, list) and default else None)
        if optional and value is None:
            continue
        ok = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
        if ok and kind in ("list", "tuple") and item in _TYPES:
            ok = all(isinstance(v, _TYPES[item]) and not isinstance(v, bool) for v in value)
        if not ok:
            want = f"a {kind} of {item}" if item and kind in ("list", "tuple") else f"a {kind}"
            raise ValueError(f"parameter {name}={value!r} ({type(value).__name__}): expected "
                             f"{'None or ' if optional else ''}{want}"
                             + (f" (default {default!r})" if default is not None else ""))


def _parameter_cell(notebook: str | os.PathLike[str]) -> dict[str, tuple[str | None, Any]]:
    """``name -> (annotation text or None, default)`` of a notebook's ``parameters`` cell (literals only)."""
    path = _notebook_path(notebook)
    nb = json.loads(path.read_text())
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    out: dict[str, tuple[str | None, Any]] = {}
    for node in ast.parse("".join(cells[0]["source"])).body:  # a list of lines, or one string
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            ann = node.annotation
            text = ann.value if isinstance(ann, ast.Constant) and isinstance(ann.value, str) else ast.unparse(ann)
            out[node.target.id] = (text, ast.literal_eval(node.value))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = (None, ast.literal_eval(node.value))
    return out


def notebook_defaults(notebook: str | os.PathLike[str]) -> dict[str, Any]:
    """The values assigned in a notebook's ``parameters`` cell (literals only), by name."""
    return {k: default for k, (_, default) in _parameter_cell(notebook).items()}


def param_tag(notebook: str | os.PathLike[str], namespace: Mapping[str, Any], max_len: int = 48) -> str:
    """``""`` when every parameter in ``namespace`` (but :data:`IGNORED_PARAMETERS`) has its default, else
    ``_name-value_...`` sorted by name (``_time_steps-8_gain-2.0``); over ``max_len``: ``_p`` + a 10-char digest."""
    changed = {k: namespace[k] for k, v in notebook_defaults(notebook).items()
               if k not in IGNORED_PARAMETERS and k in namespace and namespace[k] != v}
    if not changed:
        return ""
    short = {k: re.sub(r"[^A-Za-z0-9.+-]+", "_", str(v)).strip("_") or "none" for k, v in changed.items()}
    tag = "_" + "_".join(f"{k.lower()}-{short[k]}" for k in sorted(changed))
    if len(tag) > max_len:
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:10]
        tag = f"_p{digest}"
    return tag


#: what JupyterLab writes for the ``python3`` kernel of ipykernel: stored so that opening a notebook leaves git clean
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def normalize_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Drop run timestamps (papermill, nbclient) and live widget views (their state dies with the kernel: a stored view
    only says "model not found"), and store JupyterLab's kernelspec; returns ``nb`` (changed in place)."""
    meta = nb.setdefault("metadata", {})
    meta["kernelspec"] = dict(KERNELSPEC)
    for key in ("papermill", "widgets"):
        meta.pop(key, None)
    for cell in nb.get("cells", []):
        for key in ("papermill", "execution"):  # per-run metadata of papermill / nbclient
            cell.get("metadata", {}).pop(key, None)
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"]
                               if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    return nb
