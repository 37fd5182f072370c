"""The time-step study: accuracy per T over seeds, seconds per epoch, and the peak memory of one BPTT step
measured in a fresh subprocess (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..engine.config import make_config
from .stats import _check_columns, format_mean_std

__all__ = [
    "MALLOC_ENV",
    "measure_step_memory",
    "time_step_costs",
    "time_step_table",
]

#: extra environment of the measuring subprocess (tests may pin glibc's mmap threshold here)
MALLOC_ENV: dict[str, str] = {}


def measure_step_memory(specs: Sequence[dict[str, Any]], timeout: float = 600.0) -> pd.DataFrame:
    """Peak resident memory of one training step (forward + BPTT backward + SGD step) per config.

    Each spec is ``make_config`` keyword arguments (``dataset``, ``preset``, overrides).
    Runs :mod:`dta_lib.engine.step_memory` in one fresh Python subprocess (so the notebook's own memory does not count): per
    spec it builds the model and a random batch of the config's shape, runs one warm-up step,
    returns freed heap to the OS (``malloc_trim``), resets Linux's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), runs one more step
    and reads ``VmHWM``. ``step_mib`` = peak minus the RSS just before the step, i.e. the
    activations kept for BPTT, gradients and temporaries; ``peak_rss_mib`` is the whole process.
    ``step_cpu_s``: CPU (process) time of one step, mean of three, one torch thread: unlike wall
    time it hardly depends on other jobs sharing the machine.
    Linux only (``FileNotFoundError`` elsewhere).
    """
    if not specs:
        raise ValueError("measure_step_memory: expected at least one config spec, got none")
    if not Path("/proc/self/clear_refs").exists():
        raise FileNotFoundError("/proc/self/clear_refs not found: peak-RSS reset needs Linux >= 4.0")
    for s in specs:
        make_config(**s)  # bad specs fail here, with the config's own message
    # default glibc allocator: the footprint a training process really has. With MALLOC_ENV =
    # {"MALLOC_MMAP_THRESHOLD_": "131072"} RSS follows live tensors more closely (about 2/3 of the
    # default's step memory on the cpu preset) but each step costs about twice the CPU time (mmap churn).
    env = dict(os.environ, OMP_NUM_THREADS="1", **MALLOC_ENV)
    proc = subprocess.run([sys.executable, "-m", "dta_lib.engine.step_memory", json.dumps(list(specs))], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement subprocess failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    return pd.DataFrame(json.loads(proc.stdout.strip().splitlines()[-1]))


def time_step_table(df: pd.DataFrame, memory: pd.DataFrame | None = None, metric: str = "best_test_acc") -> pd.DataFrame:
    """Per T: accuracy mean +- std over seeds, seconds per epoch (train + test, wall), and step memory if given."""
    _check_columns(df, ["time_steps", "seed", metric, "train_seconds", "epochs"], "time_step_table")
    rows = []
    for t, sub in df.groupby("time_steps", sort=True):
        std = sub[metric].std(ddof=1) if len(sub) > 1 else math.nan
        rows.append({"time_steps": int(t), "seeds": len(sub), f"{metric}_mean": sub[metric].mean(),
                     f"{metric}_std": std, metric: format_mean_std(sub[metric].mean(), std),
                     "seconds_per_epoch": float((sub["train_seconds"] / sub["epochs"]).mean())})
    out = pd.DataFrame(rows)
    if memory is not None and len(memory):
        cols = [c for c in ("time_steps", "step_mib", "peak_rss_mib", "step_cpu_s") if c in memory.columns]
        out = out.merge(memory[cols], on="time_steps", how="left")
    return out


def time_step_costs(dataset: str, width: float, time_steps: Sequence[int], attention: str = "dta") -> pd.DataFrame:
    """Per T, what the model costs independently of its weights: parameters and dense MACs per image.

    Columns: ``parameters`` and ``dta_parameters`` (the attention block alone), ``dense_macs`` and ``dta_macs``
    (multiply-accumulates of one image if every layer ran densely; the backbone's convs run T times, while T-XA's
    and T-NA's layers run once on D = T*C channels, so T-NA's 1x1 convs grow with T^2: ``dta_macs`` and
    ``dta_parameters`` are not linear in T). Counted by :func:`dta_lib.analysis.profile` on one zero image of the
    dataset's shape, with the model built by :func:`dta_lib.ms_resnet18` at ``width`` (the counts depend on shapes only,
    not on the weights).
    """
    import torch

    from ..analysis import profile
    from ..data import dataset_info
    from ..models import ms_resnet18
    from ..models.params import count_parameters

    info = dataset_info(dataset)
    bad = [t for t in time_steps if int(t) < 1]
    if bad or not time_steps:
        raise ValueError(f"time_steps must be a non-empty list of integers >= 1, got {list(time_steps)}")
    rows = []
    for t in time_steps:
        model = ms_resnet18(num_classes=info.num_classes, time_steps=int(t), attention=attention,
                            in_channels=info.in_channels, width=width)
        x = torch.zeros(1, info.in_channels, info.image_size, info.image_size)
        table = profile(model, x).energy_table(elementwise=True)
        rows.append({
            "time_steps": int(t),
            "parameters": count_parameters(model),
            "dta_parameters": count_parameters(model.dta) if model.dta is not None else 0,
            "dense_macs": float(table["dense_macs"].sum()),
            "dta_macs": float(table.loc[table["group"] == "DTA", "dense_macs"].sum()),
        })
    return pd.DataFrame(rows)
