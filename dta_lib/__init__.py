"""dta_lib: a tested, documented companion to "DTA: Dual Temporal-channel-wise Attention
for Spiking Neural Networks" (Kim, Kim, Yang, WACV 2025)."""
from __future__ import annotations

from .models import DTA, GTCA, LTCA, TNA, TXA, MSResNet, ms_resnet18, ms_resnet34
from .snn import LIF, ATan, Sigmoid, Triangle, build_surrogate

__version__ = "0.1.0"
__all__ = [
    "LIF", "Triangle", "Sigmoid", "ATan", "build_surrogate",
    "TXA", "TNA", "LTCA", "GTCA", "DTA",
    "MSResNet", "ms_resnet18", "ms_resnet34",
]
