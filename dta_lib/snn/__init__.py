"""The spiking layers, split as in spikingjelly: :mod:`.surrogate` (spike functions),
:mod:`.loop` (the reference LIF loop), :mod:`.kernels` (fused LIF kernels), :mod:`.functional`
(the backend table and ``lif_multistep``) and :mod:`.neuron` (the :class:`LIF` module)."""
from __future__ import annotations

from .functional import LIF_BACKENDS, lif_multistep
from .neuron import LIF
from .surrogate import SURROGATES, ATan, Sigmoid, Surrogate, Triangle, build_surrogate

__all__ = ["LIF", "lif_multistep", "LIF_BACKENDS",
           "Surrogate", "Triangle", "Sigmoid", "ATan", "build_surrogate", "SURROGATES"]
