"""Block diagrams with tensor shapes: the DTA block's insides and the MS-ResNet basic block.

Both are drawn from their arguments (``T``, ``C``, ``H``, ``W``, the T-NA hidden size), so the shapes in the
picture are the shapes the code computes (paper Sec. 3.2-3.4; notebook 04).
"""
from __future__ import annotations

from matplotlib.figure import Figure

__all__ = ["plot_dta_block", "plot_ms_block"]

_COLORS = {"input": "#f0f0f0", "txa": "#deebf7", "tna": "#e5f5e0", "gate": "#fee6ce", "spike": "#fcbba1",
           "conv": "#efedf5", "out": "#f0f0f0"}


def _box(ax, x: float, y: float, text: str, kind: str, w: float = 2.3, h: float = 0.62) -> tuple[float, float]:
    ax.add_patch(_patch(x - w / 2, y - h / 2, w, h, _COLORS[kind]))
    ax.text(x, y, text, ha="center", va="center", fontsize=6.6, wrap=True)
    return x, y


def _patch(x: float, y: float, w: float, h: float, color: str):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="0.35", lw=0.8)


def _arrow(ax, a: tuple[float, float], b: tuple[float, float], h: float = 0.31, label: str = "") -> None:
    (x0, y0), (x1, y1) = a, b
    start = (x0, y0 - h) if abs(x0 - x1) < 1e-9 or y0 - y1 > 2 * h else (x0, y0 - h)
    end = (x1, y1 + h)
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=0.8, color="0.25"))
    if label:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, label, fontsize=5.8, color="0.3")


