"""All plotting (matplotlib + seaborn), in the order of the notebooks: mechanism figures (LIF, surrogates, T-XA / T-NA
maps, the DTA gate), event frames and the study figures. Every function returns its Figure (inputs:
``torch.Tensor`` or ``numpy.ndarray``); :func:`save_figure` writes it."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import Tensor

from .atomic import atomic_write
from .paths import output_root
from .snn.surrogate import Surrogate
from .studies import ATTENTION_LABELS, PAPER_ABLATION_GAP, _check_columns, ablation_paired

ArrayLike = Tensor | np.ndarray


def _np(x: ArrayLike, what: str, *dims: int) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)
    if a.ndim not in dims:
        raise ValueError(f"{what} must have {' or '.join(map(str, dims))} dims, got shape {a.shape}")
    return a


def _finish(fig: Any, title: str = "", tight: bool = True, **suptitle: Any) -> Any:
    if title:
        fig.suptitle(title, **suptitle)
    if tight:
        fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` (``.png``, ``.pdf`` or ``.svg``) atomically and return its path; a relative ``path`` goes under
    ``figures/`` of :func:`dta_lib.paths.output_root`. PNGs carry no ``Software`` tag (no matplotlib version in
    the bytes)."""
    path = Path(path) if Path(path).is_absolute() else output_root() / "figures" / path
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"figure path must end in .png, .pdf or .svg, got {str(path)!r}")
    meta = {"Software": None} if fmt == "png" else {}
    atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta))
    return path


def plot_image(image: ArrayLike, title: str = "", marks: Sequence[tuple[int, int]] = (), labels: Sequence[str] = (),
               cbar_label: str = "intensity") -> Figure:
    """Show a grey image ``[H, W]`` (or ``[1, H, W]``) on ``[min(0, min), max(1, max)]``, marking pixels (row, col)."""
    img = _np(image, "image", 2, 3)
    img = img[0] if img.ndim == 3 else img
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    im = ax.imshow(img, cmap="gray", vmin=min(0.0, float(img.min())), vmax=max(1.0, float(img.max())))
    palette = sns.color_palette("tab10", max(1, len(marks)))
    rc = np.asarray(marks, dtype=float).reshape(-1, 2)  # (row, col) per mark
    ax.scatter(rc[:, 1], rc[:, 0], s=70, facecolors="none", edgecolors=palette[:len(rc)], linewidths=2)
    for (r, c), label, color in zip(marks, labels, palette):
        ax.annotate(label, (c, r), xytext=(6, -6), textcoords="offset points", color=color, fontsize=11,
                    fontweight="bold")
    ax.set(title=title, xlabel="column", ylabel="row")
    fig.colorbar(im, ax=ax, fraction=0.046, label=cbar_label)
    return _finish(fig)


def plot_lif_traces(current: ArrayLike, membrane: ArrayLike, spikes: ArrayLike, threshold: float = 1.0,
                    labels: Sequence[str] | None = None, title: str = "LIF membrane traces") -> Figure:
    """Membrane traces of a few neurons, one panel each (paper Eqs. 1-3): ``current`` ``x_t``, ``membrane`` ``h_t``
    (before reset, :meth:`dta_lib.snn.neuron.LIF.trace`) and ``spikes`` ``s_t``, each ``[T, N]``."""
    x, h, s = (_np(a, n, 2) for a, n in ((current, "current"), (membrane, "membrane"), (spikes, "spikes")))
    if not (x.shape == h.shape == s.shape):
        raise ValueError(f"current, membrane and spikes must share shape [T, N], got {x.shape}, {h.shape}, {s.shape}")
    t_steps, n = h.shape
    labels = list(labels) if labels is not None else [f"neuron {i}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"need {n} labels (one per neuron), got {len(labels)}")
    t = np.arange(1, t_steps + 1)
    top = max(float(h.max()), threshold) * 1.25
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.6 * n + 0.6), sharex=True, squeeze=False)
    palette = sns.color_palette("tab10", n)
    for i, ax in enumerate(axes[:, 0]):
        ax.step(t, x[:, i], where="mid", color="0.6", lw=1, label="input $x_t$")
        ax.plot(t, h[:, i], "o-", color=palette[i], ms=3, lw=1.5, label="membrane $h_t$")
        ax.axhline(threshold, ls="--", color="k", lw=0.8, label=r"threshold $\vartheta$")
        fired = s[:, i] > 0
        ax.plot(t[fired], np.full(fired.sum(), top * 0.93), "v", color="crimson", ms=6, label="spike $s_t=1$")
        ax.set_ylim(min(0.0, float(h[:, i].min())) - 0.05, top)
        ax.set_ylabel("value")
        ax.set_title(f"{labels[i]}: {int(fired.sum())} spikes in {t_steps} steps", fontsize=9, loc="left")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time step $t$")
    return _finish(fig, title)


