"""Fused LIF kernels, registered into :data:`dta_lib.functional.LIF_BACKENDS` on import.

- ``"fused"`` (:mod:`.lif_cpu`): any device; C/OpenMP loops on CPU with a PyTorch fallback.
- ``"triton"`` (:mod:`.lif_triton`): CUDA, registered when Triton is installed; imported lazily
  on first use so that ``import dta_lib`` stays fast.

``lif_multistep(backend="auto")`` then picks ``triton`` for CUDA tensors and ``fused`` otherwise.
"""
from __future__ import annotations

import importlib.util

from torch import Tensor

from ..functional import LIF_BACKENDS
from ..surrogate import Surrogate
from .lif_cpu import FusedLIF, c_extension_available, lif_multistep_fused

__all__ = ["lif_multistep_fused", "lif_multistep_triton", "FusedLIF", "c_extension_available", "triton_available"]


def triton_available() -> bool:
    """True when the ``triton`` package is importable."""
    return importlib.util.find_spec("triton") is not None


def lif_multistep_triton(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """Lazy entry point of :func:`dta_lib.kernels.lif_triton.lif_multistep_triton`."""
    from .lif_triton import lif_multistep_triton as impl

    return impl(x, decay, threshold, surrogate)


LIF_BACKENDS["fused"] = lif_multistep_fused
if triton_available():
    LIF_BACKENDS["triton"] = lif_multistep_triton
