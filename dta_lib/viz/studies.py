"""Plots of the studies: training curves, the ablation, the time-step study, any study's per-seed runs, and the
paper's gaps beside ours."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..experiments.ablation import ATTENTION_LABELS
from ..experiments.stats import _check_columns, t_interval

__all__ = [
    "plot_curves",
    "plot_curve_comparison",
    "plot_ablation",
    "plot_time_steps",
    "plot_study",
    "plot_paper_gaps",
    "plot_grad_norms",
    "plot_vanishing_check",
    "plot_firing_rates",
    "plot_energy_per_layer",
]


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
        axes[1].plot(ep, history["train_acc"], "o-", label="train (augmented batches)")
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


def plot_curve_comparison(histories: dict[str, pd.DataFrame], title: str = "") -> Any:
    """Test accuracy and training loss per epoch of several runs (one line per label of ``histories``)."""
    import matplotlib.pyplot as plt

    if not histories:
        raise ValueError("plot_curve_comparison: no histories given")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (label, h) in enumerate(histories.items()):
        axes[0].plot(h["epoch"], h["test_acc"], "os^v"[i % 4] + "-", label=label)
        axes[1].plot(h["epoch"], h["train_loss"], "os^v"[i % 4] + "-", label=label)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    axes[1].set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    for ax in axes:
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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


def plot_paper_gaps(gaps: pd.DataFrame, title: str = "") -> Any:
    """Our paired differences (mean and 95 % t-interval over seeds; one seed: a hollow marker, no interval) beside
    the paper's gap (shaded range or marker). A ``preset`` column, when present, joins the labels."""
    import matplotlib.pyplot as plt

    if gaps.empty:
        raise ValueError("plot_paper_gaps: no comparisons to draw")
    labels = [(f"{r.preset} " if "preset" in gaps else "") + f"{r.study}: {r.comparison} (n={r.n_pairs})"
              for r in gaps.itertuples()]
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
        lo, hi = t_interval(r.ours_mean, r.ours_std, int(r.n_pairs))
        known = ax.get_legend_handles_labels()[1]
        if math.isfinite(lo):
            ax.errorbar([r.ours_mean], [yi], xerr=[[r.ours_mean - lo], [hi - r.ours_mean]], fmt="o", color="#08519c",
                        capsize=4, label="ours: mean, 95% t-interval" if "ours: mean, 95% t-interval" not in known
                        else None)
        else:
            ax.plot([r.ours_mean], [yi], "o", mfc="white", color="#08519c",
                    label="ours: one seed, no interval" if "ours: one seed, no interval" not in known else None)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set(xlabel="difference (accuracy points)", title=title or "Paper vs ours: differences between settings")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_grad_norms(curves: pd.DataFrame, title: str = "", hue: str = "surrogate_width") -> Any:
    """One panel per epoch: gradient L2 norm per layer, input to output (log scale), one line per ``hue`` value
    (mean, band: sd over seeds). ``curves`` is :func:`dta_lib.experiments.grad_norm_curves`' long form."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _check_columns(curves, ["layer", "epoch", "grad_norm", hue], "plot_grad_norms")
    layers = list(dict.fromkeys(curves["layer"]))  # forward order
    epochs = sorted(curves["epoch"].unique())
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.2 * len(epochs), 3.8), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], epochs):
        sub = curves[curves["epoch"] == e].copy()
        sub["layer"] = pd.Categorical(sub["layer"], layers, ordered=True)
        sns.lineplot(data=sub.sort_values("layer"), x="layer", y="grad_norm", hue=hue, marker="o",
                     palette="viridis", ax=ax, errorbar="sd", sort=False)
        ax.set(yscale="log", title=f"epoch {e}", xlabel="layer (input -> output)",
               ylabel="gradient L2 norm (RMS over steps)")
        ax.tick_params(axis="x", rotation=60)
        ax.legend(title="gamma", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_vanishing_check(ratio: pd.DataFrame, accuracy: pd.DataFrame, title: str = "", vanishing: float = 0.1,
                         exploding: float = 10.0, chance: float = 10.0, hue: str = "surrogate_width") -> Any:
    """Left: the stem/fc gradient ratio per epoch (log scale) with the rule's ``vanishing`` / ``exploding`` lines;
    right: test accuracy per epoch with ``chance``. ``ratio``: :func:`dta_lib.experiments.gradient_ratio`;
    ``accuracy``: per-epoch records with ``epoch``, ``test_acc`` and ``hue``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _check_columns(ratio, ["epoch", "ratio", hue], "plot_vanishing_check")
    _check_columns(accuracy, ["epoch", "test_acc", hue], "plot_vanishing_check")
    epochs = sorted(ratio["epoch"].unique())
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(data=ratio, x="epoch", y="ratio", hue=hue, marker="o", palette="viridis", ax=a0, errorbar="sd")
    a0.set(yscale="log", title="stem / fc gradient norm", ylabel="ratio (log scale)")
    a0.axhline(vanishing, ls="--", c="crimson", lw=1, label=f"{vanishing:g} (vanishing rule)")
    a0.axhline(exploding, ls="--", c="darkorange", lw=1, label=f"{exploding:g} (exploding rule)")
    a0.legend(title="gamma", fontsize=8)
    sns.lineplot(data=accuracy, x="epoch", y="test_acc", hue=hue, marker="o", palette="viridis", ax=a1, errorbar="sd")
    a1.axhline(chance, ls=":", c="0.4", lw=1, label="chance")
    a1.set(title="test accuracy", ylabel="top-1 (%)")
    a1.legend(title="gamma", fontsize=8)
    for a in (a0, a1):
        a.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_firing_rates(rates: pd.DataFrame, per_step: pd.DataFrame, order: Sequence[str], title: str = "") -> Any:
    """Left: mean firing rate per LIF layer and model (bars, ``order``); right: rate per time step (mean over
    layers, band: min-max). Inputs: :func:`dta_lib.experiments.firing_rates_by_model`."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _check_columns(rates, ["name", "rate", "model"], "plot_firing_rates")
    _check_columns(per_step, ["t", "rate", "model"], "plot_firing_rates")
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    sns.barplot(data=rates, x="name", y="rate", hue="model", order=list(order), ax=a0, palette="Set2")
    a0.set(title="mean firing rate per LIF layer", xlabel="LIF layer (input -> output)", ylabel="spikes / neuron / step")
    a0.tick_params(axis="x", rotation=70)
    sns.lineplot(data=per_step, x="t", y="rate", hue="model", style="model", estimator="mean", errorbar=("pi", 100),
                 ax=a1, palette="Set2", marker="o")
    a1.set(title="firing rate per time step (mean over layers; band: min-max)", xlabel="time step t", ylabel="rate",
           xticks=sorted(per_step["t"].unique()))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_energy_per_layer(per_layer: pd.DataFrame, order: Sequence[str], title: str = "") -> Any:
    """Energy per layer and image (log scale), one panel per model, bars coloured by the kind of arithmetic.
    Inputs: :func:`dta_lib.experiments.energy_per_layer`. Returns the Figure."""
    import seaborn as sns

    _check_columns(per_layer, ["name", "energy (nJ)", "kind", "model"], "plot_energy_per_layer")
    g = sns.catplot(data=per_layer, x="name", y="energy (nJ)", hue="kind", col="model", kind="bar", order=list(order),
                    height=4.2, aspect=2.0,
                    palette={"AC (spike-fed)": "tab:blue", "MAC (real-fed)": "tab:red", "mixed": "0.5"}, dodge=False)
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=80, labelsize=7)
        ax.set(yscale="log", xlabel="layer")
    g.figure.suptitle(title, y=1.03)
    return g.figure
