"""Parameter and shape accounting for MS-ResNet + DTA (notebook 04), and :func:`calibrate_bn`, which gives an
*untrained* model BatchNorm statistics from real images so it can be analysed in eval mode (notebooks 02-04)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor, nn

from .attention import DTA, TNA, TXA


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (weights, biases, BN affine; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


#: (prefix of the parameter name, group, component, paper term); first match wins.
_COMPONENTS: tuple[tuple[str, str, str, str], ...] = (
    ("stem_", "stem", "stem conv + BN", "stem"),
    ("dta.txa.conv_t.", "DTA: T-XA", "T-XA conv_t (T->T, k=3)", "TLA"),
    ("dta.txa.conv_c.", "DTA: T-XA", "T-XA conv_c (C->C, k=6)", "CLA"),
    ("dta.txa.scale_", "DTA: T-XA", "T-XA scales a, b", "cross-attention scales"),
    ("dta.tna.encode.", "DTA: T-NA", "T-NA encode 1x1 (D->D)", "encoding"),
    ("dta.tna.ltca.depthwise.", "DTA: T-NA", "T-NA LTCA depthwise 5x5", "LTCA"),
    ("dta.tna.ltca.dilated.", "DTA: T-NA", "T-NA LTCA 'dilated' (1x1 per channel)", "LTCA"),
    ("dta.tna.ltca.pointwise.", "DTA: T-NA", "T-NA LTCA pointwise 1x1 (D->D)", "LTCA"),
    ("dta.tna.gtca.", "DTA: T-NA", "T-NA GTCA MLP (D->16->D)", "GTCA"),
    ("dta.tna.decode.", "DTA: T-NA", "T-NA decode 1x1 (D->D)", "decoding"),
    ("fc.", "head", "fc", "classifier"),
)


def _component(name: str) -> tuple[float, str, str, str]:
    """``(order, group, component, paper term)`` of a parameter name."""
    for i, (prefix, group, comp, term) in enumerate(_COMPONENTS):
        if name.startswith(prefix):
            return i if prefix != "fc." else 1000, group, comp, term
    if name.startswith("layer"):
        stage = name.split(".", 1)[0]
        return 100 + int(stage[5:]), "backbone", f"stage {stage[5:]} ({stage})", "MS blocks"
    return 2000, "other", name.rsplit(".", 1)[0], ""


def parameter_table(model: nn.Module) -> pd.DataFrame:
    """Parameters per component of an MS-ResNet, in model order: columns ``group`` (stem / DTA: T-XA / DTA: T-NA /
    backbone / head / other), ``component``, ``paper term``, ``parameters``, ``share %``. Every parameter lands in
    exactly one row (unknown names in ``other``), so the column sums to the total."""
    rows: Counter[tuple[float, str, str, str]] = Counter()
    for name, p in model.named_parameters():
        rows[_component(name)] += p.numel()
    df = pd.DataFrame([(g, c, t, n) for (_, g, c, t), n in sorted(rows.items(), key=lambda kv: kv[0][0])],
                      columns=["group", "component", "paper term", "parameters"])
    df["share %"] = (100.0 * df["parameters"] / max(count_parameters(model), 1)).round(2)
    return df


def forward_shapes(model: nn.Module, x: Tensor) -> pd.DataFrame:
    """Input and output shapes of each top-level module during ``model(x)`` (no grad); the last row is the model's.
    Time-distributed 2-D layers see the folded ``[B*T, C, H, W]`` batch; LIF, DTA and stages ``[B, T, C, H, W]``."""
    records: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []
    handles = [m.register_forward_hook(lambda mod, inp, out, name=n: records.append(
        (name, type(mod).__name__, tuple(inp[0].shape), tuple(out.shape)))) for n, m in model.named_children()]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    records.append(("(model)", type(model).__name__, tuple(x.shape), tuple(y.shape)))
    return pd.DataFrame(records, columns=["module", "type", "input shape", "output shape"])


def release_configurations() -> list[dict[str, Any]]:
    """The five configurations of the spec's parameter table (keyword arguments of ``ms_resnet18``)."""
    return [dict(num_classes=k, time_steps=t, attention=a, in_channels=c)
            for k, t, a, c in ((10, 6, "none", 3), (10, 6, "dta", 3), (10, 4, "dta", 3), (100, 6, "dta", 3),
                               (10, 10, "dta", 2))]


def dta_parameter_variants(channels: int = 64, time_steps: int = 6) -> pd.DataFrame:
    """DTA parameter counts (columns ``configuration``, ``parameters``, ``M``: millions, 2 decimals) of the release
    block and the alternatives the paper's "~0.09M" might mean (T-XA / T-NA alone, T-NA's three ``D x D`` 1x1 convs
    removed, shared over time or grouped per step, other ``T``), from modules built here. Bad arguments: ValueError."""
    def one_by_one(d: int, groups: int = 1) -> int:
        return count_parameters(nn.Conv2d(d, d, 1, groups=groups))

    dim = channels * time_steps
    txa = count_parameters(TXA(channels, time_steps))
    tna_mod = TNA(channels, time_steps)
    tna = count_parameters(tna_mod)
    convs = sum(count_parameters(m) for m in (tna_mod.encode, tna_mod.ltca.pointwise, tna_mod.decode))
    rest = tna - convs
    rows = [
        (f"release DTA (T={time_steps}, C={channels})", count_parameters(DTA(channels, time_steps))),
        ("T-XA only", txa),
        ("T-NA only", tna),
        ("  of which T-NA's three D x D 1x1 convs", convs),
        ("DTA without the three D x D 1x1 convs", txa + rest),
        ("DTA with the 1x1 convs shared over time (C x C)", txa + rest + 3 * one_by_one(channels)),
        (f"DTA with the 1x1 convs grouped per time step (groups={time_steps})", txa + rest + 3 * one_by_one(dim, time_steps)),
        ("DTA with one D x D 1x1 conv (LTCA pointwise) only", txa + rest + one_by_one(dim)),
        ("DTA with the paper text's 7x7 dilated LTCA conv (kernel_size=21)",
         count_parameters(DTA(channels, time_steps, kernel_size=21))),
    ]
    rows += [(f"release DTA at T={t}", count_parameters(DTA(channels, t))) for t in (1, 2, 4, 10) if t != time_steps]
    df = pd.DataFrame(rows, columns=["configuration", "parameters"])
    df["M"] = (df["parameters"] / 1e6).round(2)
    return df


def calibrate_bn(model: nn.Module, images: Tensor, batch_size: int = 64,
                 forward: Callable[[Tensor], Any] | None = None) -> nn.Module:
    """Set every BatchNorm's running statistics from ``images``; returns ``model``, now in eval mode.

    (A fresh BN does not fit real features; one image in train mode has spatial mean exactly 0 per channel, which
    erases T-XA's pooled input ``z``.) Runs ``forward`` (default ``model``; ``model.stem``: only the stem BN) over
    ``batch_size`` chunks in train mode without gradients, as :func:`torch.optim.swa_utils.update_bn` (cumulative
    average); momenta are restored even on error. BNs that ``forward`` does not reach keep mean 0, variance 1."""
    if not isinstance(images, Tensor) or images.dim() not in (4, 5) or images.shape[0] < 1 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor [N, C, H, W] or [N, T, C, H, W] with N >= 1, got {got}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not (bns := [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]):
        raise ValueError(f"calibrate_bn: {type(model).__name__} has no BatchNorm layer to calibrate")
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                (forward or model)(chunk)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
    return model.eval()
