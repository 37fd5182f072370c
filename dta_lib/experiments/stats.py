"""Statistics for a few seeds: mean +- sample std, paired differences with t-based intervals, the minimum
detectable effect, and whether a difference exceeds the seed noise."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

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
]


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
