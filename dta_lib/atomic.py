"""Atomic file writes: nothing half-written is ever visible at the final path.

Every writer in ``dta_lib`` goes through :func:`atomic_write`: a temp file in the same folder, fsynced, given a new
file's usual mode (``0o666 & ~umask``, not ``mkstemp``'s ``0o600``), then ``os.replace``d onto the target. On any
error the temp file is removed and the previous file left untouched (tests/test_run_folder.py kills runs in
:func:`_publish`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _publish(tmp: Path, path: Path) -> None:
    """Give the complete temp file a new file's usual mode and move it onto ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` (e.g. ``torch.save``, ``fig.savefig``), then publish it as ``path`` (parent folder
    created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
