"""Stable import path: the training engine lives in :mod:`dta_lib.engine`."""
from __future__ import annotations

from .engine import *  # noqa: F401,F403
from .engine import __all__  # noqa: F401
