"""Plots of the studies: training curves, the ablation, the time-step study, any study's per-seed runs, and the
paper's gaps beside ours."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..studies import ATTENTION_LABELS, ablation_paired
from ..studies import PAPER_ABLATION_GAP
from ..studies import _check_columns, t_interval

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


def plot_ablation(df: pd.DataFrame, metric: str = "best_test_acc", title: str = "", baseline: str = "dta") -> Any:
    """The ablation as the paired design it is (seed ``s`` fixes the shared weights' initialisation and the data
    order for every variant).

    Left: each seed's runs joined by a line across the variants, each variant's mean +- sample std beside its points.
    Right: the per-seed differences ``baseline`` - variant (positive: ``baseline`` better; same seed colours), their
    mean with the 95 % t-interval (:func:`dta_lib.studies.ablation_paired`; one pair: a hollow marker, no
    interval) and, for T-XA / T-NA only against DTA, the paper's CIFAR10 gap band
    (:data:`dta_lib.studies.PAPER_ABLATION_GAP`). One legend, right of the panels.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _check_columns(df, ["attention", "seed", metric], "plot_ablation")
    order = [a for a in ATTENTION_LABELS if a in set(df["attention"])]
    wide = df.pivot_table(index="seed", columns="attention", values=metric).reindex(columns=order)
    seeds = list(wide.index)
    cb = sns.color_palette("colorblind", 10)  # reordered: the first five are far apart (no orange beside vermilion)
    colors = {s: cb[[0, 1, 2, 4, 5, 7, 9, 6, 3, 8][i % 10]] for i, s in enumerate(seeds)}
    step = min(0.06, 0.3 / max(len(seeds), 1))
    dodge = {s: (i - (len(seeds) - 1) / 2) * step for i, s in enumerate(seeds)}  # fixed offsets: no RNG, no overlap
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11.5, 4.0), gridspec_kw={"width_ratios": [4, 3]})
    x = np.arange(len(order), dtype=float)
    for s in seeds:
        y = wide.loc[s].to_numpy(dtype=float)
        a0.plot(x + dodge[s], y, "-", color=colors[s], lw=1.1, alpha=0.7, zorder=2)
        a0.scatter(x + dodge[s], y, color=colors[s], s=30, zorder=3)
    means, stds = wide.mean(), wide.std(ddof=1)
    a0.errorbar(x + 0.3, means, yerr=stds.fillna(0.0), fmt="D", ms=6, color="0.2", capsize=4, lw=1.2, zorder=4)
    a0.set_xticks(x, [ATTENTION_LABELS[a].replace(" (", "\n(") for a in order], fontsize=8)
    a0.set_xlim(-0.5, len(order) - 0.3)
    a0.set(ylabel=f"{metric.replace('_', ' ')} (%)", title="per-seed runs (a line joins one seed)")

    others = [a for a in order if a != baseline]
    handles = [Line2D([], [], color=colors[s], marker="o", ms=5, lw=1.1, label=f"seed {s}") for s in seeds]
    handles.append(Line2D([], [], color="0.2", marker="D", ms=5, lw=0, label="mean +- std (left)"))
    if baseline in order and others:
        paired = ablation_paired(df, metric, baseline=baseline).set_index("attention").reindex(others)
        lo_gap, hi_gap = PAPER_ABLATION_GAP
        xd = np.arange(len(others), dtype=float)
        banded = False
        for xi, a in zip(xd, others):
            if baseline == "dta" and a in ("txa", "tna"):
                a1.fill_between([xi - 0.4, xi + 0.45], lo_gap, hi_gap, color="#fdae6b", alpha=0.6, lw=0, zorder=1)
                banded = True
            d = wide[baseline] - wide[a]
            a1.scatter(xi + np.array([dodge[s] for s in d.index]), d, c=[colors[s] for s in d.index], s=30,
                       zorder=3)
            r = paired.loc[a]
            if math.isfinite(r["ci95_low"]):
                err = [[r["diff_mean"] - r["ci95_low"]], [r["ci95_high"] - r["diff_mean"]]]
                a1.errorbar([xi + 0.3], [r["diff_mean"]], yerr=err, fmt="o", ms=6, color="black", capsize=4, lw=1.3,
                            zorder=4)
            else:
                a1.plot([xi + 0.3], [r["diff_mean"]], "o", ms=6, mfc="white", color="black", zorder=4)
        a1.axhline(0, color="0.5", lw=0.8, zorder=0)
        base = ATTENTION_LABELS.get(baseline, baseline).split(" (")[0]
        a1.set_xticks(xd, [f"{base} -\n{ATTENTION_LABELS[a].split(' (')[0]}" for a in others], fontsize=8)
        a1.set_xlim(-0.5, len(others) - 0.3)
        a1.set(ylabel=f"{base} - variant (points)\npositive: {base} better",
               title="paired differences, mean and 95% t-interval")
        handles.append(Line2D([], [], color="black", marker="o", ms=5, lw=1.3,
                              label="mean difference,\n95% t-interval (right)"))
        if banded:
            handles.append(Patch(color="#fdae6b", alpha=0.6,
                                 label=f"paper's gap, CIFAR10\nfull scale: {lo_gap}-{hi_gap}"))
    else:
        a1.text(0.5, 0.5, f"nothing to pair: the differences need\n{baseline!r} runs and at least one other variant",
                ha="center", va="center", transform=a1.transAxes, fontsize=9)
        a1.set_axis_off()
    a1.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(title or "Ablation: paired per-seed runs and differences", fontsize=11)
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


