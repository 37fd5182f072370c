"""Helpers for the study notebooks 05 (one run), 06 (ablation), 07 (time steps) and 10 (report).

- :func:`live_run`: train (or reuse) one run of a study and call back after every epoch with the
  curves so far (read from the run's ``metrics.jsonl``), for live plots in a notebook.
- :func:`ablation_summary` / :func:`ablation_paired` / :func:`noise_verdicts`: the paper's ablation
  (none / T-XA / T-NA / DTA) as mean +- std per variant and per-seed paired differences against
  full DTA beside the paper's CIFAR10 gaps (``reference-spec.md``: 0.4-0.8 points).
- :func:`measure_step_memory`: peak resident memory of one BPTT training step per configuration,
  measured in a fresh subprocess (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``).
- :func:`load_study_runs`, :func:`study_summary`, :func:`paper_gaps`, :func:`provenance`: what
  notebook 10 renders from every run recorded under ``reports/runs/<preset>/``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .engine.config import make_config
from .experiments import RUNS, run_dir, run_one
from .report import (PAPER_ABLATION_GAP, PAPER_RESULTS, exceeds_noise, format_mean_std, load_run, paired_differences,
                     t_critical, t_interval)

__all__ = [
    "ATTENTION_LABELS",
    "PAPER_T_GAP",
    "PAPER_DVS_GAP",
    "live_run",
    "read_history",
    "plot_curves",
    "ablation_summary",
    "ablation_paired",
    "noise_verdicts",
    "plot_ablation",
    "measure_step_memory",
    "time_step_table",
    "plot_time_steps",
    "load_study_runs",
    "study_summary",
    "paper_gaps",
    "provenance",
    "plot_study",
    "study_wall_seconds",
    "describe_runs",
    "plot_paper_gaps",
]

#: display names of the attention variants (paper Table "ablation")
ATTENTION_LABELS = {"none": "none (MS-ResNet)", "txa": "T-XA only", "tna": "T-NA only", "dta": "DTA (T-XA x T-NA)"}
#: CIFAR100 T=4 -> T=6 (paper, reference-spec.md "Headline results"): 79.94 -> 81.16
PAPER_T_GAP = ("cifar100", 4, 6)
#: CIFAR10-DVS T=10: DTA 81.3 vs baseline 80.4 (paper summary)
PAPER_DVS_GAP = ("cifar10-dvs", 10)


# ----------------------------------------------------------------------------- 05: one run, live curves
def read_history(out: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-epoch records of a run folder (empty frame while no epoch has finished)."""
    path = Path(out) / "metrics.jsonl"
    if not path.is_file():
        return pd.DataFrame()
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    return pd.DataFrame([json.loads(x) for x in lines])


def live_run(
    study: str,
    dataset: str,
    preset: str,
    variant: dict[str, Any],
    seed: int,
    on_epoch: Callable[[pd.DataFrame], None] | None = None,
    reuse: bool = True,
    poll_seconds: float = 0.5,
    root: str | os.PathLike[str] = RUNS,
    **common: Any,
) -> dict[str, Any]:
    """:func:`dta_lib.experiments.run_one` with a callback after every finished epoch.

    The run trains in a worker thread; this thread polls the run's ``metrics.jsonl``
    (written atomically once per epoch) and calls ``on_epoch(history)`` whenever a new
    epoch appears, and once more at the end with the whole history. A reused run calls
    back once. Errors of the run are re-raised here. Returns ``run_one``'s row.
    """
    if poll_seconds <= 0:
        raise ValueError(f"poll_seconds must be > 0, got {poll_seconds!r}")
    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    out = run_dir(study, cfg, variant, root)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["row"] = run_one(study, dataset, preset, variant, seed, root=root, reuse=reuse, **common)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = e

    worker = threading.Thread(target=work, name=f"live_run:{study}", daemon=True)
    worker.start()
    shown = 0
    while worker.is_alive():
        worker.join(poll_seconds)
        if worker.is_alive() and on_epoch is not None:
            hist = read_history(out)
            if len(hist) > shown:
                shown = len(hist)
                on_epoch(hist)
    if "error" in result:
        raise result["error"]
    if on_epoch is not None:
        on_epoch(read_history(out))
    return result["row"]


