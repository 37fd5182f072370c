"""MS-ResNet backbones with one DTA block after the stem (torchvision-style builders). Layout ``[B, T, C, H, W]``
throughout; 2-D layers fold ``T`` into the batch (a view), so BatchNorm statistics are shared across time."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..snn.kernels.saving import compact_spikes
from ..snn.neuron import LIF
from ..snn.surrogate import Surrogate, build_surrogate
from .attention import ATTENTION_MODES, DTA, _positive


class MSBlock(nn.Module):
    r"""Membrane-shortcut basic block (MS-ResNet).

    .. math:: \mathrm{out} = \mathrm{BN}(\mathrm{conv}_{3\times3}(\mathrm{LIF}(\mathrm{BN}(\mathrm{conv}_{3\times3}(\mathrm{LIF}(x)))))) + \mathrm{sc}(x)

    The shortcut acts on the real-valued membrane input ``x`` (not on spikes): identity, or a 1x1 conv (stride ``s``,
    no bias) + BN when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, **lif: Any) -> None:
        super().__init__()
        self.lif1 = LIF(**lif)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.lif2 = LIF(**lif)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        out = self.bn1(self.conv1(self.lif1(x).flatten(0, 1)))
        out = self.bn2(self.conv2(self.lif2(out.unflatten(0, (-1, t))).flatten(0, 1)))
        sc = x.flatten(0, 1)
        if self.downsample is not None:
            sc = self.downsample(sc)
        return (out + sc).unflatten(0, (-1, t))


