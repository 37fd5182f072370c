"""Where dta_lib writes its outputs (:func:`output_root`; never under the installed package) and where it finds
recorded results (:func:`recorded`: the output root, then the checkout's ``reports/``, so a scratch output root
still renders the committed studies).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
#: the source checkout holding this ``dta_lib`` (``None`` when it is installed, e.g. in site-packages)
CHECKOUT: Path | None = (
    _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() and (_PACKAGE_PARENT / "notebooks").is_dir()
    else None
)
#: the checkout's ``reports/`` folder (committed results), ``None`` for an installed ``dta_lib``
_REPORTS = CHECKOUT / "reports" if CHECKOUT is not None else None


def output_root(fallback: Path | None = None) -> Path:
    """The folder outputs (runs, figures, tables, benchmarks) go under: ``$DTA_OUTPUT_DIR``, else ``fallback``
    (``make reproduce``, a notebook: the project's ``reports/``), else ``./reports`` (read per call); ``ValueError``
    for a blank ``$DTA_OUTPUT_DIR`` (it would mean the current folder by accident)."""
    text = os.environ.get("DTA_OUTPUT_DIR")
    if not text:  # an exported but empty variable means "not set"
        return fallback or Path.cwd() / "reports"
    if not text.strip():
        raise ValueError(f"$DTA_OUTPUT_DIR is {text!r}: expected a folder path, not an empty string")
    return Path(text).expanduser().absolute()  # a later chdir does not move it


def cache_dir() -> Path:
    """Folder for derived files (compiled kernels, unpacked or emulated data): ``$DTA_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dta_lib``, else ``~/.cache/dta_lib`` (not created here)."""
    if value := os.environ.get("DTA_CACHE_DIR", "").strip():
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache") / "dta_lib"


def recorded(relative: str | os.PathLike[str]) -> Path:
    """A recorded result by its path relative to a reports folder (``runs/cpu``, ``bench/x.json``): the first that
    exists under :func:`output_root`, then the checkout's ``reports/``, else the output-root one (which the caller's
    error names). An absolute path is returned as it is."""
    rel = Path(relative)
    first = output_root() / rel  # an absolute ``rel``: the join gives it back
    return _REPORTS / rel if not first.exists() and _REPORTS is not None and (_REPORTS / rel).exists() else first


def recorded_glob(folder: str | os.PathLike[str], pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder`` (relative to a reports folder): those under :func:`output_root`
    when there are any, else those under the checkout's ``reports/``; sorted."""
    found = sorted((output_root() / folder).glob(pattern))
    if not found and _REPORTS is not None:
        found = sorted((_REPORTS / folder).glob(pattern))
    return found


#: how run.json, the run lock and reproduce's session stamp a time (parsed back by :mod:`dta_lib.runs`)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def now() -> str:
    """The local time in :data:`TIME_FORMAT`."""
    return time.strftime(TIME_FORMAT)
