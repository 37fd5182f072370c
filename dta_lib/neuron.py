"""Stable import path: the implementation lives in :mod:`dta_lib.snn.neuron`."""
from __future__ import annotations

from .snn.neuron import *  # noqa: F401,F403
from .snn.neuron import __all__  # noqa: F401
