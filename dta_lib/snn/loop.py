"""The reference LIF loop over time: exactly the release's computation (paper Eqs. 1-3, as in
:class:`dta_lib.snn.neuron.LIF`). One loop serves training (autograd through every step, the reset kept in the
graph) and plotting (:func:`lif_trace`, which also returns the membrane); the fused kernels are checked against it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .surrogate import Surrogate, Triangle


def _run(x: Tensor, decay: float, threshold: float, surrogate: Surrogate,
         keep_membrane: bool) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The loop itself: lists of ``h``, ``u`` (empty unless ``keep_membrane``) and ``s`` per step."""
    u = torch.zeros_like(x[:, 0])
    hs, us, ss = [], [], []
    for t in range(x.shape[1]):
        h = decay * u + x[:, t]
        s = surrogate(h - threshold)
        u = h * (1 - s)
        ss.append(s)
        if keep_membrane:
            hs.append(h), us.append(u)
    return hs, us, ss


def lif_multistep_loop(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    r"""Multi-step LIF over dim 1 of ``x`` (``[B, T, ...]``), the release's loop; returns the float 0/1 spikes."""
    return torch.stack(_run(x, decay, threshold, surrogate, False)[2], dim=1)


@torch.no_grad()
def lif_trace(x: Tensor, decay: float = 0.5, threshold: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Record the LIF dynamics for plotting: charged membrane ``h``, post-reset ``u`` and spikes ``s``,
    each shaped like ``x`` ``[B, T, ...]`` (no autograd)."""
    h, u, s = (torch.stack(v, 1) for v in _run(x, decay, threshold, Triangle(1.0), True))
    return h, u, s
