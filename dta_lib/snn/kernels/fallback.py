"""Whether the Triton LIF kernels failed in this process: after a first failure (compile, forward or backward
launch) every LIF runs the fused PyTorch path, which computes the same fp32-membrane arithmetic."""
from __future__ import annotations

import warnings

__all__ = ["triton_failed"]

_TRITON_BROKEN: list[str] = []  # the first failure's message, once Triton failed to compile or run here


def triton_failed(e: BaseException, where: str) -> None:
    """Record a Triton failure at ``where`` (compile, forward or backward launch) and warn, once per process."""
    if _TRITON_BROKEN:
        return
    _TRITON_BROKEN.append(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    warnings.warn(f"Triton LIF kernel failed ({_TRITON_BROKEN[0]}); using the fused PyTorch LIF instead for the rest "
                  "of this process (the same fp32-membrane arithmetic, so the same spikes; slower)",
                  RuntimeWarning, stacklevel=3)
