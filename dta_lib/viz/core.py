"""Plotting helpers for the notebooks (matplotlib + seaborn); every function returns its Figure.

Inputs are plain tensors or arrays (``torch.Tensor`` or ``numpy.ndarray``), so the same helpers
serve every notebook: LIF dynamics (paper Eqs. 1-3), surrogate shapes (Eq. 5), T-XA maps
(TLA ``A_t`` / CLA ``A_c``), T-NA maps (LTCA local, GTCA global), the DTA gate, and a box
diagram of MS-ResNet showing where DTA sits. :func:`save_figure` writes PNGs atomically to
``figures/`` of the output root.

Re-exported here for the notebooks: :func:`dta_lib.data.fashion.load_fashion_mnist_samples`, which reads a few
real Fashion-MNIST images (``$DTA_DATA_ROOT``, Debian's ``dataset-fashion-mnist``, or torchvision's download).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import Tensor, nn

from ..atomic import atomic_write
from ..data.fashion import FASHION_MNIST_CLASSES, load_fashion_mnist_samples
from ..paths import output_root
from ..snn.surrogate import Surrogate

__all__ = [
    "FASHION_MNIST_CLASSES", "load_fashion_mnist_samples", "save_figure",
    "plot_image", "plot_lif_traces", "plot_spike_raster", "plot_surrogates", "plot_tc_maps", "plot_spatial_maps",
    "plot_timestep_rows", "plot_architecture",
]



ArrayLike = Tensor | np.ndarray


def _np(x: ArrayLike, ndim: int | Sequence[int], what: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in dims:
        raise ValueError(f"{what} must have {' or '.join(map(str, dims))} dims, got shape {a.shape}")
    return a


# --------------------------------------------------------------------------- saving
def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (temp file in the same folder, then ``os.replace``).

    A bare or relative ``path`` goes under ``figures/`` of :func:`dta_lib.paths.output_root`
    (``$DTA_OUTPUT_DIR``, else ``./reports``); the format
    comes from the suffix (``.png``, ``.pdf`` or ``.svg``). The file gets mode ``0o666 & ~umask``
    (like ``open``), not ``mkstemp``'s ``0o600``. PNG metadata is stripped so the bytes
    do not depend on the matplotlib version string. Returns the final path.
    """
    path = Path(path)
    if not path.is_absolute():
        path = output_root() / "figures" / path
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"figure path must end in .png, .pdf or .svg, got {str(path)!r}")
    meta = {"Software": None} if fmt == "png" else {}
    atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta))
    return path


# --------------------------------------------------------------------------- images and LIF
def plot_image(
    image: ArrayLike,
    title: str = "",
    marks: Sequence[tuple[int, int]] = (),
    labels: Sequence[str] = (),
    cbar_label: str = "intensity",
) -> Figure:
    """Show a grey image ``[H, W]`` (or ``[1, H, W]``), optionally marking pixels ``(row, col)``.

    The colour scale spans ``[min(0, image.min()), max(1, image.max())]``.
    """
    img = _np(image, (2, 3), "image")
    img = img[0] if img.ndim == 3 else img
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    im = ax.imshow(img, cmap="gray", vmin=min(0.0, float(img.min())), vmax=max(1.0, float(img.max())))
    palette = sns.color_palette("tab10", max(1, len(marks)))
    for i, (r, c) in enumerate(marks):
        ax.scatter([c], [r], s=70, facecolors="none", edgecolors=[palette[i]], linewidths=2)
        if i < len(labels):
            ax.annotate(labels[i], (c, r), xytext=(6, -6), textcoords="offset points", color=palette[i], fontsize=11,
                        fontweight="bold")
    ax.set(title=title, xlabel="column", ylabel="row")
    fig.colorbar(im, ax=ax, fraction=0.046, label=cbar_label)
    fig.tight_layout()
    return fig


