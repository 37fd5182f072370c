"""Run folders and checkpoints: atomic writes, ``weights_only`` loads that refuse a corrupted file, exact resume
after a kill at any write, and one run per folder (the run lock).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import platform
import random
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable

import filelock
import numpy as np
import torch

from .atomic import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "LOCK_FILE",
    "HOLDER_FILE",
    "METRICS_FILE",
    "check_run_folder",
    "RunLockedError",
    "RunLock",
    "clean_temp_files",
    "read_metrics",
    "write_metrics",
    "verify_zip",
    "repair",
    "check_out_path",
    "CheckpointError",
    "FORMAT",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]


# ----------------------------------------------------------------------------------------------------
# run folders: A training run folder that cannot be silently lost or left stale.
#
# Files: ``config.json``, ``run.json`` (status, provenance), ``metrics.jsonl`` (one line per epoch), ``last.pt``
# and ``best.pt``, plus ``.lock`` while a process works on the folder. Guarantees (tested by fault injection in
# ``tests/test_run_folder.py``):
#
# - **One writer.** :class:`RunLock` holds an exclusive ``filelock`` lock on ``.lock`` for the whole run; a second
#   process on the same folder fails at once with :class:`RunLockedError`, naming the holder (pid, host, start).
# - **last.pt is the commit point of an epoch.** Each epoch writes ``last.pt``, then ``best.pt`` (when the epoch
#   improved: a copy of ``last.pt``), then ``metrics.jsonl``, each atomically. ``last.pt`` carries the history and
#   the best epoch, so :func:`repair` rebuilds ``metrics.jsonl`` and ``best.pt`` from it after a kill at any point.
# - **Temp files** of writes a kill interrupted (``.<name>.*.tmp``) are removed on the next start or resume.
# - **Integrity.** :func:`verify_zip` checks every CRC of a checkpoint before it is unpickled.

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"
METRICS_FILE = "metrics.jsonl"


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


def check_out_path(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path; refuses an empty or whitespace-only path (it would mean the current folder)."""
    text = os.fspath(out)
    if not text.strip():
        raise ValueError(f"out={text!r}: expected a run folder path, not an empty string (it would write into {Path.cwd()})")
    return Path(text)


