"""A plain re-statement of the reference release's computation (docs/reference.md), for tests and benchmarks.

Module names, aliases and registration order reproduce the release's ``state_dict`` exactly, and it keeps the
release's habits on purpose: a Python loop over time in every LIF, the input repeated ``T`` times before the stem,
``torch.stack`` of per-step outputs. Tests prove with it that :func:`dta_lib.models.compat.from_reference_state_dict`
and the fast paths compute the same function; ``python -m dta_lib.bench`` races it. Use :mod:`dta_lib.models`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _TriangleSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: Tensor, gamma: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.gamma = gamma
        return (v > 0).float().to(v.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return g * (1 / ctx.gamma) * (1 / ctx.gamma) * (ctx.gamma - v.abs()).clamp(min=0), None


def reference_lif(x: Tensor, decay: float = 0.5, thresh: float = 1.0, gamma: float = 1.0) -> Tensor:
    """The release's LIFSpike loop: per-step ops, ``torch.stack`` of the spikes."""
    mem = 0
    spikes = []
    for t in range(x.shape[1]):
        mem = mem * decay + x[:, t, ...]
        spike = _TriangleSpike.apply(mem - thresh, gamma)
        mem = (1 - spike) * mem
        spikes.append(spike)
    return torch.stack(spikes, dim=1)


class SeqToANNContainer(nn.Module):
    def __init__(self, *args: nn.Module) -> None:
        super().__init__()
        self.module = args[0] if len(args) == 1 else nn.Sequential(*args)

    def forward(self, x: Tensor) -> Tensor:
        y = self.module(x.flatten(0, 1).contiguous())
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class tdBatchNorm(nn.Module):  # noqa: N801 - release name
    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.seqbn = SeqToANNContainer(self.bn)

    def forward(self, x: Tensor) -> Tensor:
        return self.seqbn(x)


class tdLayer(nn.Module):  # noqa: N801 - release name
    def __init__(self, layer: nn.Module, bn: nn.Module | None = None) -> None:
        super().__init__()
        self.layer = SeqToANNContainer(layer)
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x)
        return self.bn(y) if self.bn is not None else y


class BasicBlock_MS(nn.Module):  # noqa: N801 - release name
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tdBatchNorm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tdBatchNorm(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tdLayer(nn.Conv2d(inplanes, planes, 1, stride, bias=False), tdBatchNorm(planes))
        self.conv1_s = tdLayer(self.conv1, self.bn1)
        self.conv2_s = tdLayer(self.conv2, self.bn2)

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.conv1_s(reference_lif(x))
        out = self.conv2_s(reference_lif(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class _TXA(nn.Module):
    def __init__(self, T: int, C: int) -> None:
        super().__init__()
        self.scale_t = nn.Parameter(torch.ones(()))
        self.scale_c = nn.Parameter(torch.ones(()))
        self.conv_t = nn.Conv1d(T, T, 3, padding="same", bias=False)
        self.conv_c = nn.Conv1d(C, C, 6, padding="same", bias=False)

    def forward(self, x: Tensor) -> Tensor:
        z = x.mean(dim=(-1, -2))
        a_t = torch.sigmoid(self.conv_t(z)).unsqueeze(-1).unsqueeze(-1)
        a_c = torch.sigmoid(self.conv_c(z.transpose(1, 2)).transpose(1, 2)).unsqueeze(-1).unsqueeze(-1)
        return (x + self.scale_t * a_t) * (x + self.scale_c * a_c)


class _TCA(nn.Module):
    def __init__(self, D: int) -> None:
        super().__init__()
        self.LTCA = nn.Sequential(  # the release's "dilated" kernel: k // 3 + ((k // 3) % 2 - 1) = 1 for k = 7
            nn.Conv2d(D, D, 5, padding=2, groups=D),
            nn.Conv2d(D, D, 1, padding=0, dilation=3, groups=D),
            nn.Conv2d(D, D, 1),
        )
        h = D // max(D // 16, 4)
        self.MLP_block = nn.Sequential(nn.Linear(D, h, bias=False), nn.ReLU(), nn.Linear(h, D, bias=False))

    def forward(self, e: Tensor) -> Tensor:
        g = self.MLP_block(F.adaptive_avg_pool2d(e, 1).flatten(1))[..., None, None]
        return g * self.LTCA(e) * e


class _TNA(nn.Module):
    def __init__(self, T: int, C: int) -> None:
        super().__init__()
        D = T * C
        self.encoding = nn.Sequential(nn.Conv2d(D, D, 1), nn.GELU())
        self.tca = _TCA(D)
        self.decoding = nn.Conv2d(D, D, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        s = x.reshape(B, T * C, H, W)
        y = self.decoding(self.tca(self.encoding(s))) + s
        return y.reshape(B, T, C, H, W)


class ReferenceMSResNet18(nn.Module):
    """The release's CIFAR MS-ResNet-18 + DTA (C=64 stem), with its module names.

    ``width`` scales every channel count as :func:`dta_lib.models.ms_resnet18` does (not the release's: for benchmarks
    at CPU study sizes); ``width=1`` is the release's model.
    """

    def __init__(self, num_classes: int = 10, time_steps: int = 6, in_channels: int = 3, dta: bool = True,
                 width: float = 1.0) -> None:
        super().__init__()
        from .ms_resnet import _scale

        c0, c1, c2, c3 = _scale([64, 128, 256, 512], width)
        self.T = time_steps
        self.input_conv = tdLayer(nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), tdBatchNorm(c0))
        self.layer1 = nn.Sequential(*[BasicBlock_MS(c0 if i == 0 else c1, c1, 1) for i in range(3)])
        self.layer2 = nn.Sequential(*[BasicBlock_MS(c1 if i == 0 else c2, c2, 2 if i == 0 else 1) for i in range(3)])
        self.layer3 = nn.Sequential(*[BasicBlock_MS(c2 if i == 0 else c3, c3, 2 if i == 0 else 1) for i in range(2)])
        self.fc = tdLayer(nn.Linear(c3, num_classes))
        self.encoding = nn.ModuleDict({"T_NA": _TNA(time_steps, c0), "T_XA": _TXA(time_steps, c0)}) if dta else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(1).repeat(1, self.T, 1, 1, 1)
        x = self.input_conv(x)
        if self.encoding is not None:  # the release's DTA encoding module
            x = torch.sigmoid(self.encoding.T_NA(x) * self.encoding.T_XA(x)) * reference_lif(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = reference_lif(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x.flatten(0, 1), 1), 1).view(x.shape[0], x.shape[1], -1)
        return self.fc(x)
