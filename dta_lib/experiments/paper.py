"""The paper's numbers (headline top-1 accuracies, ablation gaps) and the paper-vs-ours join."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .stats import format_mean_std

__all__ = [
    "PAPER_RESULTS",
    "PAPER_ABLATION_GAP",
    "paper_vs_ours",
    "PAPER_T_GAP",
    "PAPER_DVS_GAP",
    "TRAIN_IMAGES",
    "training_macs_per_image",
    "headline_table",
]

#: Headline top-1 accuracies from the paper summary (docs/reference.md, "Headline results").
PAPER_RESULTS = pd.DataFrame(
    [
        ("cifar10", 6, "dta", 96.73),
        ("cifar100", 6, "dta", 81.16),
        ("cifar100", 4, "dta", 79.94),
        ("imagenet", 6, "dta", 71.29),
        ("cifar10-dvs", 10, "dta", 81.3),
        ("cifar10-dvs", 10, "none", 80.4),
    ],
    columns=["dataset", "time_steps", "attention", "paper_top1"],
)


#: CIFAR10 ablation: T-XA only and T-NA only trail full DTA by about 0.4-0.8 points.
PAPER_ABLATION_GAP = (0.4, 0.8)


def paper_vs_ours(ours: pd.DataFrame, keys: Sequence[str] = ("dataset", "time_steps", "attention")) -> pd.DataFrame:
    """Join our summarised runs with :data:`PAPER_RESULTS` on ``keys`` (outer: shows both sides' gaps)."""
    return PAPER_RESULTS.merge(ours, on=list(keys), how="outer")


#: CIFAR100 T=4 -> T=6 (paper, docs/reference.md "Headline results"): 79.94 -> 81.16
PAPER_T_GAP = ("cifar100", 4, 6)


#: CIFAR10-DVS T=10: DTA 81.3 vs baseline 80.4 (paper summary)
PAPER_DVS_GAP = ("cifar10-dvs", 10)


#: training images of the paper's datasets (the recipes' ``subset=None``), for the compute estimate
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167, "cifar10-dvs": 9_000}


def training_macs_per_image(dataset: str, time_steps: int, attention: str = "dta") -> int:
    """Dense MACs of one forward pass of the paper-size model of ``dataset`` on one image, all ``T`` steps
    (counted by ``torch.utils.flop_counter`` on the meta device: nothing is allocated or computed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..data import dataset_info
    from ..engine import build_model, get_data_info
    from ..engine.config import make_config

    cfg = make_config(dataset, "paper", time_steps=time_steps, attention=attention)
    info, di = get_data_info(dataset), dataset_info(dataset)
    shape = (1, time_steps, info.in_channels, di.image_size, di.image_size) if info.is_event else (
        1, info.in_channels, di.image_size, di.image_size)
    with torch.device("meta"):
        model = build_model(cfg, info)
        x = torch.empty(shape)
    with FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops()) // 2


def headline_table(runs: pd.DataFrame, sustained_tflops: float, metric: str = "best_test_acc") -> pd.DataFrame:
    """Every headline number of the paper beside ours, with the command that reproduces it and a compute estimate.

    ``ours`` is mean +- std over seeds of finished runs of that dataset, ``T`` and attention, else "not run at this
    scale". The estimate is ``6 x MACs/image x images x epochs / sustained_tflops`` (forward = 2 FLOPs per MAC,
    backward about twice the forward): an **assumption-based estimate**, not a measurement; the sustained
    throughput of a spiking network (element-wise LIF steps, memory-bound) is far below a GPU's peak.
    """
    from ..engine.config import make_config

    if not sustained_tflops > 0:
        raise ValueError(f"sustained_tflops must be > 0, got {sustained_tflops!r}")
    rows = []
    for _, p in PAPER_RESULTS.iterrows():
        ds, t, att = p["dataset"], int(p["time_steps"]), p["attention"]
        mine = runs[(runs["dataset"] == ds) & (runs["time_steps"] == t) & (runs["attention"] == att)] \
            if not runs.empty and {"dataset", "time_steps", "attention"} <= set(runs.columns) else runs.iloc[0:0]
        cfg = make_config(ds, "paper", time_steps=t, attention=att)
        macs = training_macs_per_image(ds, t, att)
        flops = 6.0 * macs * TRAIN_IMAGES[ds] * cfg.epochs
        rows.append({
            "dataset": ds, "T": t, "attention": att, "paper top-1 (%)": float(p["paper_top1"]),
            "ours (%)": format_mean_std(mine[metric].mean(), mine[metric].std(ddof=1) if len(mine) > 1 else math.nan)
            if len(mine) else "not run at this scale",
            "command": f"python -m dta_lib train --dataset {ds} --preset paper --attention {att} -T {t} "
                       f"--out runs/{ds}-{att}-T{t}",
            "epochs": cfg.epochs, "train images": TRAIN_IMAGES[ds], "GMACs / image": round(macs / 1e9, 2),
            f"GPU hours at {sustained_tflops:g} TFLOP/s (estimate)": round(flops / (sustained_tflops * 1e12) / 3600, 1),
        })
    return pd.DataFrame(rows)
