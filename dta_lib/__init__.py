"""dta_lib: a tested, documented companion to "DTA: Dual Temporal-channel-wise Attention
for Spiking Neural Networks" (Kim, Kim, Yang, WACV 2025)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .models.attention import DTA, GTCA, LTCA, TNA, TXA
from .models.ms_resnet import MSResNet, ms_resnet18, ms_resnet34
from .snn.neuron import LIF
from .snn.surrogate import ATan, Sigmoid, Triangle, build_surrogate

try:
    __version__ = version("dta_lib")  # one version: pyproject.toml's, as installed
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
__all__ = [
    "LIF", "Triangle", "Sigmoid", "ATan", "build_surrogate",
    "TXA", "TNA", "LTCA", "GTCA", "DTA",
    "MSResNet", "ms_resnet18", "ms_resnet34",
]