def plot_spike_raster(spikes: ArrayLike, title: str = "Spike raster", ylabel: str = "neuron",
                      yticklabels: Sequence[str] | None = None) -> Figure:
    """Raster of ``spikes`` ``[T, N]`` (0/1): a tick per spike, neurons on the y axis."""
    s = _np(spikes, "spikes", 2)
    t_steps, n = s.shape
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(7.5, max(2.5, 0.12 * n + 1.2)), gridspec_kw={"width_ratios": [4, 1]},
                                  sharey=True)
    tt, nn_ = np.nonzero(s > 0)
    ax.scatter(tt + 1, nn_, marker="|", s=60, color="k", linewidths=1.5)
    ax.set(xlim=(0.5, t_steps + 0.5), ylim=(n - 0.5, -0.5), xlabel="time step $t$", ylabel=ylabel, title=title)
    ax.set_xticks(np.arange(1, t_steps + 1, max(1, t_steps // 8)))
    if yticklabels is not None:
        ax.set_yticks(np.arange(n), list(yticklabels), fontsize=6)
    axr.barh(np.arange(n), s.mean(0), color="steelblue")
    axr.set(xlim=(0, 1), xlabel="firing rate", title="rate")
    return _finish(fig)


def plot_surrogates(surrogates: Mapping[str, Surrogate], v_range: tuple[float, float] = (-3.0, 3.0),
                    points: int = 601) -> Figure:
    """Surrogate derivatives ``ds/dv`` (left) and their primitives next to the Heaviside step (right),
    ``v = h - threshold`` (paper Eq. 5 for the triangle)."""
    if not surrogates:
        raise ValueError("plot_surrogates needs at least one surrogate, got an empty mapping")
    v = torch.linspace(*v_range, points, dtype=torch.float64)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6))
    palette = sns.color_palette("tab10", len(surrogates))
    for (name, sg), c in zip(surrogates.items(), palette):
        a0.plot(v, sg.derivative(v), color=c, lw=1.8, label=name)
        a1.plot(v, sg.primitive(v), color=c, lw=1.5, label=name)
    a1.step(v, (v > 0).double(), where="post", color="k", ls="--", lw=1, label="Heaviside $H(v)$")
    a0.set(xlabel=r"$v = h - \vartheta$", ylabel=r"surrogate $\partial s / \partial v$",
           title="Surrogate derivatives (backward)")
    a1.set(xlabel=r"$v = h - \vartheta$", ylabel="smooth primitive", title="Primitives vs. the forward step")
    a0.legend(fontsize=8)
    a1.legend(fontsize=8, loc="upper left")
    return _finish(fig)


def plot_tc_maps(maps: Mapping[str, ArrayLike], title: str = "", cmap: str = "viridis", center: float | None = None,
                 shared_scale: bool = False) -> Figure:
    """Heatmaps of ``[T, C]`` maps (time on y, channel on x; A_t, A_c, GTCA), one panel each with its colorbar;
    ``center`` gives a diverging scale around that value."""
    arrays = {k: _np(v, f"map {k!r}", 2) for k, v in maps.items()}
    lo, hi = (min(map(np.min, arrays.values())), max(map(np.max, arrays.values()))) if shared_scale else (None, None)
    n, (t_steps, channels) = len(arrays), next(iter(arrays.values())).shape
    fig, axes = plt.subplots(n, 1, figsize=(min(14, 3 + 0.16 * channels), (0.3 * t_steps + 1.1) * n + 0.4), squeeze=False)
    for ax, (name, a) in zip(axes[:, 0], arrays.items()):
        sns.heatmap(a, ax=ax, cmap="RdBu_r" if center is not None else cmap, center=center, vmin=lo, vmax=hi,
                    cbar_kws={"label": "value", "pad": 0.01}, xticklabels=max(1, channels // 16),
                    yticklabels=[str(i + 1) for i in range(a.shape[0])])
        ax.set(title=name, xlabel="channel $c$", ylabel="time step $t$")
        ax.tick_params(axis="y", rotation=0)
    return _finish(fig, title)


def plot_spatial_maps(maps: ArrayLike, times: Sequence[int], channels: Sequence[int], title: str = "",
                      cmap: str = "magma") -> Figure:
    """Spatial maps (LTCA) of ``maps`` ``[T, C, H, W]``: rows = time steps, columns = channels, a scale per panel."""
    m = _np(maps, "maps [T, C, H, W]", 4)
    t_steps, c_total = m.shape[:2]
    bad = [t for t in times if not 0 <= t < t_steps] + [c for c in channels if not 0 <= c < c_total]
    if bad or not times or not channels:
        raise ValueError(f"times must lie in [0, {t_steps}) and channels in [0, {c_total}), non-empty; "
                         f"got {list(times)}, {list(channels)}")
    fig, axes = plt.subplots(len(times), len(channels), figsize=(2.4 * len(channels) + 0.4, 2.0 * len(times) + 0.6),
                             squeeze=False, layout="constrained")
    for j, c in enumerate(channels):
        axes[0, j].set_title(f"channel {c}", fontsize=9)
        for i, t in enumerate(times):
            im = axes[i, j].imshow(m[t, c], cmap=cmap)
            axes[i, j].set(xticks=[], yticks=[], ylabel=f"t = {t + 1}" if j == 0 else "")
            fig.colorbar(im, ax=axes[i, j], fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    return _finish(fig, title, tight=False)


def plot_timestep_rows(rows: Mapping[str, ArrayLike], title: str = "", cmaps: Mapping[str, str] | None = None,
                       limits: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """One row per named ``[T, H, W]`` array (e.g. the DTA gate), one column per time step, a colorbar per row."""
    arrays = {k: _np(v, f"row {k!r} [T, H, W]", 3) for k, v in rows.items()}
    steps = {a.shape[0] for a in arrays.values()}
    if len(steps) != 1:
        raise ValueError(f"all rows need the same number of time steps, got {sorted(steps)}")
    (t_steps,) = steps
    fig, axes = plt.subplots(len(arrays), t_steps, figsize=(1.6 * t_steps + 1.2, 1.7 * len(arrays) + 0.5), squeeze=False)
    for i, (name, a) in enumerate(arrays.items()):
        lo, hi = (limits or {}).get(name, (float(a.min()), float(a.max())))
        axes[i, 0].set_ylabel(name, fontsize=9)
        for t in range(t_steps):
            im = axes[i, t].imshow(a[t], cmap=(cmaps or {}).get(name, "viridis"), vmin=lo, vmax=hi)
            axes[i, t].set(xticks=[], yticks=[])
            if i == 0:
                axes[i, t].set_title(f"t = {t + 1}", fontsize=9)
        fig.colorbar(im, ax=list(axes[i, :]), fraction=0.02, pad=0.01)
    return _finish(fig, title, tight=False)


# ---------------------------------------------------------------------------------------------- event data
def emulation_figure(image: np.ndarray | torch.Tensor, frames: torch.Tensor, events: np.ndarray,
                     path_xy: torch.Tensor | None = None, title: str = "") -> Figure:
    """Row 1: the static image (with the saccade path), then the ``T`` frames (ON red, OFF blue).
    Row 2: events per polarity in each frame, and over time."""
    img = np.asarray(image, dtype=np.float32).squeeze()
    t_steps = frames.shape[0]
    fig = plt.figure(figsize=(1.6 * (t_steps + 1), 4.6), constrained_layout=True)
    grid = fig.add_gridspec(2, t_steps + 1, height_ratios=[1.0, 0.9])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(img, cmap="gray", vmin=0, vmax=img.max() or 1)
    if path_xy is not None:
        p = (path_xy.numpy() - path_xy.numpy().mean(0)) * 4 + np.array([img.shape[1], img.shape[0]]) / 2
        ax.plot(p[:, 0], p[:, 1], "-", color="gold", lw=1.5)
    ax.set_title("image\n(saccade path x4)" if path_xy is not None else "image", fontsize=8)
    ax.axis("off")
    vmax = float(frames.max()) or 1.0
    for t in range(t_steps):
        ax = fig.add_subplot(grid[0, t + 1])
        rgb = np.stack([frames[t, 1].numpy(), np.zeros(frames.shape[-2:], np.float32), frames[t, 0].numpy()], -1) / vmax
        ax.imshow(np.clip(rgb * 2, 0, 1))
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
    # each legend in one row just above its axes: it never covers a bar or a histogram bin
    above = dict(fontsize=7, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)
    ax = fig.add_subplot(grid[1, : (t_steps + 1) // 2])
    idx = np.arange(t_steps)
    ax.bar(idx - 0.2, frames[:, 1].sum(dim=(1, 2)).numpy(), width=0.4, color="tab:red", label="ON (p=1)")
    ax.bar(idx + 0.2, frames[:, 0].sum(dim=(1, 2)).numpy(), width=0.4, color="tab:blue", label="OFF (p=0)")
    ax.set(xlabel="frame (equal event count)", ylabel="events")
    ax.legend(**above)
    ax = fig.add_subplot(grid[1, (t_steps + 1) // 2:])
    bins = np.linspace(0, max(int(events["t"].max()), 1), 31) / 1000 if len(events) else np.linspace(0, 1, 31)
    ax.hist(events["t"][events["p"]] / 1000, bins=bins, color="tab:red", alpha=0.7, label=f"ON: {int(events['p'].sum())}")
    ax.hist(events["t"][~events["p"]] / 1000, bins=bins, color="tab:blue", alpha=0.7,
            label=f"OFF: {int((~events['p']).sum())}")
    ax.set_xlabel("time (ms); saccades end at the dashed lines")
    for k in (1, 2):
        ax.axvline(bins[-1] * k / 3, color="k", ls="--", lw=0.8)
    ax.legend(**above)
    return _finish(fig, title, tight=False, fontsize=10)


def event_bbox(frames: torch.Tensor, coverage: float = 0.99, margin: int = 8) -> tuple[int, int, int, int]:
    """Crop ``(y0, y1, x0, x1)`` (half-open) of the events of ``frames`` (``[..., H, W]`` counts): per axis the smallest
    range holding ``coverage`` of them (isolated noise dropped), widened by ``margin`` and clipped. No events: all.

    >>> f = torch.zeros(1, 2, 10, 20); f[0, 1, 3, 5] = f[0, 0, 6, 12] = 1
    >>> event_bbox(f, coverage=1.0, margin=1)
    (2, 8, 4, 14)
    """
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    h, w = frames.shape[-2:]
    counts = frames.reshape(-1, h, w).abs().sum(0).double()
    if float(counts.sum()) == 0:
        return 0, h, 0, w
    tail = (1 - coverage) / 2

    def span(profile: torch.Tensor, size: int) -> tuple[int, int]:
        cum = torch.cumsum(profile, 0) / profile.sum()
        lo, hi = int(torch.searchsorted(cum, tail, right=True)), int(torch.searchsorted(cum, 1 - tail))
        return max(lo - margin, 0), min(hi + 1 + margin, size)

    return (*span(counts.sum(1), h), *span(counts.sum(0), w))


def real_vs_emulated_figure(real: torch.Tensor, emulated: torch.Tensor, real_label: str, emulated_label: str,
                            frames_shown: int = 5, row_height: float = 1.7) -> Figure:
    """Signed event frames (ON - OFF) of ``real`` (left) and ``emulated`` (right), ``[T, 2, H, W]`` counts (channel 1
    ON), one row per frame at its own aspect ratio; each column's colour scale saturates at the 98th percentile."""
    for name, f in (("real", real), ("emulated", emulated)):
        if f.dim() != 4 or f.shape[1] != 2:
            raise ValueError(f"{name} frames must be [T, 2, H, W], got {tuple(f.shape)}")
    n = min(frames_shown, real.shape[0], emulated.shape[0])
    widths = [f.shape[-1] / f.shape[-2] for f in (real, emulated)]  # each column as wide as its frames' aspect needs
    fig, axes = plt.subplots(n, 2, figsize=(row_height * sum(widths) + 1.0, row_height * n + 0.9), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for col, (frames, label) in enumerate(((real, real_label), (emulated, emulated_label))):
        signed = (frames[:, 1] - frames[:, 0]).float()
        shown = signed[:n].abs()
        nonzero = shown[shown > 0]
        lim = max(float(torch.quantile(nonzero, 0.98)) if nonzero.numel() else 0.0, 1.0)
        for k in range(n):
            ax = axes[k, col]
            ax.imshow(signed[k].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if col == 0:
                ax.set_ylabel(f"frame {k + 1}", fontsize=8)
        axes[0, col].set_title(label, fontsize=8)
    return _finish(fig, "Real DAVIS346 recording vs. emulated stream (red ON, blue OFF events per frame)", fontsize=9)


# ---------------------------------------------------------------------------------------------- studies
def plot_curves(history: pd.DataFrame, axes: Sequence[Any] | None = None, title: str = "") -> Any:
    """Loss and accuracy (train / test) per epoch; draws into ``axes`` (2 axes) or a new figure."""
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
    return _finish(fig, title, fontsize=10)


def plot_curve_comparison(histories: dict[str, pd.DataFrame], title: str = "") -> Any:
    """Test accuracy and training loss per epoch of several runs (one line per label of ``histories``)."""
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
    return _finish(fig, title, fontsize=10)


_SEED_COLORS = [sns.color_palette("colorblind", 10)[i] for i in (0, 1, 2, 4, 5, 7, 9, 6, 3, 8)]  # first five far apart


def _intervals(ax: Any, labels: Sequence[str], points: pd.DataFrame | None = None, center: Any = None, low: Any = None,
               high: Any = None, join: bool = False, paper: Sequence[tuple[float, float]] = (),
               what: str = "mean +- std over seeds", paper_label: str = "paper (its setting)") -> list[Any]:
    """The study figure, one column per ``labels`` entry: each seed's value (``points``: index seed, a column per
    variant; fixed offsets, no RNG; ``join`` links a seed's values), ``center`` with ``[low, high]`` (default: mean +-
    sample std of ``points``; NaN: hollow marker) and the paper's range ``paper[i]`` (a band; a line if ``hi <= lo``;
    NaN: none). Returns the legend handles."""
    if center is None:
        center, std = points.mean(), points.std(ddof=1)
        low, high = center - std, center + std
    x, handles = np.arange(len(labels), dtype=float), []
    seeds = [] if points is None else list(points.index)
    step = min(0.06, 0.3 / max(len(seeds), 1))
    for i, s in enumerate(seeds):
        xs, y, c = x + (i - (len(seeds) - 1) / 2) * step, points.loc[s].to_numpy(dtype=float), _SEED_COLORS[i % 10]
        if join:
            ax.plot(xs, y, "-", color=c, lw=1.1, alpha=0.7, zorder=2)
        ax.scatter(xs, y, color=c, s=30, zorder=3)
        handles.append(Line2D([], [], color=c, marker="o", ms=5, lw=1.1 * join, label=f"seed {s}"))
    for xi, (lo, hi) in zip(x, paper):
        if math.isfinite(lo) and hi > lo:
            ax.fill_between([xi - 0.4, xi + 0.45], lo, hi, color="#fdae6b", alpha=0.6, lw=0, zorder=1)
        elif math.isfinite(lo):
            ax.hlines(lo, xi - 0.4, xi + 0.45, color="#fdae6b", lw=4, zorder=1)
    for xi, m, lo, hi in zip(x + 0.3 * bool(seeds), center, low, high):
        if math.isfinite(lo):
            ax.errorbar([xi], [m], yerr=[[m - lo], [hi - m]], fmt="o", ms=6, color="black", capsize=4, lw=1.3, zorder=4)
        else:
            ax.plot([xi], [m], "o", ms=6, mfc="white", color="black", zorder=4)
    handles.append(Line2D([], [], color="black", marker="o", ms=5, lw=1.3, label=what))
    if not np.isfinite(np.asarray(low, dtype=float)).all():
        handles.append(Line2D([], [], color="black", marker="o", mfc="white", ms=5, lw=0,
                              label="one seed: no interval"))
    if any(math.isfinite(lo) for lo, _ in paper):
        handles.append(Patch(color="#fdae6b", alpha=0.6, label=paper_label))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5 + 0.2 * bool(seeds))
    return handles


def plot_ablation(df: pd.DataFrame, metric: str = "best_test_acc", title: str = "", baseline: str = "dta") -> Any:
    """The ablation as the paired design it is. Left: each seed's runs joined across the variants, each variant's mean
    +- std beside them. Right: the per-seed differences ``baseline`` - variant, their mean with the 95 % t-interval
    (:func:`dta_lib.studies.ablation_paired`) and, for T-XA / T-NA against DTA, the paper's CIFAR10 gap band."""
    _check_columns(df, ["attention", "seed", metric], "plot_ablation")
    order = [a for a in ATTENTION_LABELS if a in set(df["attention"])]
    wide = df.pivot_table(index="seed", columns="attention", values=metric).reindex(columns=order)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11.5, 4.0), gridspec_kw={"width_ratios": [4, 3]})
    handles = _intervals(a0, [ATTENTION_LABELS[a].replace(" (", "\n(") for a in order], wide, join=True,
                         what="mean +- std (left)")
    a0.set(ylabel=f"{metric.replace('_', ' ')} (%)", title="per-seed runs (a line joins one seed)")
    others = [a for a in order if a != baseline]
    if baseline in order and others:
        paired = ablation_paired(df, metric, baseline=baseline).set_index("attention").reindex(others)
        gap = [PAPER_ABLATION_GAP if baseline == "dta" and a in ("txa", "tna") else (math.nan,) * 2 for a in others]
        base = ATTENTION_LABELS.get(baseline, baseline).split(" (")[0]
        handles += _intervals(a1, [f"{base} -\n{ATTENTION_LABELS[a].split(' (')[0]}" for a in others],
                              wide[others].rsub(wide[baseline], axis=0), paired["diff_mean"], paired["ci95_low"],
                              paired["ci95_high"], paper=gap, what="mean difference,\n95% t-interval (right)",
                              paper_label="paper's gap, CIFAR10\nfull scale: {}-{}".format(*PAPER_ABLATION_GAP),
                              )[len(wide):]  # the seeds are in the legend once
        a1.axhline(0, color="0.5", lw=0.8, zorder=0)
        a1.set(ylabel=f"{base} - variant (points)\npositive: {base} better",
               title="paired differences, mean and 95% t-interval")
    else:
        a1.text(0.5, 0.5, f"nothing to pair: the differences need\n{baseline!r} runs and at least one other variant",
                ha="center", va="center", transform=a1.transAxes, fontsize=9)
        a1.set_axis_off()
    handles = list({h.get_label(): h for h in handles}.values())  # "one seed: no interval" may come from both panels
    a1.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _finish(fig, title or "Ablation: paired per-seed runs and differences", fontsize=11)


def plot_time_steps(table: pd.DataFrame, title: str = "") -> Any:
    """Accuracy (mean +- std over seeds), seconds per epoch and, when measured, CPU time and memory of one training
    step against T (one panel each; ``table``: :func:`dta_lib.studies.time_step_table`)."""
    metric = next(c for c in table.columns if c.endswith("_mean"))
    std = table[metric.replace("_mean", "_std")]
    panels = [(metric, "accuracy (%)", "test accuracy"),
              ("seconds_per_epoch", "s / epoch (wall)", "wall time per epoch\n(as recorded; shared machine)"),
              ("step_cpu_s", "CPU s / step (1 thread)", "CPU time of one step"),
              ("step_mib", "MiB", "memory of one training step")]
    panels = panels[:2] + [p for p in panels[2:] if p[0] in table and table[p[0]].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2))
    for ax, (col, ylabel, name) in zip(axes, panels):
        ax.errorbar(table["time_steps"], table[col], yerr=std if col == metric else None, fmt="o-", capsize=3)
        ax.set(xlabel="time steps T", ylabel=ylabel, title=name, xticks=list(table["time_steps"]))
    return _finish(fig, title, fontsize=10)


def plot_study(runs: pd.DataFrame, study: str, metric: str = "best_test_acc", title: str = "") -> Any:
    """Per-seed points and mean +- std of ``metric`` for each (dataset, variant) of ``study`` (:func:`_intervals`)."""
    sub = runs[runs["study"] == study]
    if sub.empty:
        raise ValueError(f"no runs of study {study!r}")
    wide = sub.assign(label=sub["dataset"] + "\n" + sub["variant"].str.replace(",", "\n")).pivot_table(
        index="seed", columns="label", values=metric)
    fig, ax = plt.subplots(figsize=(2.0 * wide.shape[1] + 2.5, 3.8))
    handles = _intervals(ax, list(wide.columns), wide)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set(ylabel=f"{metric.replace('_', ' ')} (%)", title=title or study)
    ax.tick_params(axis="x", labelsize=7)
    return _finish(fig)


def plot_paper_gaps(gaps: pd.DataFrame, title: str = "") -> Any:
    """Our paired differences (:func:`dta_lib.studies.paper_gaps`: mean, 95 % t-interval; one seed: hollow marker)
    beside the paper's gap (band or line), one column per comparison (labelled with its ``preset`` when given)."""
    if gaps.empty:
        raise ValueError("plot_paper_gaps: no comparisons to draw")
    labels = ((gaps["preset"] + " " if "preset" in gaps else "") + gaps["study"] + ":\n"
              + gaps["comparison"].str.replace(" (", "\n(") + "\n(n=" + gaps["n_pairs"].astype(str) + ")")
    fig, ax = plt.subplots(figsize=(1.5 * len(gaps) + 3.0, 4.2))
    handles = _intervals(ax, list(labels), None, gaps["ours_mean"], gaps["ci95_low"], gaps["ci95_high"],
                         paper=list(zip(gaps["paper_low"], gaps["paper_high"])), what="ours: mean, 95% t-interval")
    ax.axhline(0, color="grey", lw=0.8, zorder=0)
    ax.set(ylabel="difference (accuracy points)", title=title or "Paper vs ours: differences between settings")
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _finish(fig)


def _ordered_palette(values: Any) -> dict[Any, Any]:
    """Viridis colours for ordered values (the surrogate widths), its pale yellow end cut off (lines read on white)."""
    levels = sorted(set(values))
    return {v: colormaps["viridis"](0.72 * i / max(len(levels) - 1, 1)) for i, v in enumerate(levels)}


def plot_grad_norms(curves: pd.DataFrame, title: str = "", hue: str = "surrogate_width") -> Any:
    """One panel per epoch: gradient L2 norm per layer, input to output (log scale), one line per ``hue`` value
    (mean, band: sd over seeds). ``curves`` is :func:`dta_lib.studies.grad_norm_curves`' long form."""
    layers = list(dict.fromkeys(curves["layer"]))  # forward order
    epochs = sorted(curves["epoch"].unique())
    palette = _ordered_palette(curves[hue])
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.2 * len(epochs) + 1.0, 3.8), sharey=True, squeeze=False)
    for ax, e in zip(axes[0], epochs):
        sub = curves[curves["epoch"] == e].assign(layer=lambda d: pd.Categorical(d["layer"], layers, ordered=True))
        sns.lineplot(data=sub.sort_values("layer"), x="layer", y="grad_norm", hue=hue, marker="o",
                     palette=palette, ax=ax, errorbar="sd", sort=False)
        ax.set(yscale="log", title=f"epoch {e}", xlabel="layer (input -> output)",
               ylabel="gradient L2 norm (RMS over steps)")
        ax.tick_params(axis="x", rotation=60)
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()  # one legend, right of the last panel, over no data
    axes[0][-1].legend(handles, labels, title="gamma", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0.0)
    return _finish(fig, title)


def plot_vanishing_check(ratio: pd.DataFrame, accuracy: pd.DataFrame, title: str = "", vanishing: float = 0.1,
                         exploding: float = 10.0, chance: float = 10.0, hue: str = "surrogate_width") -> Any:
    """Left: the stem/fc gradient ratio per epoch (log scale, :func:`dta_lib.studies.gradient_ratio`) with the
    ``vanishing`` / ``exploding`` rule lines; right: test accuracy per epoch (``accuracy``) with ``chance``."""
    _check_columns(ratio, ["epoch", "ratio", hue], "plot_vanishing_check")
    _check_columns(accuracy, ["epoch", "test_acc", hue], "plot_vanishing_check")
    palette = _ordered_palette([*ratio[hue], *accuracy[hue]])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4.2))
    for a, data, y in ((a0, ratio, "ratio"), (a1, accuracy, "test_acc")):
        sns.lineplot(data=data, x="epoch", y=y, hue=hue, marker="o", palette=palette, ax=a, errorbar="sd")
        a.set_xticks(sorted(ratio["epoch"].unique()))
        a.get_legend().remove()
    a0.set(yscale="log", title="stem / fc gradient norm", ylabel="ratio (log scale)")
    rules = [a0.axhline(vanishing, ls="--", c="crimson", lw=1, label=f"{vanishing:g} (vanishing rule)"),
             a0.axhline(exploding, ls="--", c="darkorange", lw=1, label=f"{exploding:g} (exploding rule)")]
    y0, y1 = a0.get_ylim()
    a0.set_ylim(min(y0, vanishing / 2), max(y1, exploding * 2))  # both rule lines inside, off the frame
    rules.append(a1.axhline(chance, ls=":", c="0.4", lw=1, label=f"{chance:g}% (chance)"))
    a1.set(title="test accuracy", ylabel="top-1 (%)")
    handles = [Line2D([], [], color=c, marker="o", ms=5, label=f"gamma = {v:g}") for v, c in palette.items()] + rules
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_firing_rates(rates: pd.DataFrame, per_step: pd.DataFrame, order: Sequence[str], title: str = "") -> Any:
    """Left: mean firing rate per LIF layer and model (bars, ``order``); right: rate per time step (mean over
    layers, band: min-max). Inputs: :func:`dta_lib.studies.firing_rates_by_model`."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    sns.barplot(data=rates, x="name", y="rate", hue="model", order=list(order), ax=a0, palette="Set2")
    a0.set(title="mean firing rate per LIF layer", xlabel="LIF layer (input -> output)", ylabel="spikes / neuron / step")
    a0.tick_params(axis="x", rotation=70)
    sns.lineplot(data=per_step, x="t", y="rate", hue="model", style="model", estimator="mean", errorbar=("pi", 100),
                 ax=a1, palette="Set2", marker="o")
    a1.set(title="firing rate per time step (mean over layers; band: min-max)", xlabel="time step t", ylabel="rate",
           xticks=sorted(per_step["t"].unique()))
    return _finish(fig, title)


def plot_energy_per_layer(per_layer: pd.DataFrame, order: Sequence[str], title: str = "") -> Any:
    """Energy per layer and image (log scale), one panel per model, bars coloured by the kind of arithmetic
    (input: :func:`dta_lib.studies.energy_per_layer`)."""
    g = sns.catplot(data=per_layer, x="name", y="energy (nJ)", hue="kind", col="model", kind="bar", order=list(order),
                    height=4.2, aspect=2.0,
                    palette={"AC (spike-fed)": "tab:blue", "MAC (real-fed)": "tab:red", "mixed": "0.5"}, dodge=False)
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=80, labelsize=7)
        ax.set(yscale="log", xlabel="layer")
    g.figure.suptitle(title, y=1.03)
    return g.figure
