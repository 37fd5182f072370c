"""What a run records about where it ran (``run.json``'s ``hardware``): CPU, GPU, versions, git commit."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ..paths import CHECKOUT
from .device import cpu_has_native_bf16

__all__ = ["run_metadata", "git", "git_commit", "git_dirty", "cpu_model"]


def git(*args: str) -> str | None:
    """``git <args>`` run in the checkout ``dta_lib`` is imported from: stdout, or ``None`` on failure or for an
    installed copy (whose folder may sit inside some unrelated repository)."""
    if CHECKOUT is None:
        return None
    try:
        out = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """The commit of the checkout ``dta_lib`` is imported from, ``"unknown"`` for an installed copy."""
    return git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> bool | None:
    """Whether ``dta_lib/`` has uncommitted changes (``None`` outside a checkout)."""
    status = git("status", "--porcelain", "--", "dta_lib")
    return None if status is None else bool(status)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(device: torch.device, world_size: int) -> dict[str, Any]:
    """Hardware and software of this run (recorded in ``run.json``)."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ATen kernels this run used
        "native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "world_size": world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "hostname": platform.node(),
        "command": " ".join(sys.argv),
    }

