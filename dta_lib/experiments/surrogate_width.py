"""The surrogate-width study (notebook 09): accuracy per triangle half-width, per-layer gradient norms over training
(``metrics.jsonl`` ``grad_norms``), the first-to-last-layer ratio and the vanishing-gradient rule applied to it.

The rule (:func:`diagnose_widths`), per width at the last epoch: **vanishing** when the stem/fc gradient ratio is
below :data:`VANISHING_RATIO` and below the release width's; **exploding** when it is above :data:`EXPLODING_RATIO`
and above the release width's; **not learning** when the final test accuracy is within :data:`CHANCE_MARGIN`
points of chance; otherwise **healthy**."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from ..engine.runfolder import read_metrics
from .stats import bonferroni_interval, mean_std_table, paired_verdicts, t_interval

__all__ = [
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
]

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
    (:func:`~dta_lib.experiments.stats.bonferroni_interval`, each at ``1 - (1 - level) / m``, so the ``m``
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
