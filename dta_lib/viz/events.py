"""Figures for the data notebooks (matplotlib): an image beside its emulated event frames."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["emulation_figure", "real_vs_emulated_figure"]


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
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[1, (t_steps + 1) // 2:])
    bins = np.linspace(0, max(int(events["t"].max()), 1), 31) / 1000 if len(events) else np.linspace(0, 1, 31)
    ax.hist(events["t"][events["p"]] / 1000, bins=bins, color="tab:red", alpha=0.7, label=f"ON: {int(events['p'].sum())}")
    ax.hist(events["t"][~events["p"]] / 1000, bins=bins, color="tab:blue", alpha=0.7,
            label=f"OFF: {int((~events['p']).sum())}")
    ax.set_xlabel("time (ms); saccades end at the dashed lines")
    for k in (1, 2):
        ax.axvline(bins[-1] * k / 3, color="k", ls="--", lw=0.8)
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig



def real_vs_emulated_figure(real: torch.Tensor, emulated: torch.Tensor, real_label: str, emulated_label: str,
                            frames_shown: int = 5) -> Figure:
    """Signed event frames (ON - OFF) of a real recording and an emulated stream, one row each.

    ``real`` / ``emulated``: ``[T, 2, H, W]`` event counts (channel 0 OFF, 1 ON, as tonic stores polarity);
    each row has its own colour scale, symmetric around 0 (red ON, blue OFF).
    """
    import matplotlib.pyplot as plt

    for name, f in (("real", real), ("emulated", emulated)):
        if f.dim() != 4 or f.shape[1] != 2:
            raise ValueError(f"{name} frames must be [T, 2, H, W], got {tuple(f.shape)}")
    n = min(frames_shown, real.shape[0], emulated.shape[0])
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.0), squeeze=False)
    for row, (frames, label) in enumerate(((real, real_label), (emulated, emulated_label))):
        signed = (frames[:, 1] - frames[:, 0]).float()
        lim = max(float(signed[:n].abs().max()), 1.0)
        for k in range(n):
            ax = axes[row, k]
            ax.imshow(signed[k].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"frame {k + 1}", fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=7)
    fig.suptitle("Real DAVIS346 recording vs. emulated stream (red ON, blue OFF events per frame)", fontsize=8)
    fig.tight_layout()
    return fig
