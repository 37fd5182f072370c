"""Fused LIF kernels; :mod:`dta_lib.snn.functional` lists them in ``LIF_BACKENDS``.

- ``"fused"`` (:mod:`.lif_cpu`): any device; C/OpenMP loops on CPU with a PyTorch fallback.
- ``"triton"`` (:mod:`.lif_triton`): CUDA, registered when Triton is installed; imported lazily
  on first use so that ``import dta_lib`` stays fast.

``lif_multistep(backend="auto")`` then picks ``triton`` for CUDA tensors and ``fused`` otherwise.
"""
from __future__ import annotations

import importlib.util
import warnings

from torch import Tensor

from ..loop import lif_multistep_loop
from ..surrogate import Surrogate
from .lif_cpu import FusedLIF, c_extension_available, lif_multistep_fused

__all__ = ["lif_multistep_fused", "lif_multistep_triton", "FusedLIF", "c_extension_available", "triton_available"]


def triton_available() -> bool:
    """True when the ``triton`` package is importable."""
    return importlib.util.find_spec("triton") is not None


_TRITON_BROKEN: list[str] = []  # the first failure's message, once Triton failed to compile or run here


def lif_multistep_triton(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """Lazy entry point of :func:`dta_lib.kernels.lif_triton.lif_multistep_triton`.

    If Triton fails to compile or launch (a driver/toolchain problem on this GPU), this warns once and falls back
    to the PyTorch loop (same results, slower) for the rest of the process.
    """
    if not _TRITON_BROKEN:
        try:
            from .lif_triton import lif_multistep_triton as impl

            return impl(x, decay, threshold, surrogate)
        except Exception as e:  # triton's CompilationError, driver errors, a missing toolchain...
            _TRITON_BROKEN.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            warnings.warn(f"Triton LIF kernel failed ({_TRITON_BROKEN[0]}); using the PyTorch LIF loop instead "
                          "(same results, slower)", RuntimeWarning, stacklevel=2)
    return lif_multistep_loop(x, decay, threshold, surrogate)

