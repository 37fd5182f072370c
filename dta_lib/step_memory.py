"""``python -m dta_lib.step_memory SPECS_JSON``: peak resident memory of one BPTT training step per config.

Run in a fresh process by :func:`dta_lib.studies.measure_step_memory`, so the caller's own memory does not count
(the method: docs/experiments.md, "Memory method"). Prints one JSON list (one object per spec, ``make_config``
keyword arguments) on the last line of stdout. Linux only.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import time
from typing import Any

import torch
import torch.nn.functional as F

from .train import build_model, get_data_info, make_config

__all__ = ["vm_status", "measure", "main"]


def vm_status() -> dict[str, int]:
    """``VmHWM`` (peak) and ``VmRSS`` of this process in KiB, from ``/proc/self/status``."""
    with open("/proc/self/status") as f:
        d = dict(line.split(":", 1) for line in f if line.startswith("Vm"))
    return {k: int(d[k].split()[0]) for k in ("VmHWM", "VmRSS")}


def measure(spec: dict[str, Any]) -> dict[str, float]:
    """One spec: RSS before the step, the step's peak, their difference (MiB) and the CPU seconds per step."""
    cfg = make_config(**spec)
    torch.set_num_threads(cfg.threads or 1)
    torch.manual_seed(0)
    info = get_data_info(cfg.dataset)
    model = build_model(cfg, info).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    shape = ((cfg.batch_size, cfg.time_steps, info.in_channels, info.image_size, info.image_size) if info.is_event
             else (cfg.batch_size, info.in_channels, info.image_size, info.image_size))
    x = torch.rand(shape)
    y = torch.randint(0, info.num_classes, (cfg.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x).mean(1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: optimizer buffers, gradients, allocator pools
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the step's peak is not hidden in it
    before = vm_status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    c0 = time.process_time()
    step()
    s = vm_status()
    for _ in range(2):  # two more steps for the CPU time (process time: insensitive to other jobs' load)
        step()
    return {"time_steps": cfg.time_steps, "rss_before_mib": before / 1024, "peak_rss_mib": s["VmHWM"] / 1024,
            "step_mib": (s["VmHWM"] - before) / 1024, "step_cpu_s": (time.process_time() - c0) / 3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dta_lib.step_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", metavar="SPECS_JSON", help="a JSON list of make_config keyword arguments")
    specs = json.loads(ap.parse_args(argv).specs)
    print(json.dumps([measure(spec) for spec in specs]))  # each spec's model is freed with its frame
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
