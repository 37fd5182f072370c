"""The DTA block: T-XA (identical cross attention) and T-NA (non-identical attention).

All modules take batch-first sequences ``X`` of shape ``[B, T, C, H, W]`` for any ``C`` and ``T`` (the release
hard-codes ``C = 64``). Every constant is an argument defaulting to the release's; where the release departs from
the paper's text the docstring says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTENTION_MODES = ("none", "txa", "tna", "dta")


def _check_seq(x: Tensor, channels: int, time_steps: int, who: str) -> None:
    want = f"{who} expects X of shape [B, T={time_steps}, C={channels}, H, W], got {tuple(x.shape)}"
    if x.dim() != 5:
        raise ValueError(want)
    if x.shape[1:3] != (time_steps, channels):
        raise ValueError(f"{want} (T={x.shape[1]}, C={x.shape[2]})")
    if not torch.is_floating_point(x):
        raise ValueError(f"{who} expects a floating-point X, got dtype {x.dtype}")


class TXA(nn.Module):
    r"""T-XA, temporal-channel-wise identical cross attention.

    Spatial mean pooling gives :math:`z \in \mathbb{R}^{B\times T\times C}`; two branches apply the *same* kind of
    operation (a 1-D conv + sigmoid) along the two axes, and their results cross-multiply:

    .. math::
        A_t = \sigma(\mathrm{Conv1d}_{T\to T,\,k_t}(z)) \quad\text{(TLA: slides along channels)}\\
        A_c = \sigma(\mathrm{Conv1d}_{C\to C,\,k_c}(z^\top))^\top \quad\text{(CLA: slides along time)}\\
        Y_{XA} = (X + a\,A_t) \odot (X + b\,A_c)

    with learnable scalars ``a = scale_t``, ``b = scale_c`` initialised to 1. Release defaults: ``kernel_t=3``,
    ``kernel_c=6``, no bias, 'same' padding (as PyTorch's: for the even kernel 2 left / 3 right, :func:`_pad_same`).
    Parameters: :math:`T^2 k_t + C^2 k_c + 2` (24,686 at T=6, C=64).
    """

    def __init__(self, channels: int, time_steps: int, kernel_t: int = 3, kernel_c: int = 6) -> None:
        super().__init__()
        _positive(channels=channels, time_steps=time_steps, kernel_t=kernel_t, kernel_c=kernel_c)
        self.channels, self.time_steps = channels, time_steps
        self.conv_t = nn.Conv1d(time_steps, time_steps, kernel_t, bias=False)
        self.conv_c = nn.Conv1d(channels, channels, kernel_c, bias=False)
        self.scale_t = nn.Parameter(torch.tensor(1.0))
        self.scale_c = nn.Parameter(torch.tensor(1.0))

    def maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the temporal map ``A_t`` and the channel map ``A_c``, each ``[B, T, C]``."""
        _check_seq(x, self.channels, self.time_steps, "TXA")
        z = x.mean(dim=(3, 4))
        a_t = torch.sigmoid(self.conv_t(_pad_same(z, self.conv_t.kernel_size[0])))
        a_c = torch.sigmoid(self.conv_c(_pad_same(z.transpose(1, 2), self.conv_c.kernel_size[0]))).transpose(1, 2)
        return a_t, a_c

    def forward(self, x: Tensor) -> Tensor:
        a_t, a_c = self.maps(x)
        return (x + (self.scale_t * a_t)[..., None, None]) * (x + (self.scale_c * a_c)[..., None, None])


def _pad_same(z: Tensor, k: int) -> Tensor:
    left = (k - 1) // 2
    return F.pad(z, (left, k - 1 - left))


def dilated_kernel_size(kernel_size: int) -> int:
    """The release's size of the "dilated" LTCA conv: ``k//3 + ((k//3) % 2 - 1)``, 1 for ``k=7``, 7 for ``k=21``."""
    k = kernel_size // 3
    return k + (k % 2 - 1)


def gtca_hidden(dim: int, reduction: int = 16, min_groups: int = 4) -> int:
    """The release's GTCA bottleneck width ``D // max(D // reduction, min_groups)`` (16 for D >= 64)."""
    return max(1, dim // max(dim // reduction, min_groups))


class LTCA(nn.Module):
    r"""Local temporal-channel attention: depthwise conv -> depthwise dilated conv -> 1x1 conv.

    Acts on the folded ``[B, T*C, H, W]`` tensor. Release: 5x5 depthwise (padding 2); the "dilated" conv, built from
    ``kernel_size=7``, degenerates to 1x1 (:func:`dilated_kernel_size`), a per-channel scale and bias, where the
    paper's text describes a true dilated conv: ``kernel_size=21`` gives 7x7 with dilation 3. Under CPU autocast
    the two depthwise convs of an fp32 model run in fp32: there PyTorch's bf16 depthwise backward takes 3-4x fp32's.
    """

    def __init__(self, dim: int, kernel_size: int = 7, dw_kernel: int = 5, dilation: int = 3) -> None:
        super().__init__()
        _positive(dim=dim, kernel_size=kernel_size, dw_kernel=dw_kernel, dilation=dilation)
        kd = dilated_kernel_size(kernel_size)
        if kd < 1:
            raise ValueError(f"LTCA kernel_size={kernel_size} gives a dilated kernel of {kd}; use kernel_size >= 3")
        self.depthwise = nn.Conv2d(dim, dim, dw_kernel, padding=dw_kernel // 2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, kd, padding=dilation * (kd - 1) // 2, dilation=dilation, groups=dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)

    def forward(self, e: Tensor) -> Tensor:
        if e.device.type == "cpu" and torch.is_autocast_enabled("cpu") and self.depthwise.weight.dtype == torch.float32:
            with torch.autocast("cpu", enabled=False):
                e = self.dilated(self.depthwise(e.float()))
            return self.pointwise(e)
        return self.pointwise(self.dilated(self.depthwise(e)))


class GTCA(nn.Module):
    r"""Global temporal-channel attention: GAP -> Linear(D, h) -> ReLU -> Linear(h, D), no bias and, as in the
    release, no sigmoid: an unbounded per-(t, c) weight ``[B, D, 1, 1]`` broadcast over H, W."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = gtca_hidden(dim) if hidden is None else hidden
        _positive(dim=dim, hidden=hidden)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, e: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(e.mean(dim=(2, 3)))))[..., None, None]


class TNA(nn.Module):
    r"""T-NA, temporal-channel-wise non-identical attention.

    Time and channel are merged, ``S = reshape(X) \in \mathbb{R}^{B\times TC\times H\times W}`` (index ``t*C + c``),
    and two *different* operations model local and global dependencies:

    .. math::
        E = \mathrm{GELU}(\mathrm{Conv}_{1\times1}(S)),\qquad
        Y_{NA} = \mathrm{Conv}_{1\times1}\big(\mathrm{GTCA}(E) \odot \mathrm{LTCA}(E) \odot E\big) + S

    reshaped back to ``[B, T, C, H, W]``. Parameters at T=6, C=64 (D=384): 466,560,
    of which the three D x D 1x1 convs (encode, LTCA pointwise, decode) hold 443,520.
    """

    def __init__(self, channels: int, time_steps: int, kernel_size: int = 7, dw_kernel: int = 5, dilation: int = 3,
                 gtca_hidden: int | None = None) -> None:
        super().__init__()
        _positive(channels=channels, time_steps=time_steps)  # LTCA and GTCA check their own arguments
        self.channels, self.time_steps = channels, time_steps
        dim = channels * time_steps
        self.encode = nn.Conv2d(dim, dim, 1)
        self.ltca = LTCA(dim, kernel_size, dw_kernel, dilation)
        self.gtca = GTCA(dim, gtca_hidden)
        self.decode = nn.Conv2d(dim, dim, 1)

    def maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the local map ``LTCA(E)`` ``[B, T, C, H, W]`` and the global map ``GTCA(E)`` ``[B, T, C]``."""
        _check_seq(x, self.channels, self.time_steps, "TNA")
        e = F.gelu(self.encode(x.flatten(1, 2)))
        tc = (self.time_steps, self.channels)
        return self.ltca(e).unflatten(1, tc), self.gtca(e)[..., 0, 0].unflatten(1, tc)

    def forward(self, x: Tensor) -> Tensor:
        _check_seq(x, self.channels, self.time_steps, "TNA")
        s = x.flatten(1, 2)
        e = F.gelu(self.encode(s))
        y = self.decode(self.gtca(e) * self.ltca(e) * e) + s
        return y.unflatten(1, (self.time_steps, self.channels))


class DTA(nn.Module):
    r"""Dual temporal-channel-wise attention (the release's block after the stem).

    .. math:: \mathrm{DTA}(X, S) = \sigma\big(\mathrm{T\text{-}NA}(X) \odot \mathrm{T\text{-}XA}(X)\big) \odot S

    ``X`` is the real-valued stem output (conv + BN) ``[B, T, C, H, W]`` and ``S`` its LIF spikes; the result is
    real-valued in ``[0, 1]``.

    ``mode`` selects the ablation: ``"dta"`` (both), ``"txa"`` or ``"tna"`` (the gate is the sigmoid of that branch
    alone; the other branch is not built). The other arguments go to :class:`TXA` and :class:`TNA`.
    """

    def __init__(self, channels: int, time_steps: int, mode: str = "dta", kernel_t: int = 3, kernel_c: int = 6,
                 kernel_size: int = 7, dw_kernel: int = 5, dilation: int = 3, gtca_hidden: int | None = None) -> None:
        super().__init__()
        if mode not in ("txa", "tna", "dta"):
            raise ValueError(f"DTA mode must be one of 'txa', 'tna', 'dta', got {mode!r}")
        self.mode = mode
        self.channels, self.time_steps = channels, time_steps
        self.txa = TXA(channels, time_steps, kernel_t, kernel_c) if mode in ("txa", "dta") else None
        self.tna = TNA(channels, time_steps, kernel_size, dw_kernel, dilation, gtca_hidden) if mode in ("tna", "dta") else None

    def gate(self, x: Tensor) -> Tensor:
        """The attention gate ``sigmoid(...)`` in ``[0, 1]``, shape of ``x``."""
        _check_seq(x, self.channels, self.time_steps, "DTA")
        if self.txa is not None and self.tna is not None:
            return torch.sigmoid(self.tna(x) * self.txa(x))
        branch = self.txa if self.txa is not None else self.tna
        return torch.sigmoid(branch(x))  # type: ignore[misc]

    def forward(self, x: Tensor, spikes: Tensor) -> Tensor:
        if spikes.shape != x.shape:
            raise ValueError(f"DTA expects spikes of the same shape as X {tuple(x.shape)}, got {tuple(spikes.shape)}")
        return self.gate(x) * spikes

    def extra_repr(self) -> str:
        return f"channels={self.channels}, time_steps={self.time_steps}, mode={self.mode!r}"


def _positive(**kwargs: int) -> None:
    for k, v in kwargs.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