def plot_lif_traces(
    current: ArrayLike,
    membrane: ArrayLike,
    spikes: ArrayLike,
    threshold: float = 1.0,
    labels: Sequence[str] | None = None,
    title: str = "LIF membrane traces",
) -> Figure:
    """Membrane traces of a few neurons, one panel each (paper Eqs. 1-3).

    ``current`` (input ``x_t``), ``membrane`` (charged ``h_t`` before reset, from
    :meth:`dta_lib.snn.neuron.LIF.trace`) and ``spikes`` ``s_t`` are ``[T, N]``. Spikes are drawn
    as markers at the top; the dashed line is the threshold.
    """
    x, h, s = (_np(a, 2, n) for a, n in ((current, "current"), (membrane, "membrane"), (spikes, "spikes")))
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
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_spike_raster(spikes: ArrayLike, title: str = "Spike raster", ylabel: str = "neuron", yticklabels: Sequence[str] | None = None) -> Figure:
    """Raster of ``spikes`` ``[T, N]`` (0/1): a tick per spike, neurons on the y axis."""
    s = _np(spikes, 2, "spikes")
    t_steps, n = s.shape
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(7.5, max(2.5, 0.12 * n + 1.2)), gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    tt, nn_ = np.nonzero(s > 0)
    ax.scatter(tt + 1, nn_, marker="|", s=60, color="k", linewidths=1.5)
    ax.set(xlim=(0.5, t_steps + 0.5), ylim=(n - 0.5, -0.5), xlabel="time step $t$", ylabel=ylabel, title=title)
    ax.set_xticks(np.arange(1, t_steps + 1, max(1, t_steps // 8)))
    if yticklabels is not None:
        ax.set_yticks(np.arange(n), list(yticklabels), fontsize=6)
    axr.barh(np.arange(n), s.mean(0), color="steelblue")
    axr.set(xlim=(0, 1), xlabel="firing rate", title="rate")
    fig.tight_layout()
    return fig


def plot_surrogates(
    surrogates: Mapping[str, Surrogate], v_range: tuple[float, float] = (-3.0, 3.0), points: int = 601
) -> Figure:
    """Surrogate derivatives ``ds/dv`` (left) and their primitives next to the Heaviside step (right).

    ``v = h - threshold`` is the centred membrane; each surrogate's ``derivative`` and
    ``primitive`` are evaluated on a grid (paper Eq. 5 for the triangle).
    """
    if not surrogates:
        raise ValueError("plot_surrogates needs at least one surrogate, got an empty mapping")
    v = torch.linspace(*v_range, points, dtype=torch.float64)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6))
    palette = sns.color_palette("tab10", len(surrogates))
    for (name, sg), c in zip(surrogates.items(), palette):
        a0.plot(v, sg.derivative(v), color=c, lw=1.8, label=name)
        a1.plot(v, sg.primitive(v), color=c, lw=1.5, label=name)
    a1.step(v, (v > 0).double(), where="post", color="k", ls="--", lw=1, label="Heaviside $H(v)$")
    a0.set(xlabel=r"$v = h - \vartheta$", ylabel=r"surrogate $\partial s / \partial v$", title="Surrogate derivatives (backward)")
    a1.set(xlabel=r"$v = h - \vartheta$", ylabel="smooth primitive", title="Primitives vs. the forward step")
    a0.legend(fontsize=8)
    a1.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- attention maps
def plot_tc_maps(
    maps: Mapping[str, ArrayLike],
    title: str = "",
    cmap: str = "viridis",
    center: float | None = None,
    shared_scale: bool = False,
) -> Figure:
    """Heatmaps of ``[T, C]`` maps (time on y, channel on x), one panel each with its colorbar.

    Used for the T-XA maps ``A_t`` (TLA) and ``A_c`` (CLA), the GTCA global map, and any
    per-(t, c) statistic. ``center`` gives a diverging scale around that value.
    """
    if not maps:
        raise ValueError("plot_tc_maps needs at least one map, got an empty mapping")
    arrays = {k: _np(v, 2, f"map {k!r}") for k, v in maps.items()}
    lo = min(a.min() for a in arrays.values()) if shared_scale else None
    hi = max(a.max() for a in arrays.values()) if shared_scale else None
    n = len(arrays)
    t_steps, channels = next(iter(arrays.values())).shape
    fig, axes = plt.subplots(n, 1, figsize=(min(14, 3 + 0.16 * channels), (0.3 * t_steps + 1.1) * n + 0.4), squeeze=False)
    for ax, (name, a) in zip(axes[:, 0], arrays.items()):
        sns.heatmap(a, ax=ax, cmap="RdBu_r" if center is not None else cmap, center=center, vmin=lo, vmax=hi,
                    cbar_kws={"label": "value", "pad": 0.01}, xticklabels=max(1, channels // 16),
                    yticklabels=[str(i + 1) for i in range(a.shape[0])])
        ax.set(title=name, xlabel="channel $c$", ylabel="time step $t$")
        ax.tick_params(axis="y", rotation=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_spatial_maps(
    maps: ArrayLike,
    times: Sequence[int],
    channels: Sequence[int],
    title: str = "",
    cmap: str = "magma",
) -> Figure:
    """Grid of spatial maps from ``maps`` ``[T, C, H, W]``: rows = time steps, columns = channels.

    Each panel has its own colour scale and colorbar, so the spatial pattern stays visible even when
    the offset changes with time; used for the LTCA local map and any per-(t, c) feature map.
    """
    m = _np(maps, 4, "maps [T, C, H, W]")
    t_steps, c_total = m.shape[:2]
    bad = [t for t in times if not 0 <= t < t_steps] + [c for c in channels if not 0 <= c < c_total]
    if bad or not times or not channels:
        raise ValueError(f"times must lie in [0, {t_steps}) and channels in [0, {c_total}), non-empty; got {list(times)}, {list(channels)}")
    fig, axes = plt.subplots(len(times), len(channels), figsize=(2.4 * len(channels) + 0.4, 2.0 * len(times) + 0.6),
                             squeeze=False, layout="constrained")
    for j, c in enumerate(channels):
        for i, t in enumerate(times):
            ax = axes[i, j]
            im = ax.imshow(m[t, c], cmap=cmap)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"channel {c}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"t = {t + 1}")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_timestep_rows(rows: Mapping[str, ArrayLike], title: str = "", cmaps: Mapping[str, str] | None = None,
                       limits: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """One row per named ``[T, H, W]`` array, one column per time step, a colorbar per row.

    Used for the DTA gate per time step next to the stem output, its spikes and the gated output.
    """
    if not rows:
        raise ValueError("plot_timestep_rows needs at least one row, got an empty mapping")
    arrays = {k: _np(v, 3, f"row {k!r} [T, H, W]") for k, v in rows.items()}
    t_steps = {a.shape[0] for a in arrays.values()}
    if len(t_steps) != 1:
        raise ValueError(f"all rows need the same number of time steps, got {sorted(t_steps)}")
    t_steps_n = t_steps.pop()
    cmaps, limits = dict(cmaps or {}), dict(limits or {})
    fig, axes = plt.subplots(len(arrays), t_steps_n, figsize=(1.6 * t_steps_n + 1.2, 1.7 * len(arrays) + 0.5), squeeze=False)
    for i, (name, a) in enumerate(arrays.items()):
        lo, hi = limits.get(name, (float(a.min()), float(a.max())))
        for t in range(t_steps_n):
            ax = axes[i, t]
            im = ax.imshow(a[t], cmap=cmaps.get(name, "viridis"), vmin=lo, vmax=hi)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {t + 1}", fontsize=9)
            if t == 0:
                ax.set_ylabel(name, fontsize=9)
        fig.colorbar(im, ax=list(axes[i, :]), fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- architecture
def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _arch_boxes(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(name, label, kind)`` per top-level step of an MS-ResNet, in forward order."""
    boxes: list[tuple[str, str, str]] = [("input", "input\n[B, C, H, W]\n(repeated T times)", "io")]
    for name, m in model.named_children():
        if m is None:
            continue
        n = _count(m)
        if isinstance(m, nn.Conv2d):
            label = f"{name}\nconv {m.kernel_size[0]}x{m.kernel_size[1]}/{m.stride[0]}\n{m.in_channels}->{m.out_channels}"
            kind = "layer"
        elif isinstance(m, nn.BatchNorm2d):
            label, kind = f"{name}\nBN({m.num_features})", "layer"
        elif type(m).__name__ == "LIF":
            label, kind = f"{name}\nLIF", "lif"
        elif type(m).__name__ == "DTA":
            parts = [p for p in ("txa", "tna") if getattr(m, p, None) is not None]
            label = f"{name.upper()} ({m.mode}): " + r"$\sigma(\cdot)\odot$ spikes"
            for p in parts:
                label += f"\n{p.upper()[0]}-{p.upper()[1:]} {_count(getattr(m, p)):,}"
            kind = "dta"
        elif isinstance(m, nn.Sequential):
            first, last = m[0], m[-1]
            c = getattr(getattr(last, "conv2", None), "out_channels", "?")
            s = getattr(getattr(first, "conv1", None), "stride", ("?",))[0]
            label, kind = f"{name}\n{len(m)} MS blocks\n{c} ch, stride {s}", "stage"
        elif isinstance(m, nn.Linear):
            boxes.append(("gap", "GAP\nover H, W", "layer"))
            label, kind = f"{name}\nLinear {m.in_features}->{m.out_features}", "layer"
        elif isinstance(m, nn.MaxPool2d):
            label, kind = f"{name}\n3x3/2", "layer"
        else:
            label, kind = name, "layer"
        boxes.append((name, f"{label}\n{n:,} params" if n else label, kind))
    boxes.append(("output", "logits\n[B, T, classes]\nmean over T", "io"))
    return boxes


def plot_architecture(model: nn.Module, title: str = "MS-ResNet with DTA") -> Figure:
    """Box diagram of an :class:`~dta_lib.models.MSResNet` generated from its modules.

    One box per top-level module in forward order (stem conv, BN, LIF, DTA, stages, head),
    each with its parameter count; the DTA block is highlighted and the spike path into it drawn.
    """
    if not hasattr(model, "stem_conv") or not hasattr(model, "fc"):
        raise ValueError(f"plot_architecture expects an MSResNet (stem_conv ... fc), got {type(model).__name__}")
    boxes = _arch_boxes(model)
    colors = {"io": "#eeeeee", "layer": "#cfe2f3", "lif": "#fde9c8", "dta": "#f4a6a6", "stage": "#d9ead3"}
    per_row = 6
    n_rows = -(-len(boxes) // per_row)
    fig, ax = plt.subplots(figsize=(13, 2.3 * n_rows + 0.6))
    w, h, gx, gy = 1.7, 1.25, 0.55, 1.0
    pos = {}
    for i, (name, label, kind) in enumerate(boxes):
        r, c = divmod(i, per_row)
        c = c if r % 2 == 0 else per_row - 1 - c  # snake layout
        x, y = c * (w + gx), -r * (h + gy)
        pos[name] = (x, y)
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=colors[kind],
                                    ec="crimson" if kind == "dta" else "0.3", lw=2.5 if kind == "dta" else 1))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8)
    names = [b[0] for b in boxes]
    for a, b in zip(names[:-1], names[1:]):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if y0 == y1:
            xs, xe = (x0 + w, x1) if x1 > x0 else (x0, x1 + w)
            ax.annotate("", (xe, y1 + h / 2), (xs, y0 + h / 2), arrowprops=dict(arrowstyle="->", lw=1.2))
        else:
            ax.annotate("", (x1 + w / 2, y1 + h), (x0 + w / 2, y0), arrowprops=dict(arrowstyle="->", lw=1.2))
    if "dta" in pos and "stem_bn" in pos:  # DTA also reads the real-valued stem output X
        (x0, y0), (x1, y1) = pos["stem_bn"], pos["dta"]
        ax.annotate("", (x1 + w / 2, y1 + h), (x0 + w / 2, y0 + h), arrowprops=dict(arrowstyle="->", lw=1.2, ls="--",
                    color="crimson", connectionstyle="arc3,rad=-0.35"))
        ax.text((x0 + x1 + w) / 2, y0 + h + 0.45, "X (real-valued stem output)", color="crimson", ha="center", fontsize=8)
    ax.set_xlim(-0.3, per_row * (w + gx))
    ax.set_ylim(-(n_rows - 1) * (h + gy) - 0.4, h + 0.9)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{title}: {_count(model):,} parameters")
    fig.tight_layout()
    return fig
