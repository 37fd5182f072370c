"""Turn recorded runs into the paper-vs-ours tables (pandas) and write them atomically.

A *run* is a folder holding ``config.json`` (the training configuration), ``metrics.jsonl``
(one JSON object per epoch) and optionally ``run.json`` (hardware, versions, git commit,
wall time). :func:`load_runs` finds every run below a folder and returns one row per run.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .atomic import atomic_write_text

__all__ = [
    "PAPER_RESULTS",
    "PAPER_ABLATION_GAP",
    "load_run",
    "load_runs",
    "load_curves",
    "summarize",
    "paired_differences",
    "exceeds_noise",
    "t_critical",
    "t_interval",
    "min_detectable_effect",
    "paper_vs_ours",
    "format_mean_std",
    "write_table",
]

#: Headline top-1 accuracies from the paper summary (reference-spec.md, "Headline results").
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


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def load_run(path: str | os.PathLike) -> dict:
    """One run folder -> a flat dict: its config, run metadata and summary metrics.

    Summary: ``epochs``, ``best_test_acc``, ``final_test_acc``, ``final_train_acc``,
    ``final_train_loss``, ``train_seconds`` (sum of per-epoch seconds) and
    ``train_test_gap`` (final train minus final test accuracy).
    """
    p = Path(path)
    metrics = p / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"not a run folder: {p} has no metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"run {p}: metrics.jsonl is empty (the run recorded no epoch)")
    row: dict = {"run": str(p)}
    for name in ("config.json", "run.json"):
        f = p / name
        if f.is_file():
            row.update(_flatten(json.loads(f.read_text())))
    last = rows[-1]
    accs = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    row.update(
        epochs=len(rows),
        best_test_acc=max(accs) if accs else math.nan,
        final_test_acc=last.get("test_acc", math.nan),
        final_train_acc=last.get("train_acc", math.nan),
        final_train_loss=last.get("train_loss", math.nan),
        train_seconds=sum(r.get("seconds", 0.0) for r in rows),
    )
    row["train_test_gap"] = row["final_train_acc"] - row["final_test_acc"]
    return row


def load_runs(root: str | os.PathLike, pattern: str = "**/metrics.jsonl") -> pd.DataFrame:
    """Every run below ``root`` (folders holding ``metrics.jsonl``), one row each, sorted by path."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no runs folder at {root}")
    rows = [load_run(m.parent) for m in sorted(root.glob(pattern))]
    return pd.DataFrame(rows)


def load_curves(runs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in long form (one row per run and epoch), with the run path."""
    frames = []
    for r in runs:
        lines = (Path(r) / "metrics.jsonl").read_text().splitlines()
        df = pd.DataFrame([json.loads(x) for x in lines if x.strip()])
        df["run"] = str(r)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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


def paper_vs_ours(ours: pd.DataFrame, keys: Sequence[str] = ("dataset", "time_steps", "attention")) -> pd.DataFrame:
    """Join our summarised runs with :data:`PAPER_RESULTS` on ``keys`` (outer: shows both sides' gaps)."""
    return PAPER_RESULTS.merge(ours, on=list(keys), how="outer")


def write_table(df: pd.DataFrame, stem: str | os.PathLike, caption: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (markdown table, caption above) atomically."""
    stem = Path(stem)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(csv, df.to_csv(index=False))
    body = df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False)
    atomic_write_text(md, (f"{caption}\n\n" if caption else "") + body + "\n")
    return csv, md


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
