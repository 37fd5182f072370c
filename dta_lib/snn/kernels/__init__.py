"""The fused LIF kernels of :data:`dta_lib.snn.functional.LIF_BACKENDS`, :mod:`.lif_cpu` and :mod:`.lif_triton`
(the Triton one imported on first use so that ``import dta_lib`` stays fast), and which one runs where."""
from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from ..surrogate import Surrogate
from .lif_cpu import _TRITON_BROKEN, c_extension_available, lif_multistep_fused, triton_failed


def triton_available() -> bool:
    """True when the ``triton`` package is importable."""
    return importlib.util.find_spec("triton") is not None


def lif_multistep_triton(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """Lazy entry point of :func:`dta_lib.snn.kernels.lif_triton.lif_multistep_triton`. If Triton fails to compile
    or launch (forward or backward), this warns once and the process goes on with :func:`lif_multistep_fused`'s
    PyTorch path, the same fp32-membrane arithmetic: results do not depend on which backend ran."""
    if not _TRITON_BROKEN:
        try:
            from .lif_triton import lif_multistep_triton as impl

            return impl(x, decay, threshold, surrogate)
        except (torch.OutOfMemoryError, ValueError):  # not Triton's fault: a full GPU, an unsupported dtype
            raise
        except Exception as e:  # triton's CompilationError, driver errors, a missing toolchain...
            triton_failed(e, "forward")
    return lif_multistep_fused(x, decay, threshold, surrogate)


def lif_backend_name(device: torch.device | str, compiled: bool = False) -> str:
    """The LIF backend that ``backend="auto"`` runs on ``device`` in this process, as ``run.json`` records it."""
    cpu = torch.device(device).type == "cpu"
    if cpu and c_extension_available():
        return "fused C (OpenMP)" + (", a custom op kept by torch.compile (built-in surrogates)" if compiled else "")
    if compiled:
        return "loop (traced by torch.compile)"
    if torch.device(device).type == "cuda" and triton_available():
        return f"fused PyTorch (Triton failed: {_TRITON_BROKEN[0]})" if _TRITON_BROKEN else "triton"
    return "fused PyTorch"
