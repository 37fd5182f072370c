"""Run folders and checkpoints: one writer per folder (:class:`RunLock`), ``last.pt`` as each epoch's commit point
(:func:`repair` rebuilds ``best.pt`` and ``metrics.jsonl`` from it after a kill at any write), and checkpoints that
are plain dicts of tensors and builtins, CRC-checked and loaded with ``weights_only=True`` (a crafted pickle runs no
code). The guarantees and their fault-injection tests: docs/training.md, "Guarantees of a run folder".
"""
from __future__ import annotations

import contextlib
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
from .paths import now

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"
METRICS_FILE = "metrics.jsonl"


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Exclusive, non-blocking lock of a run folder (:class:`filelock.FileLock` on ``<out>/.lock``), freed when its
    process dies or it is dropped. ``.lock.holder`` names the holder in a second process's error; :meth:`acquire`
    removes temp files (``.<name>.<random>.tmp``) a killed run left; :meth:`release` removes both lock files."""

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
        info = {"pid": os.getpid(), "host": platform.node(), "started": now(),
                "command": " ".join(sys.argv)[:300]}
        self.holder.write_text(json.dumps(info) + "\n")
        for p in self.out.glob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
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


def repair(out: str | os.PathLike[str], last: dict[str, Any]) -> list[str]:
    """Bring ``metrics.jsonl`` and ``best.pt`` in line with ``last`` (the loaded ``last.pt``); returns what was fixed.
    Only a ``best.pt`` of the last epoch can be rebuilt: a missing older one is an error."""
    out, fixed, history = Path(out), [], list(last["history"])
    metrics = out / METRICS_FILE
    if not metrics.is_file() or metrics.read_text() != _metrics_text(history):
        write_metrics(out, history)
        fixed.append(f"{METRICS_FILE} rebuilt from last.pt ({len(history)} epochs)")
    epoch, best_epoch, best, have = last["epoch"], last["best_epoch"], out / "best.pt", None
    if best.is_file():
        with contextlib.suppress(ValueError):  # corrupt: rebuild below if we can
            have = int(load_checkpoint(best)["epoch"])
    if best_epoch and have != best_epoch:
        if best_epoch != epoch:
            raise ValueError(
                f"run {out}: best.pt should hold epoch {best_epoch} but holds {have if have else 'nothing'}, and only "
                f"last.pt (epoch {epoch}) is left to rebuild from; something outside the run changed the folder")
        atomic_write(best, lambda p: shutil.copyfile(out / "last.pt", p))  # a byte copy, atomically
        fixed.append(f"best.pt rebuilt from last.pt (epoch {epoch}; it held {have if have else 'nothing'})")
    return fixed


def check_run_folder(out: str | os.PathLike[str], resume: bool) -> tuple[Path, bool]:
    """Refuse a bad run folder before anything is created or written; returns ``(out, whether to resume)``: False
    for ``resume`` on a folder whose run died before its first epoch (no ``last.pt``, no ``metrics.jsonl``)."""
    text = os.fspath(out)
    if not text.strip():
        raise ValueError(f"out={text!r}: expected a run folder path, not an empty string (it would write into {Path.cwd()})")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} exists and is not a folder; expected a (new or run) folder")
    parent = next((q for q in out.parents if q.exists()), None)  # the nearest existing one
    if parent is not None and not parent.is_dir():
        raise ValueError(f"out={str(out)!r}: {parent} is a file, not a folder")
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            if out.is_dir() and not (out / METRICS_FILE).exists():
                return out, False  # the run died before its first epoch: nothing to resume, start it afresh
            raise FileNotFoundError(f"cannot resume: {last} does not exist (start a new run without --resume)")
    elif out.is_dir() and ((out / METRICS_FILE).exists() or last.exists()):
        raise ValueError(
            f"out={str(out)!r} already holds a run ({METRICS_FILE} / last.pt); pass resume=True (--resume) "
            "to continue it or choose a new folder")
    return out, resume


# checkpoint files

FORMAT = "dta_lib-checkpoint"
VERSION = 1
#: the file's layout, then what the training loop writes (:func:`dta_lib.train.train`)
REQUIRED_KEYS = ("format", "version", "epoch", "model", "config", "optimizer", "scheduler", "scaler", "best_acc",
                 "best_epoch", "history", "rng", "data_info", "world_size", "autocast_dtype", "wall_seconds")


class CheckpointError(ValueError):
    """A file that is not a loadable dta_lib checkpoint (message names the file)."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save ``state`` (tensors and builtin types only) atomically, adding ``format`` / ``version``. The folder must
    exist: one deleted under a running run is an error, not made again without its lock."""
    if not Path(path).parent.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {path}: folder {Path(path).parent} does not exist")
    buf = io.BytesIO()  # serialise in memory: a failed file write then raises the OS error (disk full, EFBIG)
    torch.save({"format": FORMAT, "version": VERSION, **state}, buf)  # not torch's opaque "unexpected pos"
    return atomic_write_bytes(path, buf.getbuffer())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``torch.load(weights_only=True)``: :class:`CheckpointError` naming the file
    for a crafted pickle, a truncated or corrupt file (every zip member's CRC is checked first), or a foreign file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (not a complete zip archive: {e})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: CRC check failed for {bad} (the file changed after it "
                              "was written)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load checkpoint {path}: it contains objects other than tensors and plain "
            f"data (a crafted or foreign pickle; weights_only=True). Detail: {_first_line(e)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt "
                              f"({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a dta_lib training checkpoint (expected a dict with format={FORMAT!r}, "
            f"got {type(obj).__name__}{' with keys ' + str(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else ''})")
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {obj.get('version')!r}; this dta_lib reads {VERSION}")
    if missing := [k for k in REQUIRED_KEYS if k not in obj]:
        raise CheckpointError(f"checkpoint {path} misses keys {missing}")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU + CUDA) and an optional generator's state, loadable with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(), "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []}
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
