"""Stateless functions of the spiking layers (spikingjelly's ``functional``).

``lif_multistep`` is the single entry point that every LIF site calls; it picks
an implementation by ``backend``:

- ``"loop"``: the reference loop over time, exactly the release's computation
  (paper Eqs. 1-3) with autograd saving every intermediate.
- ``"auto"``: the fastest correct implementation available for the tensor's
  device (the loop until a fused kernel is registered in :data:`LIF_BACKENDS`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .surrogate import Surrogate

__all__ = ["lif_multistep", "lif_multistep_loop", "lif_trace", "LIF_BACKENDS", "seq_to_ann", "ann_to_seq"]


def lif_multistep_loop(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    r"""Multi-step LIF over dim 1 of ``x`` (``[B, T, ...]``), the release's loop.

    .. math::
        h_t = \lambda u_{t-1} + x_t,\quad s_t = H(h_t - \vartheta),\quad u_t = h_t (1 - s_t)

    with :math:`u_0 = 0`, hard reset to zero and the reset kept in the graph.
    """
    u = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        h = decay * u + x[:, t]
        s = surrogate(h - threshold)
        u = h * (1 - s)
        out.append(s)
    return torch.stack(out, dim=1)


@torch.no_grad()
def lif_trace(
    x: Tensor, decay: float = 0.5, threshold: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Record the LIF dynamics for plotting: charged membrane ``h``, post-reset ``u`` and spikes ``s``,
    each shaped like ``x`` ``[B, T, ...]`` (no autograd)."""
    u = torch.zeros_like(x[:, 0])
    hs, us, ss = [], [], []
    for t in range(x.shape[1]):
        h = decay * u + x[:, t]
        s = (h - threshold > 0).to(x.dtype)
        u = h * (1 - s)
        hs.append(h), us.append(u), ss.append(s)
    return torch.stack(hs, 1), torch.stack(us, 1), torch.stack(ss, 1)


#: name -> function(x, decay, threshold, surrogate) -> spikes. Other modules
#: (e.g. fused kernels) register themselves here.
LIF_BACKENDS: dict[str, Callable[[Tensor, float, float, Surrogate], Tensor]] = {"loop": lif_multistep_loop}


def _auto_backend(x: Tensor) -> str:
    if torch.compiler.is_compiling():
        # under torch.compile the PyTorch loop is traced and fused by inductor; the C kernel is opaque to
        # dynamo (it guards on raw data pointers and recompiles on every call)
        return "loop"
    if x.is_cuda and "triton" in LIF_BACKENDS:
        return "triton"
    if "fused" in LIF_BACKENDS:
        return "fused"
    return "loop"


def lif_multistep(
    x: Tensor, decay: float = 0.5, threshold: float = 1.0, surrogate: Surrogate | None = None, backend: str = "auto"
) -> Tensor:
    """Run a multi-step LIF on ``x`` ``[B, T, ...]``; returns float 0/1 spikes of the same shape."""
    if surrogate is None:
        from .surrogate import Triangle

        surrogate = Triangle(1.0)
    name = _auto_backend(x) if backend == "auto" else backend
    if name not in LIF_BACKENDS:
        raise ValueError(f"unknown LIF backend {backend!r}; expected 'auto' or one of {sorted(LIF_BACKENDS)}")
    return LIF_BACKENDS[name](x, decay, threshold, surrogate)


def seq_to_ann(x: Tensor) -> Tensor:
    """Fold time into batch: ``[B, T, ...] -> [B*T, ...]`` (a view when possible)."""
    return x.flatten(0, 1)


def ann_to_seq(x: Tensor, time_steps: int) -> Tensor:
    """Unfold batch into time: ``[B*T, ...] -> [B, T, ...]``."""
    return x.unflatten(0, (-1, time_steps))


# register the fused kernels ("fused", "triton") as soon as the functional API is imported
from . import kernels as _kernels  # noqa: E402,F401
