"""The ablation (paper Table 3): none / T-XA / T-NA / DTA as mean +- std per variant, and per-seed paired
differences against full DTA with t-based intervals, beside the paper's CIFAR10 gaps (0.4-0.8 points)."""
from __future__ import annotations

import math

import pandas as pd

from .paper import PAPER_ABLATION_GAP
from .stats import (
    _check_columns,
    bonferroni_interval,
    exceeds_noise,
    format_mean_std,
    min_detectable_effect,
    paired_differences,
    t_critical,
    t_interval,
)

__all__ = [
    "ATTENTION_LABELS",
    "ablation_summary",
    "ablation_paired",
    "noise_verdicts",
]

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
    :func:`dta_lib.experiments.bonferroni_interval`), so that all intervals hold together at 95 %;
    ``min_detectable_effect``: the smallest true difference these pairs detect with 80 % power at the 95 % level
    (:func:`dta_lib.experiments.min_detectable_effect`); ``exceeds_noise``:
    that interval excludes 0 (:func:`dta_lib.experiments.exceeds_noise`; ``None``, shown as n/a, with one seed).
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
