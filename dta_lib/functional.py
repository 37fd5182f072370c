"""Stable import path: the implementation lives in :mod:`dta_lib.snn.functional`."""
from __future__ import annotations

from .snn.functional import *  # noqa: F401,F403
from .snn.functional import __all__  # noqa: F401
