"""Surrogate gradients for the Heaviside spike function (spikingjelly's ``surrogate``: spike functions only).

Calling a surrogate on the centred membrane ``v = h - threshold`` returns float 0/1 spikes ``s = H(v) = 1[v > 0]``
whose backward uses the surrogate derivative ``ds/dv = g'(v)`` instead of the Dirac delta. ``primitive(v)`` is a
smooth function whose exact derivative is the surrogate derivative (the tests check every backward against it).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative`` backward."""

    @staticmethod
    def forward(ctx, v: Tensor, surrogate: "Surrogate") -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(v), None


class Surrogate(nn.Module):
    """Base class: ``forward(v)`` spikes with a surrogate backward."""

    #: name used by :func:`build_surrogate` and the CLI; the width used when none is given
    name: str = "base"
    default_width: float = 1.0

    def __init__(self, width: float | None = None) -> None:
        super().__init__()
        width = self.default_width if width is None else width
        if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
            raise ValueError(f"surrogate width must be a finite number > 0, got {width!r}")
        self.width = float(width)

    def derivative(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def primitive(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, v: Tensor) -> Tensor:
        return _SpikeFn.apply(v, self)

    def extra_repr(self) -> str:
        return f"width={self.width}"


class Triangle(Surrogate):
    r"""Triangle surrogate of the reference release (paper Eq. 5).

    .. math:: \frac{\partial s}{\partial h} = \frac{1}{\gamma^2}\max(0, \gamma - |h - \vartheta|)

    ``width`` is :math:`\gamma` (the paper summary calls it :math:`\alpha`); the release's ``width=1.0`` gives a
    triangle of height 1 and half-width 1.
    """

    name = "triangle"

    def derivative(self, v: Tensor) -> Tensor:
        g = self.width
        return (g - v.abs()).clamp_min(0) / (g * g)

    def primitive(self, v: Tensor) -> Tensor:
        g = self.width
        vc = v.clamp(-g, g)
        left = (vc + g) ** 2 / (2 * g * g)  # integral of the rising edge
        right = 1.0 - (g - vc) ** 2 / (2 * g * g)  # 1 minus the falling edge's tail
        return torch.where(vc < 0, left, right)


class Sigmoid(Surrogate):
    r"""Sigmoid surrogate: :math:`s' = \alpha\,\sigma(\alpha v)(1-\sigma(\alpha v))`, default ``width=4``."""

    name, default_width = "sigmoid", 4.0

    def derivative(self, v: Tensor) -> Tensor:
        s = torch.sigmoid(self.width * v)
        return self.width * s * (1 - s)

    def primitive(self, v: Tensor) -> Tensor:
        return torch.sigmoid(self.width * v)


class ATan(Surrogate):
    r"""Arctan surrogate: :math:`s' = \frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha v)^2}`, default ``width=2``."""

    name, default_width = "atan", 2.0

    def derivative(self, v: Tensor) -> Tensor:
        a = self.width
        return (a / 2) / (1 + (math.pi / 2 * a * v) ** 2)

    def primitive(self, v: Tensor) -> Tensor:
        a = self.width
        return torch.atan(math.pi / 2 * a * v) / math.pi + 0.5


SURROGATES: dict[str, type[Surrogate]] = {c.name: c for c in (Triangle, Sigmoid, ATan)}


def build_surrogate(name: str = "triangle", width: float | None = None) -> Surrogate:
    """Build a surrogate by name (``triangle``, ``sigmoid``, ``atan``)."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}")
    return SURROGATES[name](width)
