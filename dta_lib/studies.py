"""What the recorded runs say, study by study: statistics (mean +- std, paired differences, t-intervals,
Bonferroni corrections, minimum detectable effects), the paper's numbers, and the tables and verdicts of the ablation
(06), time steps (07), event data (08), surrogate width (09), precision (11), energy (12) and the report (10).
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader

from .analysis import E_AC_PJ, E_MAC_PJ, energy_totals
from .checkpoint import read_metrics
from .runs import AUGMENTED_TRAIN_LABEL, STUDIES, Study, load_run, run_dir, run_one, run_study, variant_key
from .train import PROBE_FIELDS, RUN_FREE_FIELDS, TrainConfig, config_diff, make_config

__all__ = [
    "summarize",
    "paired_differences",
    "t_critical",
    "t_interval",
    "bonferroni_interval",
    "exceeds_noise",
    "min_detectable_effect",
    "format_mean_std",
    "mean_std_table",
    "paired_verdicts",
    "PAPER_RESULTS",
    "PAPER_ABLATION_GAP",
    "paper_vs_ours",
    "PAPER_T_GAP",
    "PAPER_DVS_GAP",
    "TRAIN_IMAGES",
    "training_macs_per_image",
    "headline_table",
    "ATTENTION_LABELS",
    "ablation_summary",
    "ablation_paired",
    "noise_verdicts",
    "MALLOC_ENV",
    "measure_step_memory",
    "time_step_costs",
    "time_step_table",
    "EVENT_COUNTERPART",
    "event_dataset",
    "cifar10_dvs_available",
    "clean_train_accuracy",
    "train_test_gaps",
    "TIME_ORDERS",
    "TIME_ORDER_FILE",
    "time_order_table",
    "time_order_verdicts",
    "time_order_control",
    "OVERFIT_GAP",
    "dvs_table",
    "dvs_verdicts",
    "RELEASE_WIDTH",
    "VANISHING_RATIO",
    "EXPLODING_RATIO",
    "CHANCE_MARGIN",
    "grad_norm_curves",
    "layer_order",
    "gradient_ratio",
    "width_table",
    "width_differences",
    "diagnose_widths",
    "width_verdicts",
    "PRECISION_VARIANTS",
    "precision_study",
    "precision_verdict",
    "find_trained_run",
    "trained_run",
    "energy_summary",
    "extrapolate_energy",
    "dta_cost",
    "runs_provenance",
    "firing_rates_by_model",
    "energy_per_layer",
    "load_study_runs",
    "study_summary",
    "paper_gaps",
    "paper_gaps_by_preset",
    "study_wall_seconds",
    "provenance",
    "describe_runs",
    "recorded_hardware",
    "sync_recorded",
]


# ----------------------------------------------------------------------------------------------------
# stats: Statistics for a few seeds: mean +- sample std, paired differences with t-based intervals, the minimum
# detectable effect, and whether a difference exceeds the seed noise.

def summarize(df: pd.DataFrame, by: Sequence[str], metric: str = "best_test_acc") -> pd.DataFrame:
    """Mean, sample std and count of ``metric`` per group (std is NaN for a single seed)."""
    g = df.groupby(list(by), sort=False)[metric]
    out = g.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{metric}_mean", "std": f"{metric}_std", "count": "n"})


def paired_differences(
    df: pd.DataFrame, by: str, baseline: str, metric: str = "best_test_acc", pair_on: str = "seed"
) -> pd.DataFrame:
    """Per variant of ``by``: mean and std over ``pair_on`` of (baseline - variant).

    Positive means the baseline (e.g. full DTA) is better. Only pairs present for both are used.
    """
    base = df[df[by] == baseline].set_index(pair_on)[metric]
    rows = []
    for variant, sub in df[df[by] != baseline].groupby(by, sort=False):
        d = (base - sub.set_index(pair_on)[metric]).dropna()
        rows.append(
            {by: variant, "vs": baseline, "diff_mean": d.mean(), "diff_std": d.std(ddof=1) if len(d) > 1 else math.nan,
             "n_pairs": len(d)}
        )
    return pd.DataFrame(rows)


def t_critical(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value for the mean of ``n`` paired differences (``n - 1`` degrees of freedom):
    4.30 at n = 3, 2.78 at n = 5, 2.26 at n = 10 (the "2 standard errors" rule holds only for large n)."""
    from scipy import stats

    if n < 2:
        raise ValueError(f"a t interval needs at least 2 paired differences, got n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def t_interval(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of a mean of ``n`` values with sample std ``std`` (NaN, NaN if n < 2)."""
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    half = t_critical(n, level) * std / math.sqrt(n)
    return mean - half, mean + half


def bonferroni_interval(mean: float, std: float, n: int, comparisons: int, level: float = 0.95) -> tuple[float, float]:
    """The Bonferroni-corrected t-interval of one of ``comparisons`` paired means: each interval at level
    ``1 - (1 - level) / comparisons``, so that all of them cover their true differences together with probability at
    least ``level`` (with ``comparisons = 1`` it is :func:`t_interval`; NaN, NaN if n < 2).

    E.g. two comparisons of 3 pairs: ``t_{0.9875, 2} = 6.21`` instead of ``t_{0.975, 2} = 4.30``.
    """
    if int(comparisons) != comparisons or comparisons < 1:
        raise ValueError(f"comparisons must be a positive whole number, got {comparisons!r}")
    return t_interval(mean, std, n, 1 - (1 - level) / int(comparisons))


def exceeds_noise(diff_mean: float, diff_std: float, n: int, level: float = 0.95) -> bool | None:
    """True when the t-based ``level`` (95 %) interval of the mean paired difference excludes 0.

    ``None`` ("n/a") with fewer than 2 pairs or an undefined std: seed noise cannot be estimated from one seed.
    """
    if n < 2 or not math.isfinite(diff_std):
        return None
    lo, hi = t_interval(diff_mean, diff_std, n, level)
    return bool(lo > 0 or hi < 0)


def min_detectable_effect(std: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """Smallest true mean paired difference that ``n`` seeds detect with probability ``power`` at ``level``
    (paired t test, two-sided): ``(t_{level} + t_{power}) x std / sqrt(n)`` with ``n - 1`` degrees of freedom."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return math.nan
    return (t_critical(n, level) + float(stats.t.ppf(power, n - 1))) * std / math.sqrt(n)


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"91.23 +- 0.45"`` (or ``"91.23"`` when std is undefined)."""
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def _check_columns(df: pd.DataFrame, need: Sequence[str], what: str) -> None:
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the runs table lacks columns {missing}; expected run_study/load_runs rows")


def mean_std_table(df: pd.DataFrame, by: str, columns: dict[str, str], order: Sequence[Any] | None = None,
                   seeds: str = "seed") -> pd.DataFrame:
    """Per value of ``by``: each ``columns`` entry (header -> column of ``df``) as "mean +- std" over the rows,
    then the number of ``seeds``; rows in ``order`` when given, else in the order ``groupby`` gives.

    The index is ``by`` (``reset_index`` turns it into a column). Std is the sample std (n/a with one seed).
    """
    _check_columns(df, [by, seeds, *columns.values()], "mean_std_table")
    sort = order is None
    out = {}
    for header, col in columns.items():
        g = df.groupby(by, sort=sort)[col]
        out[header] = pd.Series({k: format_mean_std(m, s) for k, m, s in zip(g.mean().index, g.mean(), g.std())})
    out["seeds"] = df.groupby(by, sort=sort)[seeds].count()
    table = pd.DataFrame(out)
    return (table.reindex(list(order)) if order is not None else table).rename_axis(by)


def paired_verdicts(df: pd.DataFrame, by: str, baseline: Any, metric: str = "best_test_acc",
                    level: float = 0.95) -> pd.DataFrame:
    """:func:`paired_differences` with an ``exceeds seed noise`` column (:func:`exceeds_noise` of each row: True,
    False, or None with fewer than two pairs)."""
    diffs = paired_differences(df, by, baseline, metric)
    if diffs.empty:
        return diffs
    diffs["exceeds seed noise"] = [exceeds_noise(m, s, n, level)
                                   for m, s, n in zip(diffs.diff_mean, diffs.diff_std, diffs.n_pairs)]
    return diffs


# ----------------------------------------------------------------------------------------------------
# paper: The paper's numbers (headline top-1 accuracies, ablation gaps) and the paper-vs-ours join.

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

    from .data import dataset_info
    from .train import build_model, get_data_info
    from .train import make_config

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
    from .train import make_config

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


# ----------------------------------------------------------------------------------------------------
# ablation: The ablation (paper Table 3): none / T-XA / T-NA / DTA as mean +- std per variant, and per-seed paired
# differences against full DTA with t-based intervals, beside the paper's CIFAR10 gaps (0.4-0.8 points).

#: display names of the attention variants (paper Table "ablation")
ATTENTION_LABELS = {"none": "none (MS-ResNet)", "txa": "T-XA only", "tna": "T-NA only", "dta": "DTA (T-XA x T-NA)"}


def ablation_summary(df: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """Per attention variant (paper order): mean +- sample std over seeds of ``metric`` and of the final accuracy."""
    _check_columns(df, ["attention", "seed", metric, "final_test_acc"], "ablation_summary")
    order = [a for a in ATTENTION_LABELS if a in set(df["attention"])]
    rows = []
    for a in order:
        sub = df[df["attention"] == a]
        rows.append({
            "attention": a,
            "variant": ATTENTION_LABELS[a],
            "seeds": len(sub),
            f"{metric}_mean": sub[metric].mean(),
            f"{metric}_std": sub[metric].std(ddof=1) if len(sub) > 1 else math.nan,
            metric: format_mean_std(sub[metric].mean(), sub[metric].std(ddof=1) if len(sub) > 1 else math.nan),
            "final_test_acc": format_mean_std(
                sub["final_test_acc"].mean(), sub["final_test_acc"].std(ddof=1) if len(sub) > 1 else math.nan),
        })
    return pd.DataFrame(rows)


def ablation_paired(df: pd.DataFrame, metric: str = "best_test_acc", baseline: str = "dta") -> pd.DataFrame:
    """Per variant: mean +- std over seeds of (DTA - variant), the paper's gap beside it, and whether it exceeds noise.

    ``ci95_low`` / ``ci95_high``: the t-based 95 % interval of the mean per-seed difference;
    ``ci95_bonferroni_low`` / ``_high``: the same corrected for the ``comparisons`` made at once (one per variant,
    :func:`dta_lib.studies.bonferroni_interval`), so that all intervals hold together at 95 %;
    ``min_detectable_effect``: the smallest true difference these pairs detect with 80 % power at the 95 % level
    (:func:`dta_lib.studies.min_detectable_effect`); ``exceeds_noise``:
    that interval excludes 0 (:func:`dta_lib.studies.exceeds_noise`; ``None``, shown as n/a, with one seed).
    """
    _check_columns(df, ["attention", "seed", metric], "ablation_paired")
    if baseline not in set(df["attention"]):
        raise ValueError(f"ablation_paired: no {baseline!r} runs among attention={sorted(set(df['attention']))}")
    pd_ = paired_differences(df, "attention", baseline, metric=metric)
    lo, hi = PAPER_ABLATION_GAP
    rows = []
    for _, r in pd_.iterrows():
        se = r["diff_std"] / math.sqrt(r["n_pairs"]) if r["n_pairs"] > 1 else math.nan
        lo_ci, hi_ci = t_interval(r["diff_mean"], r["diff_std"], int(r["n_pairs"]))
        lo_bf, hi_bf = bonferroni_interval(r["diff_mean"], r["diff_std"], int(r["n_pairs"]), max(len(pd_), 1))
        rows.append({
            "comparison": f"DTA - {ATTENTION_LABELS.get(r['attention'], r['attention'])}",
            "attention": r["attention"],
            "n_pairs": int(r["n_pairs"]),
            "diff_mean": r["diff_mean"],
            "diff_std": r["diff_std"],
            "std_error": se,
            "ci95_low": lo_ci,
            "ci95_high": hi_ci,
            "comparisons": len(pd_),
            "ci95_bonferroni_low": lo_bf,
            "ci95_bonferroni_high": hi_bf,
            "min_detectable_effect": min_detectable_effect(r["diff_std"], int(r["n_pairs"])),
            "ours (points)": format_mean_std(r["diff_mean"], r["diff_std"]),
            "paper CIFAR10 (points)": f"{lo}-{hi}" if r["attention"] in ("txa", "tna") else "not reported",
            "exceeds_noise": exceeds_noise(r["diff_mean"], r["diff_std"], int(r["n_pairs"])),
        })
    order = {a: i for i, a in enumerate(ATTENTION_LABELS)}
    out = pd.DataFrame(rows)
    return out.sort_values("attention", key=lambda s: s.map(order)).reset_index(drop=True) if len(out) else out


def noise_verdicts(paired: pd.DataFrame) -> list[str]:
    """One plain sentence per comparison, computed from :func:`ablation_paired`'s numbers."""
    out = []
    for _, r in paired.iterrows():
        n = int(r["n_pairs"])
        head = f"{r['comparison']}: {r['diff_mean']:+.2f} points (mean of {n} per-seed difference{'s' if n != 1 else ''}"
        if n < 2 or not math.isfinite(r["diff_std"]):
            out.append(head + "); with fewer than 2 seeds seed noise cannot be estimated, so this says nothing.")
            continue
        se = r["std_error"]
        tc = t_critical(n)
        ci = f"95% t-interval [{r['ci95_low']:+.2f}, {r['ci95_high']:+.2f}] (mean +- {tc:.2f} x std error {se:.2f})"
        if r["exceeds_noise"]:
            who = "DTA better" if r["diff_mean"] > 0 else "DTA worse"
            m, blo, bhi = int(r["comparisons"]), r["ci95_bonferroni_low"], r["ci95_bonferroni_high"]
            held = "still excludes 0" if blo > 0 or bhi < 0 else "includes 0, so the family of comparisons shows nothing"
            out.append(head + f"; {ci}): the interval excludes 0, {who}; corrected for the {m} comparisons "
                       f"(Bonferroni) it is [{blo:+.2f}, {bhi:+.2f}] and {held}.")
        else:
            out.append(head + f"; {ci}): the interval includes 0: no difference shown "
                       f"(the smallest effect {n} seeds detect with 80% power: {r['min_detectable_effect']:.2f} points).")
    return out


# ----------------------------------------------------------------------------------------------------
# time_steps: The time-step study: accuracy per T over seeds, seconds per epoch, and the peak memory of one BPTT step
# measured in a fresh subprocess (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``).

#: extra environment of the measuring subprocess (tests may pin glibc's mmap threshold here)
MALLOC_ENV: dict[str, str] = {}


def measure_step_memory(specs: Sequence[dict[str, Any]], timeout: float = 600.0) -> pd.DataFrame:
    """Peak resident memory of one training step (forward + BPTT backward + SGD step) per config.

    Each spec is ``make_config`` keyword arguments (``dataset``, ``preset``, overrides).
    Runs :mod:`dta_lib.step_memory` in one fresh Python subprocess (so the notebook's own memory does not count): per
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
    proc = subprocess.run([sys.executable, "-m", "dta_lib.step_memory", json.dumps(list(specs))], capture_output=True, text=True,
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

    from .analysis import profile
    from .data import dataset_info
    from .models import ms_resnet18
    from .models.params import count_parameters

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


# ----------------------------------------------------------------------------------------------------
# dvs: The DVS study (notebook 08): which event dataset a static dataset is paired with, and the overfitting
# signature of the paper summary (train - test gap on the un-augmented training subset).

#: a clean train - test gap above this many points is the overfitting signature of the paper summary
OVERFIT_GAP = 10.0

#: static dataset -> the event dataset notebook 08 studies for it (``make reproduce`` injects DATASET)
EVENT_COUNTERPART = {
    "fashion-mnist": "fashion-mnist-dvs",
    "cifar10": "cifar10-dvs",
    "synthetic": "synthetic-dvs",
}


_EVENT = ("fashion-mnist-dvs", "cifar10-dvs", "cifar10-emulated-dvs", "synthetic-dvs")


def event_dataset(name: str) -> str:
    """The event dataset for ``name``: itself if it is one, else its DVS counterpart.

    >>> event_dataset("fashion-mnist"), event_dataset("cifar10-dvs")
    ('fashion-mnist-dvs', 'cifar10-dvs')
    """
    if name in _EVENT:
        return name
    if name in EVENT_COUNTERPART:
        return EVENT_COUNTERPART[name]
    raise ValueError(f"no event dataset for {name!r}; expected one of {sorted(set(_EVENT) | set(EVENT_COUNTERPART))}")


def cifar10_dvs_available(root: str | os.PathLike | None = None) -> bool:
    """True when real CIFAR10-DVS (``<root>/CIFAR10DVS/<class>/*.aedat4``) is found at ``root`` or
    ``$DTA_DATA_ROOT`` (the lookup of :func:`dta_lib.data.build_datasets`); nothing is read or created."""
    from .data.registry import env_root

    base = Path(root).expanduser() if root is not None else env_root()
    if base is None:
        return False
    folder = base / "CIFAR10DVS"
    return folder.is_dir() and any(folder.glob("*/*.aedat4"))


def clean_train_accuracy(run: str | os.PathLike, checkpoint: str = "last.pt", batch_size: int | None = None) -> float:
    """Top-1 accuracy (percent) of ``run/<checkpoint>`` on the run's own training subset, without
    augmentation or MixUp/CutMix (``train_acc`` of ``metrics.jsonl`` is measured on augmented, mixed
    batches against the dominant label, which understates what the network fits).

    Evaluates with the training loop's test batch size (2x the training batch) by default.
    """
    from .train import build_data, evaluate_model, load_model

    path = Path(run) / checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; train the run first (checkpoints are not committed)")
    model, state = load_model(path)
    cfg = TrainConfig.from_dict(state["config"]).replace(augment=False)
    train_ds, _, _ = build_data(cfg, train=True)
    assert train_ds is not None
    loader = DataLoader(train_ds, batch_size=batch_size or cfg.batch_size * 2, shuffle=False)
    return float(evaluate_model(model, loader, torch.device("cpu"))["test_acc"])


def train_test_gaps(runs: pd.DataFrame, checkpoint: str = "last.pt") -> pd.DataFrame:
    """``runs`` plus ``clean_train_acc`` (:func:`clean_train_accuracy` of the final epoch) and
    ``train_test_gap`` (clean train minus final test accuracy, points: the project's one definition of the gap,
    the same as :func:`~dta_lib.runs.load_run`'s column).

    The value is cached as ``clean_train.json`` in the run folder (written atomically), so a
    notebook re-rendered from committed runs, whose checkpoints are not committed, still has it
    (and :func:`~dta_lib.runs.load_run` reads it, so notebook 10 shows the same gap);
    a run with neither gets NaN. :func:`dta_lib.runs.run_one` deletes the folder before
    re-training, so a cached value never outlives its run.
    """
    from .atomic import atomic_write_text
    from .runs import CLEAN_TRAIN_FILE, read_clean_train_acc

    values = []
    for run in runs["run"]:
        acc = read_clean_train_acc(run, checkpoint)
        if math.isnan(acc) and (Path(run) / checkpoint).is_file():
            acc = clean_train_accuracy(run, checkpoint)
            atomic_write_text(Path(run) / CLEAN_TRAIN_FILE,
                              json.dumps({"clean_train_acc": acc, "checkpoint": checkpoint}) + "\n")
        values.append(acc)
    out = runs.copy()
    out["clean_train_acc"] = values
    out["train_test_gap"] = out["clean_train_acc"] - out["final_test_acc"]
    return out


#: the orders :func:`time_order_control` evaluates a model's test streams in
TIME_ORDERS = ("original", "shuffled", "reversed")


def time_order_control(run: str | os.PathLike, checkpoint: str = "best.pt", seed: int = 0,
                       batch_size: int | None = None) -> dict[str, float]:
    """Test accuracy (percent) of a trained event-data model on its test streams in each of :data:`TIME_ORDERS`:
    as recorded, with the frames of every stream shuffled in time (one random permutation of the T steps per
    batch, drawn from ``seed``), and reversed in time. Evaluation only; the frames themselves are unchanged.

    The drop from ``original`` measures how much the trained model relies on temporal order. On static data every
    step holds the same image, so the control has no meaning there and is refused.
    """
    from .train import build_data, evaluate_model, load_model
    from .train import get_data_info

    path = Path(run) / checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; train the run first")
    model, state = load_model(path)
    cfg = TrainConfig.from_dict(state["config"])
    if not get_data_info(cfg.dataset).is_event:
        raise ValueError(f"time_order_control needs event data; {run} trained on {cfg.dataset}, whose T steps are "
                         "copies of one image")
    _, test_ds, _ = build_data(cfg, train=False)
    g = torch.Generator().manual_seed(seed)
    reorder = {"original": lambda x: x, "reversed": lambda x: x.flip(1),
               "shuffled": lambda x: x[:, torch.randperm(x.shape[1], generator=g)]}
    out = {}
    for order in TIME_ORDERS:
        def collate(batch: list, f=reorder[order]) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = torch.utils.data.default_collate(batch)
            return f(x), y  # x: [B, T, C, H, W]

        loader = DataLoader(test_ds, batch_size=batch_size or cfg.batch_size * 2, shuffle=False, collate_fn=collate)
        out[order] = float(evaluate_model(model, loader, torch.device("cpu"))["test_acc"])
    return out


#: where :func:`time_order_table` caches a run's control (the run folder, like ``clean_train.json``)
TIME_ORDER_FILE = "time_order.json"


def time_order_table(runs: pd.DataFrame, checkpoint: str = "best.pt") -> pd.DataFrame:
    """``runs`` (event-data runs) plus the :func:`time_order_control` accuracies, one column per order of
    :data:`TIME_ORDERS`, and ``drop_shuffled`` / ``drop_reversed`` (original minus that order, points).

    Each run's result is cached as :data:`TIME_ORDER_FILE` in its folder (written atomically, keyed by the
    checkpoint's name), so a notebook re-rendered from committed runs does not evaluate again; a run with neither a
    cache nor the checkpoint is an error naming the run (a missing control is not a silent NaN).
    """
    from .atomic import atomic_write_text

    rows = []
    for run in runs["run"]:
        cache = Path(run) / TIME_ORDER_FILE
        d = json.loads(cache.read_text()) if cache.is_file() else {}
        if d.get("checkpoint") != checkpoint:
            if not (Path(run) / checkpoint).is_file():
                raise FileNotFoundError(f"{run}: no {TIME_ORDER_FILE} and no {checkpoint} to evaluate; train the run "
                                        "again or restore its checkpoint")
            d = {"checkpoint": checkpoint, **time_order_control(run, checkpoint)}
            atomic_write_text(cache, json.dumps(d) + "\n")
        rows.append({o: float(d[o]) for o in TIME_ORDERS})
    out = pd.concat([runs.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    for o in TIME_ORDERS[1:]:
        out[f"drop_{o}"] = out["original"] - out[o]
    return out


def time_order_verdicts(orders: pd.DataFrame, baseline: str = "none") -> list[str]:
    """The time-order control in sentences (``orders``: :func:`time_order_table`): per variant, the mean accuracy
    drop with frames shuffled and reversed and its 95% t-interval over seeds (an interval above 0: the model uses
    the order of the frames), then DTA's drop minus ``baseline``'s, paired by seed (above 0: DTA relies on order
    more)."""
    lines = []
    for what in ("shuffled", "reversed"):
        col = f"drop_{what}"
        for a, g in orders.groupby("attention", sort=False):
            m, sd, n = g[col].mean(), g[col].std(ddof=1), len(g)
            if n < 2:
                lines.append(f"{a}, frames {what}: drop {m:+.2f} points (one seed: no interval).")
                continue
            lo, hi = t_interval(m, sd, n)
            lines.append(f"{a}, frames {what}: drop {m:+.2f} points, 95% t-interval [{lo:+.2f}, {hi:+.2f}] over {n} "
                         "seeds: " + ("the model uses the order of the frames." if lo > 0 else
                                      "no drop beyond seed noise." if lo <= 0 <= hi else "order-free accuracy rises."))
        d = paired_differences(orders, "attention", "dta", col)
        d = d[d["attention"] == baseline]
        if len(d) and d.n_pairs.iloc[0] > 1:
            r = d.iloc[0]
            lo, hi = t_interval(r.diff_mean, r.diff_std, int(r.n_pairs))
            lines.append(f"DTA's drop minus {baseline}'s ({what}): {r.diff_mean:+.2f} points, 95% t-interval "
                         f"[{lo:+.2f}, {hi:+.2f}] over {int(r.n_pairs)} seed pairs: "
                         + ("DTA relies on the order more." if lo > 0 else "DTA relies on it less." if hi < 0 else
                            "no difference beyond seed noise."))
    return lines


def dvs_table(runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per attention variant: accuracies and the clean train - test gap as mean +- std over seeds, the seed count,
    the paper's CIFAR10-DVS top-1 and whether the mean gap exceeds :data:`OVERFIT_GAP`.

    ``runs`` carries :func:`train_test_gaps`' ``clean_train_acc`` / ``train_test_gap`` columns; the last-epoch
    running accuracy on augmented batches is shown under :data:`~dta_lib.runs.AUGMENTED_TRAIN_LABEL`, not as a gap.
    """
    table = mean_std_table(runs, "attention", {
        "best test acc. (%)": "best_test_acc", "final test acc. (%)": "final_test_acc",
        "clean train acc. (%)": "clean_train_acc", "train/test gap (points)": "train_test_gap",
        f"{AUGMENTED_TRAIN_LABEL} (%)": "final_train_acc",
    }, order=order if order is not None else list(dict.fromkeys(runs["attention"])))
    paper = PAPER_RESULTS[PAPER_RESULTS["dataset"] == "cifar10-dvs"].set_index("attention")["paper_top1"]
    table["paper CIFAR10-DVS top-1 (%)"] = paper.reindex(table.index)
    table[f"gap > {OVERFIT_GAP:g} points"] = runs.groupby("attention")["train_test_gap"].mean().gt(OVERFIT_GAP).reindex(
        table.index)
    return table.reset_index()


def dvs_verdicts(runs: pd.DataFrame, diffs: pd.DataFrame, order: Sequence[str] | None = None) -> list[str]:
    """The study's reading in sentences: DTA minus the baseline with the noise verdict (``diffs``:
    :func:`~dta_lib.studies.paired_verdicts` against ``dta``), the paper's full-scale gap, and each
    variant's clean train - test gap against :data:`OVERFIT_GAP`."""
    order = list(order) if order is not None else list(dict.fromkeys(runs["attention"]))
    m = runs.groupby("attention")[["best_test_acc", "train_test_gap"]].mean().reindex(order)
    paper = PAPER_RESULTS[PAPER_RESULTS["dataset"] == "cifar10-dvs"].set_index("attention")["paper_top1"]
    d = diffs.iloc[0]
    n = int(d.n_pairs)
    spread = ""
    if n > 1:
        lo, hi = t_interval(d.diff_mean, d.diff_std, n)
        spread = (f" (sd {d.diff_std:.2f}; 95% t-interval [{lo:+.2f}, {hi:+.2f}]; the smallest difference these seeds "
                  f"detect with 80% power: {min_detectable_effect(d.diff_std, n):.2f} points)")
    lines = [f"DTA minus baseline, best test accuracy: {d.diff_mean + 0.0:+.2f} points over {n} seed pair(s)" + spread
             + "; " + ("exceeds seed noise." if d["exceeds seed noise"]
                       else "does NOT exceed seed noise (or too few seeds to tell): not a win."),
             f"Paper, CIFAR10-DVS: {paper['dta'] - paper['none']:+.1f} points ({paper['dta']:g} vs {paper['none']:g}) "
             "at full scale."]
    for a, r in m.iterrows():
        if math.isnan(r.train_test_gap):
            lines.append(f"{a}: no train/test gap (no clean training accuracy: neither clean_train.json nor the "
                         "final checkpoint is in the run folder).")
            continue
        lines.append(f"{a}: train/test gap {r.train_test_gap:.1f} points -> "
                     + ("above" if r.train_test_gap > OVERFIT_GAP else "below")
                     + f" the summary's {OVERFIT_GAP:g}-point overfitting signature.")
    return lines


# ----------------------------------------------------------------------------------------------------
# surrogate_width: The surrogate-width study (notebook 09): accuracy per triangle half-width, per-layer gradient norms over training
# (``metrics.jsonl`` ``grad_norms``), the first-to-last-layer ratio and the vanishing-gradient rule applied to it.
#
# The rule (:func:`diagnose_widths`), per width at the last epoch: **vanishing** when the stem/fc gradient ratio is
# below :data:`VANISHING_RATIO` and below the release width's; **exploding** when it is above :data:`EXPLODING_RATIO`
# and above the release width's; **not learning** when the final test accuracy is within :data:`CHANCE_MARGIN`
# points of chance; otherwise **healthy**.

#: the release's triangle half-width gamma
RELEASE_WIDTH = 1.0
#: stem/fc gradient ratio below which (and below the release width's) a width is "vanishing"
VANISHING_RATIO = 0.1
#: stem/fc gradient ratio above which (and above the release width's) a width is "exploding"
EXPLODING_RATIO = 10.0
#: a final test accuracy within this many points of chance is "not learning"
CHANCE_MARGIN = 5.0
_GAMMA = "surrogate width gamma"


def grad_norm_curves(runs: pd.DataFrame, by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """Per-layer gradient norms over training, long form: ``*by, epoch, layer, grad_norm``.

    ``runs`` has a ``run`` column (run folders recorded with ``record_grad_norms=True``) and the
    ``by`` columns. Layers come in forward order (stem, dta, layer1.0 ... layer3.1, fc; see
    :func:`layer_order`), not the alphabetical order of ``metrics.jsonl``.
    """
    missing = [c for c in ("run", *by) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; expected 'run' and {list(by)}")
    rows = []
    for _, r in runs.iterrows():
        for rec in read_metrics(r["run"]):
            norms = rec.get("grad_norms")
            if not norms:
                raise ValueError(f"run {r['run']} has no grad_norms at epoch {rec.get('epoch')}; "
                                 "train it with record_grad_norms=True")
            rows += [{**{c: r[c] for c in by}, "epoch": rec["epoch"], "layer": k, "grad_norm": norms[k]}
                     for k in layer_order(norms)]
    return pd.DataFrame(rows)


def layer_order(names: Iterable[str]) -> list[str]:
    """Layer-group names in forward order: ``stem``, ``dta``, ``layerS.B`` by stage and block, then the rest, ``fc`` last.

    >>> layer_order(["fc", "layer2.0", "stem", "layer1.1", "dta", "layer1.0"])
    ['stem', 'dta', 'layer1.0', 'layer1.1', 'layer2.0', 'fc']
    """
    def rank(name: str) -> tuple[int, int, int, str]:
        if name == "stem":
            return (0, 0, 0, name)
        if name == "dta":
            return (1, 0, 0, name)
        head, _, block = name.partition(".")
        if head.startswith("layer") and head[5:].isdigit():
            return (2, int(head[5:]), int(block) if block.isdigit() else 0, name)
        return (4, 0, 0, name) if name == "fc" else (3, 0, 0, name)

    return sorted(names, key=rank)


def gradient_ratio(curves: pd.DataFrame, first: str = "stem", last: str = "fc",
                   by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """``first``-layer over ``last``-layer gradient norm per run and epoch (columns ``*by, epoch, ratio``).

    A ratio far below 1 that falls over training is the vanishing-gradient signature: the loss
    signal reaching the first layer through the spiking layers (each multiplying by the surrogate
    derivative, paper Eq. 5) shrinks relative to the classifier's.
    """
    layers = set(curves["layer"])
    for name in (first, last):
        if name not in layers:
            raise ValueError(f"layer {name!r} not in the gradient norms; layers: {sorted(layers)}")
    wide = curves.pivot_table(index=[*by, "epoch"], columns="layer", values="grad_norm").reset_index()
    wide["ratio"] = wide[first] / wide[last]
    return wide[[*by, "epoch", first, last, "ratio"]]


def width_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width: best / final test and final train accuracy as mean +- std over seeds, and the seed count."""
    return mean_std_table(runs, "surrogate_width", {
        "best test acc. (%)": "best_test_acc", "final test acc. (%)": "final_test_acc",
        "final train acc. (%, augmented batches)": "final_train_acc",
    }).rename_axis(_GAMMA).reset_index()


def width_differences(runs: pd.DataFrame, reference: float = RELEASE_WIDTH,
                      metric: str = "best_test_acc", level: float = 0.95) -> pd.DataFrame:
    """Seed-paired ``reference`` minus each other width (positive: the reference is better), with the noise
    verdict; empty when ``reference`` was not run.

    Each row is one of ``m`` comparisons against ``reference`` (``comparisons``: m = number of other widths).
    ``ci95_low`` / ``ci95_high``: the plain ``level`` t-interval of the mean difference, ``exceeds seed noise`` when it
    excludes 0; ``ci95_bonferroni_low`` / ``_high``: the Bonferroni-corrected interval
    (:func:`~dta_lib.studies.bonferroni_interval`, each at ``1 - (1 - level) / m``, so the ``m``
    intervals hold together with probability ``level``), ``exceeds seed noise (Bonferroni)`` when it excludes 0.
    """
    if reference not in set(runs["surrogate_width"]):
        return pd.DataFrame()
    diffs = paired_verdicts(runs, "surrogate_width", reference, metric, level)
    if diffs.empty:
        return diffs
    m = len(diffs)
    plain = [t_interval(r.diff_mean, r.diff_std, int(r.n_pairs), level) for r in diffs.itertuples()]
    corrected = [bonferroni_interval(r.diff_mean, r.diff_std, int(r.n_pairs), m, level) for r in diffs.itertuples()]
    diffs["comparisons"] = m
    diffs["ci95_low"], diffs["ci95_high"] = [lo for lo, _ in plain], [hi for _, hi in plain]
    diffs["ci95_bonferroni_low"] = [lo for lo, _ in corrected]
    diffs["ci95_bonferroni_high"] = [hi for _, hi in corrected]
    diffs["exceeds seed noise (Bonferroni)"] = [None if e is None else bool(lo > 0 or hi < 0)
                                                for e, (lo, hi) in zip(diffs["exceeds seed noise"], corrected)]
    diffs.insert(0, "difference", [f"gamma={reference} minus gamma={w}" for w in diffs["surrogate_width"]])
    return diffs.drop(columns=["vs"])


def diagnose_widths(ratio: pd.DataFrame, runs: pd.DataFrame, reference: float = RELEASE_WIDTH,
                    chance: float = 10.0) -> pd.DataFrame:
    """Per width: the stem/fc ratio at the first and last epoch (mean over seeds), relative to ``reference``'s, the
    mean final test accuracy and the diagnosis of the module's rule (``chance``: accuracy of guessing, %)."""
    last = ratio[ratio["epoch"] == ratio["epoch"].max()].groupby("surrogate_width")["ratio"].mean()
    first = ratio[ratio["epoch"] == ratio["epoch"].min()].groupby("surrogate_width")["ratio"].mean()
    final_acc = runs.groupby("surrogate_width")["final_test_acc"].mean()
    ref = last.get(reference, float("nan"))
    summary = pd.DataFrame({
        "stem/fc ratio, first epoch": first.round(3), "stem/fc ratio, last epoch": last.round(3),
        f"ratio vs gamma={reference:g}": (last / ref).round(2), "final test acc. (%)": final_acc.round(1),
    })

    def diagnose(r: float, a: float) -> str:
        flags = [name for name, hit in (("vanishing", r < VANISHING_RATIO and r < ref),
                                        ("exploding", r > EXPLODING_RATIO and r > ref),
                                        ("not learning", a <= chance + CHANCE_MARGIN)) if hit]
        return ", ".join(flags) or "healthy"

    summary["diagnosis"] = [diagnose(r, a) for r, a in zip(last, final_acc)]
    return summary.rename_axis(_GAMMA).reset_index()


def width_verdicts(summary: pd.DataFrame, runs: pd.DataFrame, diffs: pd.DataFrame,
                   reference: float = RELEASE_WIDTH) -> list[str]:
    """One sentence per width (ratio trend, diagnosis), then whether any width differs from ``reference`` by more
    than seed noise: with :func:`width_differences`' rows, by the Bonferroni-corrected 95% t-intervals of the ``m``
    comparisons (a width whose interval includes 0 ties with ``reference``); one seed: no width is declared better."""
    lines = []
    rel = f"ratio vs gamma={reference:g}"
    for _, r in summary.iterrows():
        trend = "falls" if r["stem/fc ratio, last epoch"] < r["stem/fc ratio, first epoch"] else "rises"
        lines.append(f"gamma = {r[_GAMMA]:g}: stem/fc gradient ratio {r['stem/fc ratio, first epoch']:.3g} -> "
                     f"{r['stem/fc ratio, last epoch']:.3g} over training ({trend}), {r[rel]:.2f}x the "
                     f"release width's; final test accuracy {r['final test acc. (%)']:.1f}% -> "
                     f"diagnosis by the rule above: {r['diagnosis'].upper()}.")
    best = runs.groupby("surrogate_width")["final_test_acc"].mean().idxmax()
    if runs["seed"].nunique() < 2:
        lines.append(f"No t-interval from a single seed per width: seed noise is not estimated, and no "
                     f"width is declared better or worse than gamma = {reference:g} (the highest single-seed final "
                     f"accuracy, gamma = {best:g}, is not a result).")
        return lines
    if diffs.empty:
        lines.append(f"No paired differences against gamma = {reference:g}: no width is declared better or worse.")
        return lines
    m = len(diffs)
    corrected = "exceeds seed noise (Bonferroni)" in diffs and m > 1
    col = "exceeds seed noise (Bonferroni)" if corrected else "exceeds seed noise"
    sig = diffs[diffs[col] == True]["surrogate_width"].tolist()  # noqa: E712
    plain = diffs[diffs["exceeds seed noise"] == True]["surrogate_width"].tolist()  # noqa: E712
    widths = ", ".join(f"{w:g}" for w in diffs["surrogate_width"])
    head = (f"{m} paired comparisons against gamma = {reference:g} (gamma = {widths}), read with Bonferroni-corrected "
            f"95% t-intervals (each at {100 * (1 - 0.05 / m):.4g}%)" if corrected
            else f"Paired comparison against gamma = {reference:g} (gamma = {widths}), read with the 95% t-interval")
    if not sig:
        line = (f"{head}: every interval includes 0, so the widths tie within the t-intervals; no width is declared "
                f"better or worse (the highest mean final accuracy, gamma = {best:g}, is within seed noise).")
        if corrected and plain:
            line += (f" The uncorrected 95% interval of gamma = {', '.join(f'{w:g}' for w in plain)} excludes 0; "
                     f"with {m} comparisons that is not enough.")
    else:
        who = "; ".join(f"gamma = {w:g} ({'trails' if d > 0 else 'beats'} gamma = {reference:g} by {abs(d):.2f} points)"
                        for w, d in zip(diffs["surrogate_width"], diffs["diff_mean"]) if w in sig)
        line = f"{head}: the interval excludes 0 for {who}" + (
            f"; the other widths tie with gamma = {reference:g} within their intervals." if len(sig) < m else ".")
    lines.append(line)
    return lines


# ----------------------------------------------------------------------------------------------------
# precision: Mixed precision on CPU: which CPUs run bf16 natively, and does bf16 training keep fp32's accuracy?
#
# The trainer's ``precision="auto"`` picks bf16 autocast on a CPU only when :func:`cpu_has_native_bf16`
# says the CPU has bf16 instructions (AVX512-BF16 or AMX). Without them oneDNN emulates bf16 and a step is
# several times *slower* than fp32. The accuracy side of that choice is the ``precision`` study: the same
# runs in fp32 and in bf16 autocast, paired by seed (:func:`precision_study`, :func:`precision_verdict`;
# rendered by notebook 11). The LIF membrane and threshold comparison stay fp32 under autocast
# (:mod:`dta_lib.kernels`).

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
    (:func:`dta_lib.studies.exceeds_noise`); it needs at least two seeds (else None).
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


# ----------------------------------------------------------------------------------------------------
# energy: The energy study (notebook 12): reuse or train a run, energy tables per model (paper convention
# ``E = E_MAC * MACs + E_AC * SOPs``, ``docs/analysis.md``), extrapolation to the paper's size and the cost of DTA.

def _same_maths(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    """Same run up to the fields that do not identify one (:data:`RUN_FREE_FIELDS`) and the probes."""
    return not config_diff(saved, cfg, RUN_FREE_FIELDS | PROBE_FIELDS)


def find_trained_run(
    dataset: str, preset: str, variant: dict[str, Any], seed: int, studies: Iterable[str] = ("ablation", "energy"),
    root: str | os.PathLike[str] | None = None, **common: Any,
) -> Path | None:
    """The first completed run recorded under ``studies`` (any variant folder) whose config equals
    ``make_config(dataset, preset, seed=seed, **common, **variant)`` (ignoring threads, progress
    bars and probes such as ``record_grad_norms``) and which still holds ``best.pt``; ``None`` if
    there is none. Nothing is written (safe on another notebook's runs)."""
    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    for study in studies:
        folder = run_dir(study, cfg, variant, root).parent
        for path in sorted(folder.glob("*/config.json")):
            path = path.parent
            try:
                saved = json.loads((path / "config.json").read_text())
                status = json.loads((path / "run.json").read_text()).get("status")
            except (OSError, ValueError):
                continue
            if status == "completed" and _same_maths(saved, cfg) and (path / "best.pt").is_file():
                return path
    return None


def trained_run(
    dataset: str, preset: str, variant: dict[str, Any], seed: int, reuse: bool = True,
    studies: Sequence[str] = ("ablation", "surrogate_width", "train"), own_study: str = "energy",
    root: str | os.PathLike[str] | None = None,
    **common: Any,
) -> tuple[dict[str, Any], str]:
    """A trained run with ``best.pt``: ``(row, source)``; ``source`` names the study the weights came from.

    An equal run of ``studies`` (notebook 06's ``ablation``, notebook 09's ``surrogate_width``:
    trained earlier in the same ``make reproduce``; notebook 05's ``train``, whose ``study`` preset
    runs are the full-data models) is always preferred when its checkpoint exists, in that order;
    ``reuse`` governs only ``own_study``'s runs. Otherwise (checkpoints are not committed, or
    ``reuse=False``) the run is trained under ``own_study`` through :func:`run_one`.
    """
    found = find_trained_run(dataset, preset, variant, seed, (*studies, *((own_study,) if reuse else ())), root,
                             **common)
    if found is not None:
        return _row(found, variant), found.parent.parent.name
    row = run_one(own_study, dataset, preset, variant, seed, root=root, reuse=False, **common)
    return row, own_study


def _row(path: Path, variant: dict[str, Any]) -> dict[str, Any]:
    from .runs import variant_key
    from .runs import load_run

    row = load_run(path)
    row.update({"study": path.parent.parent.name, "variant": variant_key(variant), **variant})
    return row


def energy_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and group (stem / DTA / backbone / head / total): MACs, SOPs and energy (µJ).

    ``tables`` maps a model label to its :meth:`~dta_lib.analysis.SpikeRecorder.energy_table`.
    """
    frames = []
    for label, table in tables.items():
        tot = energy_totals(table, by="group")
        tot = tot.rename_axis("group").reset_index()
        tot.insert(0, "model", label)
        frames.append(tot)
    out = pd.concat(frames, ignore_index=True)
    out["energy_mac_uj"] = out["energy_mac_pj"] * 1e-6
    out["energy_ac_uj"] = out["energy_ac_pj"] * 1e-6
    return out[["model", "group", "macs", "sops", "energy_mac_uj", "energy_ac_uj", "energy_uj"]]


def extrapolate_energy(full: pd.DataFrame, measured: pd.DataFrame, e_mac: float = E_MAC_PJ,
                       e_ac: float = E_AC_PJ) -> pd.DataFrame:
    """Energy table of a larger model of the same layout (``full``: an energy table whose dense
    counts are exact) with each spike-fed layer's input rate taken from ``measured`` (a trained
    model's energy table, matched by layer name).

    ``sops = input_rate(measured) * dense_macs(full)`` for layers fed by spikes in ``measured`` (the field's
    rate x FLOPs estimate: without the full model's spike maps the exact count of
    :func:`dta_lib.analysis.exact_sops` is not available);
    ``macs = dense_macs(full)`` for real-fed ones. An **extrapolation**: it assumes firing rates do
    not change with width, ``T``, input size or dataset. Raises ``ValueError`` when a layer of
    ``full`` has no counterpart in ``measured``.
    """
    m = measured.set_index("name")
    missing = sorted(set(full["name"]) - set(m.index))
    if missing:
        raise ValueError(f"layers {missing} of the full model are not in the measured table; same layout needed")
    out = full[["name", "type", "group", "steps", "flops", "dense_macs"]].copy()
    out["input"] = out["name"].map(m["input"])
    out["input_rate"] = out["name"].map(m["input_rate"])
    spike = out["input"] == "spike"
    out["macs"] = out["dense_macs"].where(~spike, 0.0)
    out["sops"] = (out["input_rate"] * out["dense_macs"]).where(spike, 0.0)
    out["energy_pj"] = e_mac * out["macs"] + e_ac * out["sops"]
    out.attrs.update(e_mac_pj=e_mac, e_ac_pj=e_ac, extrapolated=True)
    return out


def dta_cost(summary: pd.DataFrame, model: str) -> dict[str, float]:
    """What the DTA block of ``model`` costs next to the rest (rows of :func:`energy_summary`).

    Returns the DTA block's MACs and energy (µJ), the backbone's SOP energy, the total, and the
    DTA share of the total and its ratio to the backbone's SOP energy.
    """
    s = summary[summary["model"] == model].set_index("group")
    if s.empty:
        raise ValueError(f"model {model!r} not in the summary; models: {sorted(set(summary['model']))}")
    if "DTA" not in s.index:
        raise ValueError(f"model {model!r} has no DTA rows (groups: {list(s.index)})")
    dta_e = float(s.loc["DTA", "energy_uj"])
    bb_ac = float(s.loc["backbone", "energy_ac_uj"]) if "backbone" in s.index else math.nan
    total = float(s.loc["total", "energy_uj"])
    return {
        "dta_macs": float(s.loc["DTA", "macs"]), "dta_energy_uj": dta_e, "backbone_sop_energy_uj": bb_ac,
        "total_energy_uj": total, "dta_share_of_total": dta_e / total if total else math.nan,
        "dta_over_backbone_sops": dta_e / bb_ac if bb_ac else math.nan,
    }


def runs_provenance(rows: pd.DataFrame) -> dict[str, Any]:
    """Preset, dataset(s), seeds, hardware and summed wall time of the runs of a study table (captions)."""
    def col(name: str) -> list[Any]:
        return sorted({str(v) for v in rows[name].dropna()}) if name in rows.columns else []

    wall = rows["wall_seconds"].sum() if "wall_seconds" in rows.columns else rows["train_seconds"].sum()
    return {
        "preset": ", ".join(col("preset")), "dataset": ", ".join(col("dataset")),
        "seeds": ", ".join(col("seed")), "hardware": ", ".join(col("hardware.cpu")) or "unknown",
        "threads": ", ".join(col("config.threads") or col("threads")), "runs": len(rows),
        "wall_minutes": round(float(wall) / 60, 1),
    }


def _forward_order(first: Sequence[str], names: Iterable[str]) -> list[str]:
    order = list(dict.fromkeys(first))
    return order + [n for n in dict.fromkeys(names) if n not in order]


def firing_rates_by_model(recorders: dict[str, Any], reference: str = "DTA"
                          ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(rates, per_step, order)`` of several :class:`~dta_lib.analysis.SpikeRecorder` s keyed by model label:
    mean firing rate per LIF layer and per time step (long form, with a ``model`` column), and the layers in the
    forward order of ``reference``'s model (layers only the others have come last)."""
    if reference not in recorders:
        raise ValueError(f"reference model {reference!r} not among the recorders {sorted(recorders)}")
    rates = pd.concat([r.firing_rates().assign(model=label) for label, r in recorders.items()], ignore_index=True)
    per_step = pd.concat([r.firing_rates(long=True).assign(model=label) for label, r in recorders.items()],
                         ignore_index=True)
    return rates, per_step, _forward_order(recorders[reference].firing_rates()["name"], rates["name"])


def energy_per_layer(tables: dict[str, pd.DataFrame], reference: str = "DTA") -> tuple[pd.DataFrame, list[str]]:
    """Energy tables per model (``SpikeRecorder.energy_table``) in long form with ``model``, ``energy (nJ)`` and the
    ``kind`` of arithmetic (AC for spike-fed layers, MAC for real-fed ones), and the layers in forward order."""
    if reference not in tables:
        raise ValueError(f"reference model {reference!r} not among the tables {sorted(tables)}")
    per_layer = pd.concat([t.assign(model=label) for label, t in tables.items()], ignore_index=True)
    per_layer["energy (nJ)"] = per_layer["energy_pj"] / 1e3
    per_layer["kind"] = per_layer["input"].map({"spike": "AC (spike-fed)", "real": "MAC (real-fed)"}).fillna("mixed")
    return per_layer, _forward_order(tables[reference]["name"], per_layer["name"])


# ----------------------------------------------------------------------------------------------------
# summary: Every run recorded under a preset's runs folder, summarised per study: mean +- std per variant, the paper's
# gaps beside ours, wall time and provenance (what notebook 10 renders).

def load_study_runs(preset_root: str | os.PathLike[str], preset: str | None = None,
                    registry: Mapping[str, Study] | None = None) -> pd.DataFrame:
    """Exactly the runs the study registry expects below ``reports/runs/<preset>/``: load_run's row plus ``study``
    and ``variant``.

    The layout is ``<preset_root>/<study>/<dataset>/<variant>-s<seed>/`` (:func:`dta_lib.runs.run_dir`);
    ``preset`` defaults to the folder's name. A study folder that exists must hold every run that ``registry``
    (default :data:`~dta_lib.runs.STUDIES`) lists for that preset, finished (``run.json`` status ``completed``), and
    nothing else: a missing, incomplete, extra (a copy, a study or variant the registry does not know) or duplicated
    run raises ``ValueError`` naming each such folder and the fix, instead of averaging what happens to be there.
    Missing root folder: empty frame.
    """
    root = Path(preset_root)
    preset = preset or root.name
    studies = STUDIES if registry is None else registry
    rows, problems = [], []
    if not root.is_dir():
        return pd.DataFrame(rows)
    def visible(folder: Path) -> list[Path]:  # .ipynb_checkpoints and other hidden folders are not runs
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    for study_dir in visible(root):
        study = studies.get(study_dir.name)
        if study is None:
            problems.append(f"{study_dir}: not a study of the registry ({', '.join(sorted(studies))}); move it out")
            continue
        expected = study.expected(preset)
        for data_dir in visible(study_dir):
            fix = (f"python -m dta_lib.campaign {study.name} --preset {preset}"
                   if data_dir.name == study.dataset else
                   f"notebook {study.notebook} with PRESET={preset!r}, DATASET={data_dir.name!r}")
            found = {p.name for p in visible(data_dir)}
            problems += [f"{data_dir / name}: missing (the {study.name} study records {len(expected)} runs at preset "
                         f"{preset}); train it: {fix}" for name in expected if name not in found and study.complete]
            problems += [f"{data_dir / name}: not a run the {study.name} study records at preset {preset} (a copy, or "
                         f"another variant or seed); move it out" for name in sorted(found - set(expected))]
            for name in expected:
                run = data_dir / name
                if name not in found:
                    continue
                try:
                    status = json.loads((run / "run.json").read_text()).get("status")
                    row = load_run(run)
                except (OSError, ValueError) as e:
                    problems.append(f"{run}: unreadable ({' '.join(str(e).split())[:200]}); retrain it: {fix}")
                    continue
                if status != "completed":
                    problems.append(f"{run}: not finished (run.json status {status!r}); finish it: {fix}")
                    continue
                variant = name.rsplit("-s", 1)[0]
                ident = ({k: row.get(k) for k in sorted(study.variants[0])}, row.get("seed"))
                said = f"{variant_key(ident[0])}-s{ident[1]}"
                if said != name or row.get("preset") != preset or row.get("dataset") != data_dir.name:
                    problems.append(f"{run}: its config.json is {said} of preset {row.get('preset')!r} on "
                                    f"{row.get('dataset')!r}, not what its folder says; a copied or moved run: "
                                    f"retrain it: {fix}")
                    continue
                row["study"], row["variant"], row["run"] = study.name, variant, str(run.relative_to(root))
                rows.append(row)
    if problems:
        raise ValueError(f"{root} does not hold exactly the runs the registry expects at preset {preset} "
                         f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    return pd.DataFrame(rows)


#: config fields that may distinguish variants in a study (shown as group keys when they vary)
_KEYS = ("dataset", "attention", "time_steps", "surrogate_width", "surrogate", "width", "epochs", "subset", "precision")


def study_summary(runs: pd.DataFrame, study: str, metric: str = "best_test_acc") -> pd.DataFrame:
    """One row per (dataset, variant) of ``study``: the varying config fields, mean +- std of ``metric``,
    final test accuracy, the train/test gap and the last epoch's running train accuracy on augmented batches.

    The gap is the project's one definition (:func:`~dta_lib.runs.load_run`): clean training accuracy of the
    final checkpoint minus final test accuracy. The column ``train_test_gap`` is there only when a run of the study
    has its clean training accuracy (``clean_train.json``); a variant where any run lacks it reads ``n/a``. The
    running accuracy on augmented, mixed batches is shown as :data:`~dta_lib.runs.AUGMENTED_TRAIN_LABEL`,
    never as a gap."""
    sub = runs[runs["study"] == study]
    if sub.empty:
        raise ValueError(f"no runs of study {study!r}; have {sorted(set(runs.get('study', [])))}")
    keys = ["dataset"] + [k for k in _KEYS[1:] if k in sub.columns and sub[k].nunique(dropna=False) > 1]
    if len(keys) == 1 and "attention" in sub.columns:
        keys.append("attention")
    if "time_steps" not in keys:
        keys.append("time_steps")
    has_gap = "train_test_gap" in sub.columns and bool(sub["train_test_gap"].notna().any())
    rows = []
    for vals, g in sub.groupby(keys, sort=True, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        def ms(col: str, all_or_na: bool = False) -> str:
            if all_or_na and g[col].isna().any():  # a gap over some of the seeds is not the variant's gap
                return "n/a"
            return format_mean_std(g[col].mean(), g[col].std(ddof=1) if len(g) > 1 else math.nan)
        row = {**dict(zip(keys, vals)), "seeds": ",".join(str(s) for s in sorted(g["seed"])),
               f"{metric}_mean": round(float(g[metric].mean()), 2), metric: ms(metric),
               "final_test_acc": ms("final_test_acc")}
        if has_gap:
            row["train_test_gap"] = ms("train_test_gap", all_or_na=True)
        rows.append({**row, AUGMENTED_TRAIN_LABEL: ms("final_train_acc")})
    return pd.DataFrame(rows)


def paper_gaps(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """The paper's comparisons beside ours, for the studies present.

    - ablation: DTA - T-XA, DTA - T-NA, DTA - none (paper CIFAR10: 0.4-0.8 for T-XA / T-NA);
    - time_steps: accuracy at T=6 minus T=4 (paper CIFAR100: 81.16 - 79.94);
    - dvs: DTA - none at T=10 (paper CIFAR10-DVS: 81.3 - 80.4);
    - train: DTA - none, where notebook 05 trained both (the full-data study preset).
    Ours are mean +- std of per-seed paired differences with their 95 % t-interval (``ci95``) and the minimum
    detectable effect (80 % power); ``exceeds_noise`` as in :func:`ablation_paired` (``"n/a"`` with one seed);
    ``resolves the paper's gap``: whether that MDE is at most the paper's difference.
    """
    lo, hi = PAPER_ABLATION_GAP
    rows: list[dict[str, Any]] = []
    studies = set(runs["study"]) if "study" in runs.columns else set()
    if "ablation" in studies:
        abl = runs[runs["study"] == "ablation"]
        for ds, g in abl.groupby("dataset"):
            if "dta" not in set(g["attention"]):
                continue
            for _, r in ablation_paired(g, metric).iterrows():
                rows.append({"study": "ablation", "comparison": r["comparison"], "paper setting": "CIFAR10, T=6",
                             "paper (points)": r["paper CIFAR10 (points)"], "our setting": f"{ds}, T={int(g['time_steps'].iloc[0])}",
                             "ours (points)": r["ours (points)"], "n_pairs": r["n_pairs"],
                             "exceeds_noise": _na(r["exceeds_noise"]), "ours_mean": r["diff_mean"], "ours_std": r["diff_std"],
                             "paper_low": lo if r["attention"] in ("txa", "tna") else math.nan,
                             "paper_high": hi if r["attention"] in ("txa", "tna") else math.nan})
    p = PAPER_RESULTS.set_index(["dataset", "time_steps", "attention"])["paper_top1"]
    t_gap = p[("cifar100", 6, "dta")] - p[("cifar100", 4, "dta")]
    dvs_gap = p[("cifar10-dvs", 10, "dta")] - p[("cifar10-dvs", 10, "none")]
    # study, column, a, b (ours: a - b per seed), the paper's setting, its difference as text and as a number
    pairs = [("time_steps", "time_steps", 6, 4, "CIFAR100, DTA", f"{t_gap:.2f} (81.16 - 79.94)", t_gap),
             ("dvs", "attention", "dta", "none", "CIFAR10-DVS, T=10", f"{dvs_gap:.2f} (81.3 - 80.4)", dvs_gap),
             ("train", "attention", "dta", "none", "not reported", "not reported", math.nan)]  # notebook 05, study
    for study, col, a, b, setting, text, gap in pairs:
        for ds, g in runs[runs["study"] == study].groupby("dataset") if study in studies else ():
            if not {a, b} <= set(g[col]):
                continue
            d = (g[g[col] == a].set_index("seed")[metric] - g[g[col] == b].set_index("seed")[metric]).dropna()
            mean, std = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else math.nan
            rows.append({"study": study, "comparison": "T=6 - T=4" if col == "time_steps" else "DTA - none",
                         "paper setting": setting, "paper (points)": text,
                         "our setting": f"{ds}, DTA" if col == "time_steps" else f"{ds}, T={int(g['time_steps'].iloc[0])}",
                         "ours (points)": format_mean_std(mean, std), "n_pairs": len(d),
                         "exceeds_noise": _na(exceeds_noise(mean, std, len(d))), "ours_mean": mean, "ours_std": std,
                         "paper_low": gap, "paper_high": gap})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    ci = [t_interval(m, sd, int(n)) for m, sd, n in zip(out["ours_mean"], out["ours_std"], out["n_pairs"])]
    out["ci95 (points)"] = [f"[{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else "n/a (1 seed)" for lo, hi in ci]
    out["ci95_low"], out["ci95_high"] = [lo for lo, _ in ci], [hi for _, hi in ci]
    out["min_detectable_effect"] = [min_detectable_effect(sd, int(n)) for sd, n in zip(out["ours_std"], out["n_pairs"])]
    out["resolves the paper's gap"] = [_resolves(r) for r in out.itertuples()]
    return out


def _resolves(r: Any) -> str:
    """Can these seeds tell the paper's difference from zero? Only if the smallest effect they detect (80 % power,
    95 % level) is at most the paper's (its lower bound for a range)."""
    paper = min(abs(r.paper_low), abs(r.paper_high)) if math.isfinite(r.paper_low) else math.nan
    mde = r.min_detectable_effect
    if not math.isfinite(mde):
        return "no: one seed, no noise estimate"
    if not math.isfinite(paper):
        return f"no paper gap (MDE {mde:.2f})"
    return f"yes (MDE {mde:.2f} <= {paper:.2f})" if mde <= paper else f"no (MDE {mde:.2f} > {paper:.2f})"


def paper_gaps_by_preset(presets: Sequence[str], metric: str = "best_test_acc") -> pd.DataFrame:
    """:func:`paper_gaps` of the recorded runs of each preset (``reports/runs/<preset>/``, through the registry), one
    table with a ``preset`` column; presets without runs are left out."""
    from .paths import recorded

    frames = []
    for preset in presets:
        runs = load_study_runs(recorded(f"runs/{preset}"), preset)
        gaps = paper_gaps(runs, metric) if not runs.empty else pd.DataFrame()
        if not gaps.empty:
            frames.append(gaps.assign(preset=preset))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _na(verdict: bool | None) -> bool | str:
    """A noise verdict for a report table: ``"n/a"`` where it cannot be computed (fewer than 2 seeds)."""
    return "n/a" if verdict is None else bool(verdict)


def study_wall_seconds(runs: pd.DataFrame) -> pd.Series:
    """Total training wall time (``run.json`` ``wall_seconds``, else summed epoch seconds) per study."""
    w = runs["wall_seconds"] if "wall_seconds" in runs.columns else runs["train_seconds"]
    return w.fillna(runs["train_seconds"]).groupby(runs["study"]).sum()


def provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study: preset, datasets, seeds, runs, hardware, threads, total wall time and git commit(s)."""
    def col(g: pd.DataFrame, name: str) -> str:
        if name not in g.columns:
            return "unknown"
        return "; ".join(sorted({str(v) for v in g[name].dropna()})) or "unknown"

    wall = study_wall_seconds(runs)
    rows = []
    for study, g in runs.groupby("study", sort=True):
        rows.append({"study": study, "preset": col(g, "preset"), "dataset": col(g, "dataset"),
                     "seeds": ",".join(str(s) for s in sorted(set(g["seed"]))), "runs": len(g),
                     "hardware": col(g, "hardware.cpu"), "torch threads": col(g, "hardware.torch_threads"),
                     "torch": col(g, "hardware.torch"), "wall time (min)": round(float(wall[study]) / 60, 1),
                     "git commit": ", ".join(c[:10] for c in col(g, "hardware.git_commit").split("; "))})
    return pd.DataFrame(rows)


def describe_runs(runs: pd.DataFrame) -> str:
    """One line of provenance for captions: preset, dataset, seeds, runs, hardware, threads, wall time, commit."""
    if runs.empty:
        raise ValueError("describe_runs: no runs")
    def one(col: str) -> str:
        return ", ".join(sorted({str(v) for v in runs[col].dropna()})) if col in runs.columns else "unknown"
    wall = runs["wall_seconds"].fillna(runs["train_seconds"]) if "wall_seconds" in runs.columns else runs["train_seconds"]
    commits = ", ".join(c[:10] for c in one("hardware.git_commit").split(", "))
    return (f"preset {one('preset')}; dataset {one('dataset')}; seeds {','.join(str(s) for s in sorted(set(runs['seed'])))}; "
            f"{len(runs)} run(s); hardware {one('hardware.cpu')} ({one('hardware.device')}, torch threads "
            f"{one('hardware.torch_threads')}); total training wall time {float(wall.sum()) / 60:.1f} min; git {commits}")


RECORDED_BLOCK = re.compile(r"<!-- recorded: (?P<pattern>\S+) -->(?P<text>.*?)<!-- /recorded -->", re.S)


def recorded_hardware(pattern: str, root: str | os.PathLike[str] = ".") -> str:
    """What the files matching ``pattern`` (relative to ``root``) recorded about their machine and precision, as
    one phrase for prose: a bench file's ``meta`` or each run's ``run.json``. README and docs carry these phrases in
    ``<!-- recorded: PATTERN -->...<!-- /recorded -->`` blocks that :func:`sync_recorded` regenerates and a test
    compares, so a hardware or precision line is never typed by hand."""
    files = sorted(Path(root).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no recorded file matches {pattern} under {root}")
    seen: dict[str, int] = {}
    for f in files:
        d = json.loads(f.read_text())
        if "meta" in d:  # a bench file
            m = d["meta"]
            what = (f"{m['cpu']} ({m['cpu_capability']} kernels), {m['cpu_count']} cores, {m['threads']} "
                    f"thread{'s' * (m['threads'] != 1)}, torch {m['torch'].split('+')[0]}")
        else:  # a run folder's run.json
            h = d["hardware"]
            kernels = f" ({h['cpu_capability']} kernels)" if "cpu_capability" in h else ""
            what = (f"{h['cpu']}{kernels}, {h['cpu_count']} cores, {h['torch_threads']} thread{'s' * (h['torch_threads'] != 1)}"
                    f" per run, {d.get('autocast_dtype') or 'fp32'}, torch {h['torch'].split('+')[0]}")
        seen[what] = seen.get(what, 0) + 1
    if len(files) == 1:
        return next(iter(seen))
    return "; ".join(f"{what} ({n} of {len(files)} runs)" if len(seen) > 1 else f"{what} (all {n} runs)"
                     for what, n in seen.items())


def sync_recorded(text: str, root: str | os.PathLike[str] = ".") -> str:
    """``text`` with every ``<!-- recorded: PATTERN -->`` block refilled from the files it names."""
    return RECORDED_BLOCK.sub(lambda m: f"<!-- recorded: {m['pattern']} -->{recorded_hardware(m['pattern'], root)}"
                              "<!-- /recorded -->", text)