def plot_curves(history: pd.DataFrame, axes: Sequence[Any] | None = None, title: str = "") -> Any:
    """Loss and accuracy (train / test) per epoch; draws into ``axes`` (2 axes) or a new figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    else:
        fig = axes[0].figure
        for ax in axes:
            ax.clear()
    if len(history):
        ep = history["epoch"]
        axes[0].plot(ep, history["train_loss"], "o-", label="train")
        axes[0].plot(ep, history["test_loss"], "s-", label="test")
        axes[1].plot(ep, history["train_acc"], "o-", label="train (CutMix batches)")
        axes[1].plot(ep, history["test_acc"], "s-", label="test")
        for ax in axes:
            ax.set_xticks(list(ep))
            ax.legend(fontsize=8)
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="top-1 accuracy")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 06: ablation
def _check_columns(df: pd.DataFrame, need: Sequence[str], what: str) -> None:
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the runs table lacks columns {missing}; expected run_study/load_runs rows")


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

    ``ci95_low`` / ``ci95_high``: the t-based 95 % interval of the mean per-seed difference; ``exceeds_noise``:
    that interval excludes 0 (:func:`dta_lib.report.exceeds_noise`; ``None``, shown as n/a, with one seed).
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
        rows.append({
            "comparison": f"DTA - {ATTENTION_LABELS.get(r['attention'], r['attention'])}",
            "attention": r["attention"],
            "n_pairs": int(r["n_pairs"]),
            "diff_mean": r["diff_mean"],
            "diff_std": r["diff_std"],
            "std_error": se,
            "ci95_low": lo_ci,
            "ci95_high": hi_ci,
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
            out.append(head + f"; {ci}): the interval excludes 0, {who}.")
        else:
            out.append(head + f"; {ci}): the interval includes 0: no difference shown.")
    return out


def plot_ablation(df: pd.DataFrame, metric: str = "best_test_acc", title: str = "") -> Any:
    """Per-seed points and, per attention variant, its mean (horizontal bar) +- sample std over seeds.

    The y-axis is zoomed to the data, so means are drawn as bars across the points, not as columns from 0.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    _check_columns(df, ["attention", "seed", metric], "plot_ablation")
    order = [a for a in ATTENTION_LABELS if a in set(df["attention"])]
    d = df.assign(variant=df["attention"].map(ATTENTION_LABELS), seed=df["seed"].astype(str))
    labels = [ATTENTION_LABELS[a] for a in order]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    with _seeded_jitter():
        sns.stripplot(data=d, x="variant", y=metric, order=labels, hue="seed", dodge=False, size=7, jitter=0.12, ax=ax)
    for i, lab in enumerate(labels):
        v = d.loc[d["variant"] == lab, metric]
        std = v.std(ddof=1) if len(v) > 1 else 0.0
        ax.errorbar([i], [v.mean()], yerr=[std], fmt="_", markersize=36, mew=2.5, color="0.45", capsize=5,
                    elinewidth=1, zorder=1, label="mean +- std" if i == 0 else None)
    lo = d[metric].min()
    hi = d[metric].max()
    pad = max(2.0, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax.set(xlabel="", ylabel=f"{metric.replace('_', ' ')} (%)", title=title or "Ablation: per-seed runs (points), mean +- std (bars)")
    ax.legend(title="seed", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 07: time steps and memory
_CHILD = r"""
import ctypes, gc, json, sys, time, torch
from dta_lib.config import make_config
from dta_lib.train import build_model, get_data_info
import torch.nn.functional as F

def status():
    d = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if l.startswith('Vm'))
    return {k: int(d[k].split()[0]) for k in ('VmHWM', 'VmRSS')}

out = []
for spec in json.loads(sys.argv[1]):
    cfg = make_config(**spec)
    torch.set_num_threads(cfg.threads or 1)
    torch.manual_seed(0)
    info = get_data_info(cfg.dataset)
    model = build_model(cfg, info).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    shape = (cfg.batch_size, cfg.time_steps, info.in_channels, info.image_size, info.image_size) if info.is_event \
        else (cfg.batch_size, info.in_channels, info.image_size, info.image_size)
    x = torch.rand(shape)
    y = torch.randint(0, info.num_classes, (cfg.batch_size,))
    def step():
        loss = F.cross_entropy(model(x).mean(1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()  # warm-up: optimizer buffers, gradients, allocator pools
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)  # hand freed heap back, so the step's peak is not hidden in it
    before = status()['VmRSS']
    open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS
    c0 = time.process_time()
    step()
    s = status()
    for _ in range(2):  # two more steps for the CPU time (process time: insensitive to other jobs' load)
        step()
    out.append({'time_steps': cfg.time_steps, 'rss_before_mib': before / 1024, 'peak_rss_mib': s['VmHWM'] / 1024,
                'step_mib': (s['VmHWM'] - before) / 1024, 'step_cpu_s': (time.process_time() - c0) / 3})
    del model, opt, x, y
    gc.collect()
print(json.dumps(out))
"""


#: extra environment of the measuring subprocess (tests may pin glibc's mmap threshold here)
MALLOC_ENV: dict[str, str] = {}


def measure_step_memory(specs: Sequence[dict[str, Any]], timeout: float = 600.0) -> pd.DataFrame:
    """Peak resident memory of one training step (forward + BPTT backward + SGD step) per config.

    Each spec is ``make_config`` keyword arguments (``dataset``, ``preset``, overrides).
    Runs in one fresh Python subprocess (so the notebook's own memory does not count): per
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
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(list(specs))], capture_output=True, text=True,
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


def plot_time_steps(table: pd.DataFrame, title: str = "") -> Any:
    """Accuracy, seconds per epoch and step memory against T (one panel each)."""
    import matplotlib.pyplot as plt

    metric = next(c for c in table.columns if c.endswith("_mean"))
    panels = [(metric, "accuracy (%)", "test accuracy"), ("seconds_per_epoch", "s / epoch (wall)", "wall time per epoch\n(as recorded; shared machine)")]
    if "step_cpu_s" in table.columns and table["step_cpu_s"].notna().any():
        panels.append(("step_cpu_s", "CPU s / step (1 thread)", "CPU time of one step"))
    if "step_mib" in table.columns and table["step_mib"].notna().any():
        panels.append(("step_mib", "MiB", "memory of one training step"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2))
    for ax, (col, ylabel, name) in zip(axes, panels):
        ax.plot(table["time_steps"], table[col], "o-")
        if col == metric and table[metric.replace("_mean", "_std")].notna().any():
            ax.errorbar(table["time_steps"], table[col], yerr=table[metric.replace("_mean", "_std")], fmt="none", capsize=3)
        ax.set(xlabel="time steps T", ylabel=ylabel, title=name, xticks=list(table["time_steps"]))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- 10: report over recorded runs
def load_study_runs(preset_root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every finished run below ``reports/runs/<preset>/``: load_run's row plus ``study`` and ``variant``.

    The layout is ``<preset_root>/<study>/<dataset>/<variant>-s<seed>/`` (:func:`dta_lib.experiments.run_dir`).
    Runs whose ``run.json`` status is not ``completed`` are left out. Missing folder: empty frame.
    """
    root = Path(preset_root)
    rows = []
    if root.is_dir():
        for m in sorted(root.glob("*/*/*/metrics.jsonl")):
            run = m.parent
            try:
                status = json.loads((run / "run.json").read_text()).get("status")
            except (OSError, ValueError):
                status = None
            if status != "completed":
                continue
            row = load_run(run)
            row["study"] = run.parent.parent.name
            row["variant"] = run.name.rsplit("-s", 1)[0]
            row["run"] = str(run.relative_to(root))
            rows.append(row)
    return pd.DataFrame(rows)


#: config fields that may distinguish variants in a study (shown as group keys when they vary)
_KEYS = ("dataset", "attention", "time_steps", "surrogate_width", "surrogate", "width", "epochs", "subset", "precision")


def study_summary(runs: pd.DataFrame, study: str, metric: str = "best_test_acc") -> pd.DataFrame:
    """One row per (dataset, variant) of ``study``: the varying config fields, mean +- std of ``metric``,
    final test accuracy and the train/test gap (final train minus final test accuracy)."""
    sub = runs[runs["study"] == study]
    if sub.empty:
        raise ValueError(f"no runs of study {study!r}; have {sorted(set(runs.get('study', [])))}")
    keys = ["dataset"] + [k for k in _KEYS[1:] if k in sub.columns and sub[k].nunique(dropna=False) > 1]
    if len(keys) == 1 and "attention" in sub.columns:
        keys.append("attention")
    if "time_steps" not in keys:
        keys.append("time_steps")
    rows = []
    for vals, g in sub.groupby(keys, sort=True, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        def ms(col: str) -> str:
            return format_mean_std(g[col].mean(), g[col].std(ddof=1) if len(g) > 1 else math.nan)
        rows.append({**dict(zip(keys, vals)), "seeds": ",".join(str(s) for s in sorted(g["seed"])),
                     f"{metric}_mean": round(float(g[metric].mean()), 2), metric: ms(metric),
                     "final_test_acc": ms("final_test_acc"), "train_test_gap": ms("train_test_gap")})
    return pd.DataFrame(rows)


def _mean_by(sub: pd.DataFrame, col: str, value: Any, metric: str) -> tuple[float, float, int]:
    g = sub[sub[col] == value][metric]
    return float(g.mean()), float(g.std(ddof=1)) if len(g) > 1 else math.nan, len(g)


def paper_gaps(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """The paper's comparisons beside ours, for the studies present.

    - ablation: DTA - T-XA, DTA - T-NA, DTA - none (paper CIFAR10: 0.4-0.8 for T-XA / T-NA);
    - time_steps: accuracy at T=6 minus T=4 (paper CIFAR100: 81.16 - 79.94);
    - dvs: DTA - none at T=10 (paper CIFAR10-DVS: 81.3 - 80.4).
    Ours are mean +- std of per-seed paired differences; ``exceeds_noise`` as in :func:`ablation_paired`
    (``"n/a"`` with one seed).
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
    if "time_steps" in studies:
        ts = runs[runs["study"] == "time_steps"]
        p = PAPER_RESULTS.set_index(["dataset", "time_steps", "attention"])["paper_top1"]
        paper = p[("cifar100", 6, "dta")] - p[("cifar100", 4, "dta")]
        for ds, g in ts.groupby("dataset"):
            if not {4, 6} <= set(g["time_steps"]):
                continue
            d = (g[g["time_steps"] == 6].set_index("seed")[metric] - g[g["time_steps"] == 4].set_index("seed")[metric]).dropna()
            std = float(d.std(ddof=1)) if len(d) > 1 else math.nan
            rows.append({"study": "time_steps", "comparison": "T=6 - T=4", "paper setting": "CIFAR100, DTA",
                         "paper (points)": f"{paper:.2f} (81.16 - 79.94)", "our setting": f"{ds}, DTA",
                         "ours (points)": format_mean_std(float(d.mean()), std), "n_pairs": len(d),
                         "exceeds_noise": _na(exceeds_noise(float(d.mean()), std, len(d))), "ours_mean": float(d.mean()),
                         "ours_std": std, "paper_low": paper, "paper_high": paper})
    if "dvs" in studies:
        dv = runs[runs["study"] == "dvs"]
        p = PAPER_RESULTS.set_index(["dataset", "time_steps", "attention"])["paper_top1"]
        paper = p[("cifar10-dvs", 10, "dta")] - p[("cifar10-dvs", 10, "none")]
        for ds, g in dv.groupby("dataset"):
            if not {"dta", "none"} <= set(g["attention"]):
                continue
            d = (g[g["attention"] == "dta"].set_index("seed")[metric] - g[g["attention"] == "none"].set_index("seed")[metric]).dropna()
            std = float(d.std(ddof=1)) if len(d) > 1 else math.nan
            rows.append({"study": "dvs", "comparison": "DTA - none", "paper setting": "CIFAR10-DVS, T=10",
                         "paper (points)": f"{paper:.2f} (81.3 - 80.4)", "our setting": f"{ds}, T={int(g['time_steps'].iloc[0])}",
                         "ours (points)": format_mean_std(float(d.mean()), std), "n_pairs": len(d),
                         "exceeds_noise": _na(exceeds_noise(float(d.mean()), std, len(d))), "ours_mean": float(d.mean()),
                         "ours_std": std, "paper_low": paper, "paper_high": paper})
    return pd.DataFrame(rows)


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


@contextlib.contextmanager
def _seeded_jitter(seed: int = 0) -> Iterator[None]:
    """seaborn's strip-plot jitter draws from NumPy's global RNG: fix it for the plot, then restore it,
    so a figure rendered twice from the same runs is the same image."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def plot_study(runs: pd.DataFrame, study: str, metric: str = "best_test_acc", title: str = "") -> Any:
    """Per-seed points over mean bars of ``metric`` for each variant of ``study`` (seaborn)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sub = runs[runs["study"] == study].copy()
    if sub.empty:
        raise ValueError(f"no runs of study {study!r}")
    sub["label"] = sub["dataset"] + "\n" + sub["variant"].str.replace(",", "\n")
    order = sorted(set(sub["label"]))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(order)), 3.8))
    with _seeded_jitter():
        sns.stripplot(data=sub, x="label", y=metric, order=order, color="#08519c", size=6, jitter=0.1, ax=ax)
    # mean +- sample std as a marker with error bars; the axis is zoomed to the data (no bars from 0 that would
    # flatten the differences between variants)
    stats = sub.groupby("label")[metric].agg(["mean", "std"]).reindex(order)
    ax.errorbar(range(len(order)), stats["mean"], yerr=stats["std"].fillna(0.0), fmt="_", markersize=28,
                color="#e6550d", ecolor="#e6550d", capsize=5, lw=1.5, zorder=3, label="mean +- std over seeds")
    ax.legend(fontsize=7, loc="best")
    ax.set(xlabel="", ylabel=f"{metric.replace('_', ' ')} (%)", title=title or study)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


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


def plot_paper_gaps(gaps: pd.DataFrame, title: str = "") -> Any:
    """Our paired differences (mean +- std over seeds) beside the paper's gap (shaded range or marker)."""
    import matplotlib.pyplot as plt

    if gaps.empty:
        raise ValueError("plot_paper_gaps: no comparisons to draw")
    labels = [f"{r.study}: {r.comparison}" for r in gaps.itertuples()]
    y = list(range(len(gaps)))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(gaps) + 1.4))
    for yi, r in zip(y, gaps.itertuples()):
        if math.isfinite(r.paper_low):
            if r.paper_high > r.paper_low:
                ax.fill_betweenx([yi - 0.3, yi + 0.3], r.paper_low, r.paper_high, color="#fdae6b", alpha=0.8,
                                 label="paper (its setting)" if yi == y[0] or "paper (its setting)" not in
                                 ax.get_legend_handles_labels()[1] else None)
            else:
                ax.plot([r.paper_low], [yi], "D", color="#e6550d", label="paper (its setting)" if "paper (its setting)"
                        not in ax.get_legend_handles_labels()[1] else None)
        ax.errorbar([r.ours_mean], [yi], xerr=[[0 if not math.isfinite(r.ours_std) else r.ours_std]], fmt="o",
                    color="#08519c", capsize=4, label="ours (mean +- std over seeds)" if "ours (mean +- std over seeds)"
                    not in ax.get_legend_handles_labels()[1] else None)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set(xlabel="difference (accuracy points)", title=title or "Paper vs ours: differences between settings")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


#: training images of the paper's datasets (the recipes' ``subset=None``), for the compute estimate
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167, "cifar10-dvs": 9_000}


def training_macs_per_image(dataset: str, time_steps: int, attention: str = "dta") -> int:
    """Dense MACs of one forward pass of the paper-size model of ``dataset`` on one image, all ``T`` steps
    (counted by ``torch.utils.flop_counter`` on the meta device: nothing is allocated or computed)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .engine.config import make_config
    from .data import dataset_info
    from .engine import build_model, get_data_info

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
    from .engine.config import make_config

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
