"""Figures for the data notebooks (matplotlib): an image beside its emulated event frames."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["emulation_figure", "event_bbox", "real_vs_emulated_figure"]


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
        rgb = np.zeros((*frames.shape[-2:], 3), dtype=np.float32)
        rgb[..., 0] = frames[t, 1].numpy() / vmax
        rgb[..., 2] = frames[t, 0].numpy() / vmax
        ax.imshow(np.clip(rgb * 2, 0, 1))
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, : (t_steps + 1) // 2])
    idx = np.arange(t_steps)
    ax.bar(idx - 0.2, frames[:, 1].sum(dim=(1, 2)).numpy(), width=0.4, color="tab:red", label="ON (p=1)")
    ax.bar(idx + 0.2, frames[:, 0].sum(dim=(1, 2)).numpy(), width=0.4, color="tab:blue", label="OFF (p=0)")
    ax.set_xlabel("frame (equal event count)")
    ax.set_ylabel("events")
    _legend_above(ax)
    ax = fig.add_subplot(grid[1, (t_steps + 1) // 2:])
    bins = np.linspace(0, max(int(events["t"].max()), 1), 31) / 1000 if len(events) else np.linspace(0, 1, 31)
    ax.hist(events["t"][events["p"]] / 1000, bins=bins, color="tab:red", alpha=0.7, label=f"ON: {int(events['p'].sum())}")
    ax.hist(events["t"][~events["p"]] / 1000, bins=bins, color="tab:blue", alpha=0.7,
            label=f"OFF: {int((~events['p']).sum())}")
    ax.set_xlabel("time (ms); saccades end at the dashed lines")
    for k in (1, 2):
        ax.axvline(bins[-1] * k / 3, color="k", ls="--", lw=0.8)
    _legend_above(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _legend_above(ax) -> None:
    """The legend in one row just above the axes: it never covers a bar or a histogram bin."""
    ax.legend(fontsize=7, ncol=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)


def event_bbox(frames: torch.Tensor, coverage: float = 0.99, margin: int = 8) -> tuple[int, int, int, int]:
    """Where the events of ``frames`` (``[..., H, W]`` event counts) lie: ``(y0, y1, x0, x1)``, half-open, so
    ``frames[..., y0:y1, x0:x1]`` is the crop.

    Per axis, the smallest range holding ``coverage`` of the events (``(1 - coverage) / 2`` of them dropped on each
    side, so a few isolated noise events far from the scene do not stretch the box to the whole sensor), widened by
    ``margin`` pixels and clipped to the frame. No events: the whole frame.

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
        lo = int(torch.searchsorted(cum, torch.tensor(tail, dtype=cum.dtype), right=True))
        hi = int(torch.searchsorted(cum, torch.tensor(1 - tail, dtype=cum.dtype)))
        return max(lo - margin, 0), min(hi + 1 + margin, size)

    y0, y1 = span(counts.sum(1), h)
    x0, x1 = span(counts.sum(0), w)
    return y0, y1, x0, x1


def real_vs_emulated_figure(real: torch.Tensor, emulated: torch.Tensor, real_label: str, emulated_label: str,
                            frames_shown: int = 5, row_height: float = 1.7) -> Figure:
    """Signed event frames (ON - OFF) of a real recording and an emulated stream: one row per frame, the real
    frame on the left, the emulated one on the right.

    ``real`` / ``emulated``: ``[T, 2, H, W]`` event counts (channel 0 OFF, 1 ON, as tonic stores polarity), each
    drawn at its own aspect ratio, ``row_height`` inches tall (crop a large, mostly empty sensor with
    :func:`event_bbox` first, so a wide crop gets the width it needs). Each column has its own colour scale,
    symmetric around 0 (red ON, blue OFF) and saturating at the 98th percentile of the non-zero counts shown, so a
    few hot pixels do not wash out the edges.
    """
    import matplotlib.pyplot as plt

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
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"frame {k + 1}", fontsize=8)
        axes[0, col].set_title(label, fontsize=8)
    fig.suptitle("Real DAVIS346 recording vs. emulated stream (red ON, blue OFF events per frame)", fontsize=9)
    fig.tight_layout()
    return fig
