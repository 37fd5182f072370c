"""Timing and memory measurement shared by the races: interleaved repetitions (A, B, A, B, ...), the peak of
bytes allocated above the start of a call (CUDA allocator stats; on CPU the profiler's allocation events)."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Callable, Iterator

import torch

__all__ = [
    "PRECISIONS",
    "peak_added_bytes",
    "race",
]

PRECISIONS = ("fp32", "bf16")


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def _quiet_profiler() -> Iterator[None]:
    """Silence kineto's stderr chatter (it writes to fd 2 directly)."""
    logging.getLogger("torch.profiler").setLevel(logging.ERROR)
    fd = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def peak_added_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by PyTorch during ``fn()`` above what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    events = [e for e in events if e.device_type() == torch.autograd.DeviceType.CPU]
    running = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        running += e.nbytes()
        peak = max(peak, running)
    return int(peak)


def race(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate, interleaved ``repeats`` times after ``warmup`` rounds."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times
