"""A training run folder that cannot be silently lost or left stale.

Files: ``config.json``, ``run.json`` (status, provenance), ``metrics.jsonl`` (one line per epoch), ``last.pt``
and ``best.pt``, plus ``.lock`` while a process works on the folder. Guarantees (tested by fault injection in
``tests/test_engine_runfolder.py``):

- **One writer.** :class:`RunLock` holds an exclusive ``filelock`` lock on ``.lock`` for the whole run; a second
  process on the same folder fails at once with :class:`RunLockedError`, naming the holder (pid, host, start).
- **last.pt is the commit point of an epoch.** Each epoch writes ``last.pt``, then ``best.pt`` (when the epoch
  improved: a copy of ``last.pt``), then ``metrics.jsonl``, each atomically. ``last.pt`` carries the history and
  the best epoch, so :func:`repair` rebuilds ``metrics.jsonl`` and ``best.pt`` from it after a kill at any point.
- **Temp files** of writes a kill interrupted (``.<name>.*.tmp``) are removed on the next start or resume.
- **Integrity.** :func:`verify_zip` checks every CRC of a checkpoint before it is unpickled.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable

import filelock

from ..atomic import atomic_write, atomic_write_text

__all__ = [
    "LOCK_FILE", "HOLDER_FILE", "METRICS_FILE", "check_run_folder", "RunLockedError", "RunLock", "clean_temp_files", "read_metrics",
    "write_metrics", "verify_zip", "repair", "check_out_path",
]

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
