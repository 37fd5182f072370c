"""Mixed precision on CPU: which CPUs run bf16 natively, and does bf16 training keep fp32's accuracy?

The trainer's ``precision="auto"`` picks bf16 autocast on a CPU only when :func:`cpu_has_native_bf16`
says the CPU has bf16 instructions (AVX512-BF16 or AMX). Without them oneDNN emulates bf16 and a step is
several times *slower* than fp32. The accuracy side of that choice is the ``precision`` study: the same
runs in fp32 and in bf16 autocast, paired by seed (:func:`precision_study`, :func:`precision_verdict`;
rendered by notebook 11). The LIF membrane and threshold comparison stay fp32 under autocast
(:mod:`dta_lib.kernels`).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import pandas as pd

from .runner import run_study
from .stats import exceeds_noise, paired_differences, summarize

__all__ = [
    "PRECISION_VARIANTS",
    "precision_study",
    "precision_verdict",
]

#: the two arms of the study; everything else comes from the preset and recipe
PRECISION_VARIANTS = ({"precision": "fp32"}, {"precision": "bf16"})


def precision_study(
    dataset: str,
    preset: str,
    seeds: Iterable[int],
    root: str | os.PathLike[str] | None = None,
    reuse: bool = True,
    **common: Any,
) -> pd.DataFrame:
    """fp32 and bf16-autocast runs of the preset's default model, one row per (precision, seed)."""
    return run_study("precision", dataset, preset, list(PRECISION_VARIANTS), seeds, root=root, reuse=reuse, **common)


def precision_verdict(runs: pd.DataFrame, metric: str = "best_test_acc") -> dict[str, Any]:
    """Mean +- std per precision and the seed-paired difference fp32 - bf16 with its noise verdict.

    ``within_noise`` is True when the 95 % t-interval of the paired difference includes 0
    (:func:`dta_lib.experiments.exceeds_noise`); it needs at least two seeds (else None).
    """
    missing = {"precision", "seed", metric} - set(runs.columns)
    if missing:
        raise ValueError(f"precision_verdict needs columns {sorted(missing)}; got {sorted(runs.columns)}")
    if set(runs["precision"]) != {"fp32", "bf16"}:
        raise ValueError(f"precision_verdict needs fp32 and bf16 runs, got precisions {sorted(set(runs['precision']))}")
    table = summarize(runs, ["precision"], metric)
    diff = paired_differences(runs, "precision", "fp32", metric).iloc[0]
    n = int(diff["n_pairs"])
    return {
        "table": table,
        "diff_mean": float(diff["diff_mean"]),
        "diff_std": float(diff["diff_std"]),
        "n_pairs": n,
        "within_noise": None if n < 2 else not exceeds_noise(float(diff["diff_mean"]), float(diff["diff_std"]), n),
    }