class RunLock:
    """Exclusive, non-blocking lock of a run folder (:class:`filelock.FileLock` on ``<out>/.lock``).

    ``filelock`` picks the platform's lock (``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows, a
    lock file where neither works), so the lock dies with its process (a SIGKILLed run leaves no stale lock) wherever
    the OS allows. The holder (pid, host, start time, command) is recorded beside it in ``.lock.holder`` for the
    error message of a second process; :meth:`release` removes both. Keep a reference: a dropped lock is released.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.holder = self.out / HOLDER_FILE
        self._lock = filelock.FileLock(self.path, timeout=0, thread_local=False)

    def acquire(self) -> "RunLock":
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise RunLockedError(f"run folder {self.out} is in use by {self._holder()}; wait for that run to "
                                 "finish or choose another --out") from None
        info = {"pid": os.getpid(), "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv)[:300]}
        self.holder.write_text(json.dumps(info) + "\n")
        return self

    def _holder(self) -> str:
        for _ in range(20):  # the holder writes its record just after acquiring: give a racing winner 1 s
            try:
                info = json.loads(self.holder.read_text())
                return f"pid {info['pid']} on {info['host']} since {info['started']} ({info['command']})"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return "another process"

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        self.holder.unlink(missing_ok=True)
        if isinstance(self._lock, filelock.UnixFileLock):
            self.path.unlink(missing_ok=True)  # while still held: a waiter on this inode sees it unlinked and retries
        self._lock.release()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def clean_temp_files(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files of interrupted atomic writes (``.<name>.<random>.tmp``); call under the lock."""
    removed = []
    for p in Path(out).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def read_metrics(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``; a bad line raises naming file and line."""
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {out}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}, line {n}: not a JSON record ({e}); `--resume` rebuilds the file from last.pt") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _metrics_text(history: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in history)


def write_metrics(out: str | os.PathLike[str], history: Iterable[dict[str, Any]]) -> Path:
    """Write the whole history as ``metrics.jsonl`` (atomically)."""
    return atomic_write_text(Path(out) / METRICS_FILE, _metrics_text(history))


def verify_zip(path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming the file when it is not a complete zip archive or a member's CRC is wrong."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"checkpoint {path} is truncated or corrupt (not a complete zip archive: {e})") from None
    if bad is not None:
        raise ValueError(f"checkpoint {path} is corrupt: CRC check failed for {bad} (the file changed after it was written)")


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """``dst`` := a byte copy of ``src``, atomically."""
    return atomic_write(dst, lambda p: shutil.copyfile(src, p))


def repair(out: str | os.PathLike[str], last: dict[str, Any], load: Any) -> list[str]:
    """Bring ``metrics.jsonl`` and ``best.pt`` in line with ``last.pt`` (the commit point); returns what was fixed.

    ``last`` is the loaded ``last.pt``; ``load(path)`` loads (and verifies) another checkpoint. ``best.pt`` is
    rebuilt from ``last.pt`` when the last epoch was the best one; an older best epoch's ``best.pt`` cannot be
    rebuilt, so its absence is an error (it can only happen when something outside the run removed it).
    """
    out = Path(out)
    fixed: list[str] = []
    history = list(last.get("history", []))
    metrics = out / METRICS_FILE
    want = _metrics_text(history)
    if not metrics.is_file() or metrics.read_text() != want:
        write_metrics(out, history)
        fixed.append(f"{METRICS_FILE} rebuilt from last.pt ({len(history)} epochs)")
    epoch, best_epoch = int(last["epoch"]), int(last.get("best_epoch", 0))
    best = out / "best.pt"
    have = None
    if best.is_file():
        try:
            have = int(load(best)["epoch"])
        except (ValueError, KeyError):
            have = None  # corrupt: rebuild below if we can
    if best_epoch and have != best_epoch:
        if best_epoch == epoch:
            copy_checkpoint(out / "last.pt", best)
            fixed.append(f"best.pt rebuilt from last.pt (epoch {epoch}; it held {have if have else 'nothing'})")
        else:
            raise ValueError(
                f"run {out}: best.pt should hold epoch {best_epoch} but holds {have if have else 'nothing'}, and only "
                f"last.pt (epoch {epoch}) is left to rebuild from; something outside the run changed the folder"
            )
    return fixed


def check_run_folder(out: Path, resume: bool) -> bool:
    """Refuse a bad run folder before anything is created or written; returns whether to resume.

    ``resume`` on a folder whose run died before its first epoch (no ``last.pt``, no ``metrics.jsonl``) means
    "start it afresh" (returns False)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} exists and is not a folder; expected a (new or run) folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"out={str(out)!r}: {parent} is a file, not a folder")
            break
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            if out.is_dir() and not (out / METRICS_FILE).exists():
                return False  # the run died before its first epoch: nothing to resume, start it afresh
            raise FileNotFoundError(f"cannot resume: {last} does not exist (start a new run without --resume)")
    elif out.is_dir() and ((out / METRICS_FILE).exists() or last.exists()):
        raise ValueError(
            f"out={str(out)!r} already holds a run ({METRICS_FILE} / last.pt); pass resume=True (--resume) "
            "to continue it or choose a new folder"
        )
    return resume


# ----------------------------------------------------------------------------------------------------
# checkpoint: Safe training checkpoints: atomic writes, ``weights_only`` loads, full RNG state.
#
# A checkpoint is a plain dict of tensors and builtin types (``format``, ``version``,
# ``epoch``, ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``best_acc``, ``config``,
# ``history``, ``rng``), so :func:`torch.load` with ``weights_only=True`` restores it and
# a crafted pickle cannot execute code.

FORMAT = "dta_lib-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "model", "config")


class CheckpointError(ValueError):
    """A file that is not a loadable dta_lib checkpoint (message names the file)."""


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
