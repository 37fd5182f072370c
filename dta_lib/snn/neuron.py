"""Spiking neurons (spikingjelly's ``neuron``): the LIF of the reference release."""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from .functional import lif_multistep
from .loop import lif_trace
from .surrogate import Surrogate, Triangle


class LIF(nn.Module):
    r"""Multi-step leaky integrate-and-fire neuron (paper Eqs. 1-3), stateless across calls.

    .. math::
        h_t = \lambda\,u_{t-1} + x_t, \qquad
        s_t = H(h_t - \vartheta), \qquad
        u_t = h_t\,(1 - s_t), \qquad u_0 = 0

    Release semantics: ``decay`` :math:`\lambda = 0.5` in ``[0, 1]`` is a multiplicative decay (not a time
    constant), ``threshold`` :math:`\vartheta = 1.0` (> 0) compared strictly, a hard reset to zero *not* detached
    from the graph. ``surrogate``: default :class:`Triangle` of width 1.0. ``backend``: ``"auto"`` (fastest for the
    device), ``"loop"`` (reference) or a name in :data:`dta_lib.snn.functional.LIF_BACKENDS`.

    Shape: input ``[B, T, ...]`` float; output 0/1 spikes of the same shape and dtype.
    """

    def __init__(
        self, decay: float = 0.5, threshold: float = 1.0, surrogate: Surrogate | None = None, backend: str = "auto"
    ) -> None:
        super().__init__()
        for name, v in (("decay", decay), ("threshold", threshold)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"LIF {name} must be a real number, got {v!r} ({type(v).__name__})")
        if not (math.isfinite(decay) and 0.0 <= decay <= 1.0):
            raise ValueError(f"LIF decay must be in [0, 1], got {decay!r}")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"LIF threshold must be a finite number > 0, got {threshold!r}")
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.surrogate = surrogate if surrogate is not None else Triangle(1.0)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects input [B, T, ...] with at least 2 dims, got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise ValueError(f"LIF expects a floating-point input, got dtype {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"LIF expects input [B, T, ...] with at least one element, got shape {tuple(x.shape)}")
        return lif_multistep(x, self.decay, self.threshold, self.surrogate, self.backend)

    def trace(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(h, u, s)``: charged membrane, post-reset membrane and spikes per step (for plots)."""
        return lif_trace(x, self.decay, self.threshold)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, threshold={self.threshold}, backend={self.backend!r}"
