"""What one layer costs: dense FLOPs (MACs of one time step), exact synaptic operations of a spike-fed layer,
element-wise multiplications, and the 45 nm energies of the field's convention (Horowitz 2014)::

    E = E_MAC * MACs + E_AC * SOPs,   E_MAC = 4.6 pJ, E_AC = 0.9 pJ"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.attention import DTA, TNA, TXA

__all__ = [
    "E_MAC_PJ",
    "E_AC_PJ",
    "is_binary",
    "layer_flops",
    "exact_sops",
]

#: Energy of one 32-bit floating-point multiply-accumulate at 45 nm (pJ).
E_MAC_PJ = 4.6


#: Energy of one 32-bit floating-point accumulate (addition) at 45 nm (pJ).
E_AC_PJ = 0.9


_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


_KINDS = ("spike", "real")


_STATIC_STEM = ("per_step", "once")


_Hook = Callable[[nn.Module, tuple[Any, ...], Any], None]


def is_binary(x: Tensor) -> bool:
    """True when every element of ``x`` is exactly 0 or 1 (an all-zero tensor counts as binary)."""
    return bool(((x == 0) | (x == 1)).all())


def layer_flops(module: nn.Module, output: Tensor) -> int:
    """Dense MACs of one call of a conv/linear ``module`` that produced ``output``.

    Conv: ``out.numel() x C_in/groups x prod(kernel)`` (= ``C_in k k / groups x C_out x H_out x W_out``
    per row of the batch); Linear: ``out.numel() x in_features``. Biases are not counted.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    raise ValueError(f"layer_flops expects a Conv1d/2d/3d or Linear, got {type(module).__name__}")


def exact_sops(module: nn.Module, x: Tensor) -> float:
    """Accumulates a conv/linear ``module`` performs on the 0/1 input ``x``: one per spike and synapse it reaches.

    Conv: ``sum(conv(x, ones)) x C_out / groups`` with all-ones weights of shape ``[groups, C_in/groups, *kernel]``
    and the layer's stride, padding and dilation, i.e. every (output position, kernel tap) pair whose input is a
    spike; taps that fall on zero padding are not counted (the dense ``rate x FLOPs`` estimate counts them).
    Linear: ``sum(x) x out_features``.
    """
    if isinstance(module, nn.Linear):
        return float(x.sum(dtype=torch.float64)) * module.out_features
    if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise ValueError(f"exact_sops expects a Conv1d/2d/3d or Linear, got {type(module).__name__}")
    if module.padding_mode != "zeros":
        raise ValueError(f"exact_sops supports zero padding only, got padding_mode={module.padding_mode!r}")
    conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[type(module)]
    g = module.groups
    ones = torch.ones(g, module.in_channels // g, *module.kernel_size, dtype=torch.float64, device=x.device)
    hits = conv(x.to(torch.float64), ones, None, module.stride, module.padding, module.dilation, g)
    return float(hits.sum()) * (module.out_channels // g)


def _rows(module: nn.Module, x: Tensor) -> int:
    """Independent rows of one call: leading dims of a Linear input, the batch dim of a conv input."""
    if isinstance(module, nn.Linear):
        return x.numel() // module.in_features
    spatial = len(module.kernel_size)  # type: ignore[arg-type]
    return int(x.shape[0]) if x.dim() == spatial + 2 else 1


def _elementwise_mults(module: nn.Module, x: Tensor) -> int:
    """Real x real element-wise multiplications of one call of a DTA sub-block (outside its layers).

    T-XA: the cross product ``(X + a A_t)(X + b A_c)`` (``T C H W``) and the scalings ``a A_t``,
    ``b A_c`` (``2 T C``). T-NA: ``GTCA(E) * LTCA(E) * E`` (``2 D H W``, D = T C). DTA: the product
    of the two branches (``T C H W``, mode ``"dta"`` only); ``gate * spikes`` is a mask, not counted.
    Additions, pooling sums, sigmoid and GELU are not counted.
    """
    b, t, c, h, w = x.shape
    if isinstance(module, TXA):
        return b * (t * c * h * w + 2 * t * c)
    if isinstance(module, TNA):
        return b * 2 * t * c * h * w
    if isinstance(module, DTA):
        return b * t * c * h * w if module.mode == "dta" else 0
    raise ValueError(f"no element-wise count for {type(module).__name__}")


def _group(name: str) -> str:
    head = name.split(".", 1)[0]
    if head.startswith("stem"):
        return "stem"
    if head == "dta":
        return "DTA"
    if head.startswith("layer"):
        return "backbone"
    if head == "fc":
        return "head"
    return head