class MSResNet(nn.Module):
    """Spiking MS-ResNet with an optional DTA block after the stem.

    Input ``[B, C, H, W]`` (static image, direct encoding: repeated ``time_steps`` times) or ``[B, T, C, H, W]``
    (frames). Output logits ``[B, T, num_classes]``; predictions and the loss use their mean over ``T``. For a static
    image the stem conv runs once and is broadcast over time (the same function as repeating the input, ``T`` times
    cheaper).
    """

    def __init__(self, blocks: Sequence[int], channels: Sequence[int], strides: Sequence[int], num_classes: int = 10,
                 time_steps: int = 6, attention: str = "dta", in_channels: int = 3, stem_channels: int = 64,
                 stem_kernel: int = 3, stem_stride: int = 1, maxpool: bool = False, decay: float = 0.5,
                 threshold: float = 1.0, surrogate: str | Surrogate = "triangle", surrogate_width: float | None = None,
                 lif_backend: str = "auto", dta_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        _positive(num_classes=num_classes, time_steps=time_steps, in_channels=in_channels)
        if not (len(blocks) == len(channels) == len(strides)):
            raise ValueError(f"blocks, channels and strides must have equal lengths, got {blocks}, {channels}, {strides}")
        sg = surrogate if isinstance(surrogate, Surrogate) else build_surrogate(surrogate, surrogate_width)
        lif = dict(decay=decay, threshold=threshold, surrogate=sg, backend=lif_backend)
        self.num_classes, self.time_steps, self.in_channels = num_classes, time_steps, in_channels
        self.attention = attention

        self.stem_conv = nn.Conv2d(in_channels, stem_channels, stem_kernel, stem_stride, stem_kernel // 2, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem_channels)
        self.stem_lif: LIF | None = None
        self.dta: DTA | None = None
        if attention != "none":
            self.stem_lif = LIF(**lif)
            self.dta = DTA(stem_channels, time_steps, mode=attention, **(dta_kwargs or {}))
        self.maxpool = nn.MaxPool2d(3, 2, 1) if maxpool else None
        self.stages = len(blocks)
        c_in = stem_channels
        for i, (n, c, s) in enumerate(zip(blocks, channels, strides), start=1):
            layer = [MSBlock(c_in if j == 0 else c, c, s if j == 0 else 1, **lif) for j in range(n)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            c_in = c
        self.head_lif = LIF(**lif)
        self.fc = nn.Linear(c_in, num_classes)

    def stem(self, x: Tensor) -> Tensor:
        """Stem conv + BN, returning the real-valued ``[B, T, C, H, W]`` membrane input (checks ``x``)."""
        t, w = self.time_steps, self.stem_conv.weight
        shape = f"of shape [B, {self.in_channels}, H, W] or [B, {t}, {self.in_channels}, H, W]"
        want = f"expected input {shape}"
        if x.dim() not in (4, 5):
            raise ValueError(f"{want}, got {tuple(x.shape)} ({x.dim()} dims)")
        if not torch.is_floating_point(x):
            raise ValueError(f"expected a floating-point input {shape}, got dtype {x.dtype}")
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"input dtype {x.dtype} does not match the model's {w.dtype}: convert one "
                             f"(x.to({w.dtype}) or model.to({x.dtype})), or run under torch.autocast")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"{want}, got {tuple(x.shape)} (C={x.shape[-3]})")
        if x.dim() == 5 and x.shape[1] != t:
            raise ValueError(f"{want}, got {tuple(x.shape)} (T={x.shape[1]})")
        if min(x.shape[0], x.shape[-2], x.shape[-1]) < 1:
            raise ValueError(f"{want} with B, H, W >= 1, got {tuple(x.shape)}")
        if x.dim() == 4:
            y = self.stem_conv(x)  # identical for every t: compute once, then broadcast
            fmt = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            rep = torch.empty((y.shape[0] * t, *y.shape[1:]), dtype=y.dtype, device=y.device, memory_format=fmt)
            rep.unflatten(0, (-1, t)).copy_(y.unsqueeze(1))  # one copy, in y's memory format
            y = rep
        else:
            y = self.stem_conv(x.flatten(0, 1))
        return self.stem_bn(y).unflatten(0, (-1, t))

    def features(self, x: Tensor) -> Tensor:
        """Stem, DTA and all stages: ``[B, T, C_last, H', W']``."""
        y = self.stem(x)
        if self.dta is not None and self.stem_lif is not None:
            y = self.dta(y, self.stem_lif(y))
        if self.maxpool is not None:
            y = self.maxpool(y.flatten(0, 1)).unflatten(0, (-1, self.time_steps))
        for i in range(1, self.stages + 1):
            y = getattr(self, f"layer{i}")(y)
        return y

    def forward(self, x: Tensor) -> Tensor:
        # spikes of the fused LIF backends are saved for backward as bool (exact, 1/4 the memory)
        with compact_spikes():
            y = self.head_lif(self.features(x)).mean(dim=(3, 4))
            return self.fc(y)


def _scale(channels: Sequence[int], width: float) -> list[int]:
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a number > 0, got {width!r}")
    return [max(1, int(round(c * width))) for c in channels]


def ms_resnet18(num_classes: int = 10, time_steps: int = 6, attention: str = "dta", in_channels: int = 3,
                width: float = 1.0, **kwargs: Any) -> MSResNet:
    """CIFAR MS-ResNet-18 of the paper (the ResNet-19 layout) with DTA after the stem.

    Stem 3x3 conv (stride 1) -> BN -> [LIF -> DTA] -> stages of 3, 3, 2 MS blocks with 128, 256, 512 channels and
    strides 1, 2, 2 -> LIF -> GAP -> Linear per time step. ``attention`` in ``{"none", "txa", "tna", "dta"}``;
    ``width`` scales every channel count (for CPU-sized runs); other keyword arguments go to :class:`MSResNet`.
    With the defaults the parameter count equals the release's: 12,993,336 (DTA, T=6), 12,502,090 without attention.
    """
    stem, *chans = _scale([64, 128, 256, 512], width)
    return MSResNet([3, 3, 2], chans, [1, 2, 2], num_classes, time_steps, attention, in_channels, stem_channels=stem,
                    **kwargs)


def ms_resnet34(num_classes: int = 1000, time_steps: int = 6, attention: str = "dta", in_channels: int = 3,
                width: float = 1.0, layout: str = "release", **kwargs: Any) -> MSResNet:
    """ImageNet MS-ResNet-34 with DTA after the stem.

    Stem 7x7 conv stride 2 -> BN -> [LIF -> DTA] -> stages of 3, 4, 6, 3 MS blocks with 64, 128, 256, 512 channels.
    ``layout="release"``: strides 1, 1, 2, 2 and no max-pool (feature maps stay 112x112 for two stages at 224 input),
    as the reference release, whose ImageNet model does not run as released (this one does).
    ``layout="standard"``: the usual MS-ResNet-34, a 3x3 stride-2 max-pool after the stem's DTA and strides
    1, 2, 2, 2 (final maps 7x7 at 224 input).
    """
    if layout not in ("release", "standard"):
        raise ValueError(f"layout must be 'release' or 'standard', got {layout!r}")
    stem, *chans = _scale([64, 64, 128, 256, 512], width)
    strides = [1, 1, 2, 2] if layout == "release" else [1, 2, 2, 2]
    return MSResNet([3, 4, 6, 3], chans, strides, num_classes, time_steps, attention, in_channels, stem_channels=stem,
                    stem_kernel=7, stem_stride=2, maxpool=layout == "standard", **kwargs)
