"""Safe training checkpoints: atomic writes, ``weights_only`` loads, full RNG state.

A checkpoint is a plain dict of tensors and builtin types (``format``, ``version``,
``epoch``, ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``best_acc``, ``config``,
``history``, ``rng``), so :func:`torch.load` with ``weights_only=True`` restores it and
a crafted pickle cannot execute code.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT = "dta_lib-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "model", "config")


class CheckpointError(ValueError):
    """A file that is not a loadable dta_lib checkpoint (message names the file)."""


from ..atomic import atomic_write_bytes, atomic_write_text  # noqa: E402  (re-exported)
from .runfolder import verify_zip  # noqa: E402


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save ``state`` (tensors and builtin types only) atomically; adds ``format`` / ``version``.

    Raises ``ValueError`` if ``state`` misses a required key or the parent folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {path}: folder {path.parent} does not exist")
    missing = [k for k in REQUIRED_KEYS if k not in state and k not in ("format", "version")]
    if missing:
        raise ValueError(f"checkpoint state for {path} misses keys {missing}")
    payload = {"format": FORMAT, "version": VERSION, **state}
    buf = io.BytesIO()  # serialise in memory: a failed file write then raises the OS error (disk full, EFBIG)
    torch.save(payload, buf)  # rather than torch's opaque "unexpected pos" from its zip writer
    atomic_write_bytes(path, buf.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check its layout.

    Raises ``FileNotFoundError`` for a missing path and :class:`CheckpointError`
    (a ``ValueError``) naming the file for a crafted pickle, a truncated or corrupt
    file (every zip member's CRC is checked first: a flipped bit is refused, not loaded
    as different weights), or a file that is not a dta_lib checkpoint. No code from the file runs.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        verify_zip(path)  # every member's CRC: a flipped bit would otherwise load as different weights
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load checkpoint {path}: it contains objects other than tensors and plain "
            f"data (a crafted or foreign pickle; weights_only=True). Detail: {_first_line(e)}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({type(e).__name__}: {_first_line(e)})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a dta_lib training checkpoint (expected a dict with format={FORMAT!r}, "
            f"got {type(obj).__name__}{' with keys ' + str(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else ''})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path} misses keys {missing}")
    if obj["version"] != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {obj['version']!r}; this dta_lib reads {VERSION}")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


# ---------------------------------------------------------------------- RNG state
def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU + every CUDA device) and an optional generator's state,
    as tensors and builtin types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