def _ordered_palette(values: Any) -> dict[Any, Any]:
    """Colours for ordered values (the surrogate widths): viridis from dark purple to green, its pale yellow end cut
    off so every line reads on white."""
    import matplotlib

    levels = sorted(set(values))
    cmap = matplotlib.colormaps["viridis"]
    return {v: cmap(0.72 * i / max(len(levels) - 1, 1)) for i, v in enumerate(levels)}


def plot_grad_norms(curves: pd.DataFrame, title: str = "", hue: str = "surrogate_width") -> Any:
    """One panel per epoch: gradient L2 norm per layer, input to output (log scale), one line per ``hue`` value
    (mean, band: sd over seeds). ``curves`` is :func:`dta_lib.studies.grad_norm_curves`' long form."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _check_columns(curves, ["layer", "epoch", "grad_norm", hue], "plot_grad_norms")
    layers = list(dict.fromkeys(curves["layer"]))  # forward order
    epochs = sorted(curves["epoch"].unique())
    palette = _ordered_palette(curves[hue])
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.2 * len(epochs) + 1.0, 3.8), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], epochs):
        sub = curves[curves["epoch"] == e].copy()
        sub["layer"] = pd.Categorical(sub["layer"], layers, ordered=True)
        sns.lineplot(data=sub.sort_values("layer"), x="layer", y="grad_norm", hue=hue, marker="o",
                     palette=palette, ax=ax, errorbar="sd", sort=False)
        ax.set(yscale="log", title=f"epoch {e}", xlabel="layer (input -> output)",
               ylabel="gradient L2 norm (RMS over steps)")
        ax.tick_params(axis="x", rotation=60)
        ax.get_legend().remove()
    # one legend, right of the last panel, over no data
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, title="gamma", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0.0)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_vanishing_check(ratio: pd.DataFrame, accuracy: pd.DataFrame, title: str = "", vanishing: float = 0.1,
                         exploding: float = 10.0, chance: float = 10.0, hue: str = "surrogate_width") -> Any:
    """Left: the stem/fc gradient ratio per epoch (log scale) with the rule's ``vanishing`` / ``exploding`` lines
    (both kept inside the axis); right: test accuracy per epoch with ``chance``; one legend below the panels, so it
    hides no line. ``ratio``: :func:`dta_lib.studies.gradient_ratio`; ``accuracy``: per-epoch records with
    ``epoch``, ``test_acc`` and ``hue``. Widths in :func:`_ordered_palette`'s colours (no yellow on white)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    _check_columns(ratio, ["epoch", "ratio", hue], "plot_vanishing_check")
    _check_columns(accuracy, ["epoch", "test_acc", hue], "plot_vanishing_check")
    epochs = sorted(ratio["epoch"].unique())
    palette = _ordered_palette([*ratio[hue], *accuracy[hue]])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.2))
    sns.lineplot(data=ratio, x="epoch", y="ratio", hue=hue, marker="o", palette=palette, ax=a0, errorbar="sd")
    a0.set(yscale="log", title="stem / fc gradient norm", ylabel="ratio (log scale)")
    rules = [a0.axhline(vanishing, ls="--", c="crimson", lw=1, label=f"{vanishing:g} (vanishing rule)"),
             a0.axhline(exploding, ls="--", c="darkorange", lw=1, label=f"{exploding:g} (exploding rule)")]
    y0, y1 = a0.get_ylim()
    a0.set_ylim(min(y0, vanishing / 2), max(y1, exploding * 2))  # both rule lines inside, off the frame
    sns.lineplot(data=accuracy, x="epoch", y="test_acc", hue=hue, marker="o", palette=palette, ax=a1, errorbar="sd")
    rules.append(a1.axhline(chance, ls=":", c="0.4", lw=1, label=f"{chance:g}% (chance)"))
    a1.set(title="test accuracy", ylabel="top-1 (%)")
    for a in (a0, a1):
        a.set_xticks(epochs)
        a.get_legend().remove()
    # one legend below both panels, so it covers neither the rule lines nor the curves
    handles = [Line2D([], [], color=c, marker="o", ms=5, label=f"gamma = {v:g}") for v, c in palette.items()] + rules
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_firing_rates(rates: pd.DataFrame, per_step: pd.DataFrame, order: Sequence[str], title: str = "") -> Any:
    """Left: mean firing rate per LIF layer and model (bars, ``order``); right: rate per time step (mean over
    layers, band: min-max). Inputs: :func:`dta_lib.studies.firing_rates_by_model`."""
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
    Inputs: :func:`dta_lib.studies.energy_per_layer`. Returns the Figure."""
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
