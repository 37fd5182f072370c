"""Stable import path: the implementation lives in :mod:`dta_lib.snn.surrogate`."""
from __future__ import annotations

from .snn.surrogate import *  # noqa: F401,F403
from .snn.surrogate import __all__  # noqa: F401