def plot_dta_block(time_steps: int = 6, channels: int = 64, height: int = 32, width: int = 32,
                   gtca_hidden: int = 16, title: str = "") -> Figure:
    """The DTA block with the shape of every tensor: T-XA's two branches, T-NA's encode / LTCA / GTCA / decode,
    and the gate ``sigmoid(T-NA(X) * T-XA(X)) * S`` (batch dimension B omitted)."""
    import matplotlib.pyplot as plt

    t, c, h, w, d = time_steps, channels, height, width, time_steps * channels
    fig, ax = plt.subplots(figsize=(9.2, 6.4))
    ax.set(xlim=(0, 12), ylim=(0, 10))
    ax.axis("off")
    x_in = _box(ax, 6, 9.4, f"stem output X (real)\n[T={t}, C={c}, H={h}, W={w}]", "input", w=3.2)
    # LIF path
    s = _box(ax, 10.6, 7.9, f"LIF -> spikes S\n[{t}, {c}, {h}, {w}] in {{0, 1}}", "spike")
    _arrow(ax, x_in, s)
    # T-XA
    z = _box(ax, 2.2, 7.9, f"spatial mean z\n[{t}, {c}]", "txa")
    tla = _box(ax, 1.0, 6.6, f"TLA: Conv1d {t}->{t}, k=3\nalong C, sigmoid\nA_t [{t}, {c}]", "txa", w=2.0, h=0.8)
    cla = _box(ax, 3.4, 6.6, f"CLA: Conv1d {c}->{c}, k=6\nalong T, sigmoid\nA_c [{t}, {c}]", "txa", w=2.2, h=0.8)
    yxa = _box(ax, 2.2, 5.1, f"(X + a A_t) * (X + b A_c)\nY_XA [{t}, {c}, {h}, {w}]", "txa", w=3.0)
    _arrow(ax, x_in, z)
    _arrow(ax, z, tla, h=0.4)
    _arrow(ax, z, cla, h=0.4)
    _arrow(ax, tla, yxa, h=0.4)
    _arrow(ax, cla, yxa, h=0.4)
    ax.text(0.1, 8.6, "T-XA (identical: a shared 1-D kernel per axis)", fontsize=7, color="#08519c")
    # T-NA
    zr = _box(ax, 6.6, 7.9, f"reshape: time into channels\nZ [D = T*C = {d}, {h}, {w}]", "tna", w=2.9)
    enc = _box(ax, 6.6, 6.9, f"encode 1x1 conv {d}->{d}, GELU\nE [{d}, {h}, {w}]", "tna", w=2.9)
    ltca = _box(ax, 5.2, 5.6, f"LTCA: depthwise 5x5,\n'dilated' (1x1), pointwise\n{d}->{d}: L [{d}, {h}, {w}]",
                "tna", w=2.6, h=0.95)
    gtca = _box(ax, 8.1, 5.6, f"GTCA: GAP, FC {d}->{gtca_hidden},\nReLU, FC {gtca_hidden}->{d}\n"
                f"G [{d}] (no sigmoid)", "tna", w=2.5, h=0.95)
    dec = _box(ax, 6.6, 4.1, f"decode 1x1 conv (G * L * E) + Z\nY_NA [{t}, {c}, {h}, {w}]", "tna", w=3.1)
    _arrow(ax, x_in, zr)
    _arrow(ax, zr, enc)
    _arrow(ax, enc, ltca, h=0.47)
    _arrow(ax, enc, gtca, h=0.47)
    _arrow(ax, ltca, dec, h=0.47)
    _arrow(ax, gtca, dec, h=0.47)
    ax.text(4.9, 8.6, "T-NA (non-identical: own weights per (t, c))", fontsize=7, color="#006d2c")
    # gate
    gate = _box(ax, 5.2, 2.6, f"gate = sigmoid(Y_NA * Y_XA)\n[{t}, {c}, {h}, {w}] in (0, 1)", "gate", w=3.2)
    out = _box(ax, 7.6, 1.1, f"gate * S  -> stage 1\n[{t}, {c}, {h}, {w}], 0 where S = 0", "out", w=3.2)
    _arrow(ax, yxa, gate, h=0.31)
    _arrow(ax, dec, gate, h=0.31)
    _arrow(ax, gate, out, h=0.31)
    _arrow(ax, s, out, h=0.31)
    ax.set_title(title or f"The DTA block (T={t}, C={c}, {h}x{w}; batch dimension omitted)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_ms_block(channels_in: int = 64, channels_out: int = 128, height: int = 32, width: int = 32,
                  stride: int = 1, time_steps: int = 6, title: str = "") -> Figure:
    """The MS-ResNet basic block: ``BN(conv(LIF(BN(conv(LIF(x)))))) + shortcut(x)``; the shortcut (identity, or
    1x1 conv + BN) acts on the real-valued membrane input ``x``, not on spikes."""
    import matplotlib.pyplot as plt

    t, ho, wo = time_steps, (height - 1) // stride + 1, (width - 1) // stride + 1
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.set(xlim=(0, 8), ylim=(0, 10))
    ax.axis("off")
    x = _box(ax, 3.0, 9.3, f"x (real membrane input)\n[T={t}, {channels_in}, {height}, {width}]", "input", w=3.0)
    l1 = _box(ax, 3.0, 8.0, "LIF -> spikes", "spike")
    c1 = _box(ax, 3.0, 6.8, f"conv 3x3 {channels_in}->{channels_out}, stride {stride}\n+ BN (over B*T)", "conv",
              w=3.0)
    l2 = _box(ax, 3.0, 5.6, "LIF -> spikes", "spike")
    c2 = _box(ax, 3.0, 4.4, f"conv 3x3 {channels_out}->{channels_out} + BN", "conv", w=3.0)
    add = _box(ax, 3.0, 2.9, "+", "gate", w=0.8, h=0.55)
    out = _box(ax, 3.0, 1.5, f"out (real) [T, {channels_out}, {ho}, {wo}]\n-> next block's LIF", "out", w=3.0)
    short = "identity" if stride == 1 and channels_in == channels_out else (
        f"1x1 conv {channels_in}->{channels_out},\nstride {stride} + BN")
    sc = _box(ax, 6.6, 5.6, f"shortcut on x\n(real, not spikes):\n{short}", "conv", w=2.3, h=1.1)
    for a, b in ((x, l1), (l1, c1), (c1, l2), (l2, c2), (c2, add), (add, out)):
        _arrow(ax, a, b)
    ax.annotate("", xy=(sc[0], sc[1] + 0.55), xytext=(x[0] + 1.5, x[1]),
                arrowprops=dict(arrowstyle="->", lw=0.8, color="0.25", connectionstyle="angle,angleA=0,angleB=90"))
    ax.annotate("", xy=(add[0] + 0.4, add[1]), xytext=(sc[0], sc[1] - 0.55),
                arrowprops=dict(arrowstyle="->", lw=0.8, color="0.25", connectionstyle="angle,angleA=-90,angleB=0"))
    ax.set_title(title or "MS-ResNet basic block (membrane shortcut)", fontsize=9)
    fig.tight_layout()
    return fig
