"""Stateless functions of the spiking layers (spikingjelly's ``functional``): :func:`lif_multistep`, which every LIF
site calls, runs the backend that ``backend`` names in :data:`LIF_BACKENDS` (add your own: name -> function):

- ``"loop"``: the reference loop (:mod:`dta_lib.snn.loop`), the release's computation (paper Eqs. 1-3);
- ``"fused"``: one autograd node (:mod:`dta_lib.snn.kernels.lif_cpu`); ``"triton"``: CUDA, when Triton is installed;
- ``"auto"``: the fastest correct one for the tensor's device.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .kernels import lif_multistep_triton, triton_available
from .kernels.lif_cpu import c_extension_available, lif_multistep_fused, surrogate_code
from .loop import lif_multistep_loop
from .surrogate import Surrogate, Triangle

#: name -> function(x, decay, threshold, surrogate) -> spikes
LIF_BACKENDS: dict[str, Callable[[Tensor, float, float, Surrogate], Tensor]] = {
    "loop": lif_multistep_loop, "fused": lif_multistep_fused}
if triton_available():
    LIF_BACKENDS["triton"] = lif_multistep_triton


def _auto_backend(x: Tensor, surrogate: Surrogate) -> str:
    if torch.compiler.is_compiling() and not (x.device.type == "cpu" and c_extension_available()
                                              and surrogate_code(surrogate) is not None):
        return "loop"  # traced and fused by inductor; the C kernels are custom ops that torch.compile keeps
    return "triton" if x.is_cuda and "triton" in LIF_BACKENDS else "fused"


def lif_multistep(
    x: Tensor, decay: float = 0.5, threshold: float = 1.0, surrogate: Surrogate | None = None, backend: str = "auto"
) -> Tensor:
    """Run a multi-step LIF on ``x`` ``[B, T, ...]``; returns float 0/1 spikes of the same shape."""
    surrogate = surrogate or Triangle(1.0)
    name = _auto_backend(x, surrogate) if backend == "auto" else backend
    if name not in LIF_BACKENDS:
        raise ValueError(f"unknown LIF backend {backend!r}; expected 'auto' or one of {sorted(LIF_BACKENDS)}")
    return LIF_BACKENDS[name](x, decay, threshold, surrogate)
