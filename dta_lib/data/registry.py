"""Dataset metadata (:class:`DatasetInfo`) and root lookup, the same for every entry point: the ``root``
argument, then ``$DTA_DATA_ROOT``, then the dataset's offline locations (Debian's ``dataset-fashion-mnist``),
then the download cache (:func:`download_root`), then, only with ``download=True``, a download into it.
Derived files (frames, emulated events, gunzipped Debian files) go to :func:`dta_lib.paths.cache_dir`."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import cache_dir


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset (shapes, classes), and its normalisation: ``mean`` / ``std`` default
    to the identity (event counts, synthetic and user datasets), so the six :data:`MODEL_FIELDS` that a checkpoint
    records rebuild one."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    default_time_steps: int
    is_event: bool
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


#: the fields a model is built from (a checkpoint's ``data_info``)
MODEL_FIELDS = ("name", "num_classes", "in_channels", "image_size", "default_time_steps", "is_event")


# CIFAR: the release's constants, which its checkpoints expect (docs/data.md, "Datasets"). Event frames are raw
# per-polarity event counts (not normalised): mean 0, std 1 is the identity.
DATASETS: dict[str, DatasetInfo] = {i.name: i for i in (
    DatasetInfo("cifar10", 10, 3, 32, 6, False, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    DatasetInfo("cifar100", 100, 3, 32, 6, False, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    DatasetInfo("imagenet", 1000, 3, 224, 6, False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    DatasetInfo("cifar10-dvs", 10, 2, 48, 10, True, (0.0, 0.0), (1.0, 1.0)),
    DatasetInfo("fashion-mnist", 10, 1, 28, 4, False, (0.2860,), (0.3530,)),
    DatasetInfo("fashion-mnist-dvs", 10, 2, 34, 10, True, (0.0, 0.0), (1.0, 1.0)),
    DatasetInfo("cifar10-emulated-dvs", 10, 2, 48, 10, True, (0.0, 0.0), (1.0, 1.0)),
)}
MAX_TIME_STEPS = 1024


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}") from None


def check_time_steps(name: str, time_steps: Any) -> int:
    """``time_steps`` (or the dataset default when None) as a positive int; ``ValueError`` otherwise."""
    info = dataset_info(name)
    if time_steps is None:
        return info.default_time_steps
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or not 1 <= time_steps <= MAX_TIME_STEPS:
        raise ValueError(f"time_steps={time_steps!r} is impossible for {name!r}; valid choices: an int in "
                         f"1..{MAX_TIME_STEPS} (default {info.default_time_steps})")
    return time_steps


def env_root() -> Path | None:
    """``$DTA_DATA_ROOT`` when set and non-empty."""
    value = os.environ.get("DTA_DATA_ROOT", "").strip()
    return Path(value).expanduser() if value else None


def download_root() -> Path:
    """Where ``download=True`` puts a dataset: ``$DTA_DATA_ROOT`` when set, else ``<cache_dir>/data``."""
    return env_root() or cache_dir() / "data"


def cache_key(**params: Any) -> str:
    """A short hash of every parameter that determines a cached file (JSON, sorted keys)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


#: dataset name -> the root the last :func:`resolve_root` call picked (read by :func:`data_provenance`)
RESOLVED_ROOTS: dict[str, Path] = {}


def resolve_root(name: str, root: str | os.PathLike | None, present: Any, download: bool,
                 layout: str, offline: tuple[Path, ...] = ()) -> Path:
    """The dataset root in lookup order (module docstring); ``present(path) -> bool`` says whether a candidate
    holds the data. Nothing is created here."""
    if root is not None:
        path = Path(root).expanduser()
        found = path if download or present(path) else None
        state = "does not exist" if not path.exists() else ("is empty" if path.is_dir() and not any(path.iterdir())
                                                           else "lacks the expected files")
        searched = [f"{path} (which {state})"]
    else:
        env = env_root()
        if env is not None and not env.exists() and not download:
            raise FileNotFoundError(f"{name}: $DTA_DATA_ROOT={str(env)!r} does not exist; set it to a folder with the "
                                    f"layout {layout}, or unset it to use the offline copies")
        candidates = ([env] if env is not None else []) + [c for c in (*offline, download_root()) if c != env]
        found = next((c for c in candidates if present(c)), None)
        if found is not None and env is not None and found != env:
            warnings.warn(f"$DTA_DATA_ROOT={str(env)!r} does not hold {name} (expected {layout}); using {found}",
                          stacklevel=3)
        found = download_root() if found is None and download else found
        searched = [f"{c} ($DTA_DATA_ROOT)" if c == env else str(c) for c in candidates]
    if found is not None:
        RESOLVED_ROOTS[name] = found
        return found
    how = ("pass download=True (DOWNLOAD=1 for make reproduce, --download for the CLI; needs internet), set "
           "DTA_DATA_ROOT / root= to a folder with that layout"
           + (" or install the Debian package dataset-fashion-mnist" if name.startswith("fashion") else ""))
    raise FileNotFoundError(f"{name}: no data found at {', '.join(searched) or '(no candidate root)'}. Expected layout: "
                            f"{layout}. To get it: {how}")


def data_provenance(name: str, max_content_bytes: int = 256 * 2**20, max_files: int = 20_000) -> dict[str, Any] | None:
    """The root :func:`resolve_root` picked last for ``name`` (else ``None``) with a SHA-256 digest of its files'
    contents when they total at most ``max_content_bytes``, else of their relative paths and sizes (``digest_of``)."""
    if (root := RESOLVED_ROOTS.get(name)) is None:
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file())[:max_files] if root.is_dir() else []
    total = sum(p.stat().st_size for p in files)
    h = hashlib.sha256()
    kind = "content" if total <= max_content_bytes else "listing"
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + str(p.stat().st_size).encode() + b"\0")
        if kind == "content":  # all files together are at most max_content_bytes: each fits in memory
            h.update(p.read_bytes())
    return {"root": str(root), "files": len(files), "bytes": total, "sha256": h.hexdigest(), "digest_of": kind}
