"""Stable import path: the implementation lives in :mod:`dta_lib.engine.checkpoint`."""
from __future__ import annotations

from .engine.checkpoint import *  # noqa: F401,F403
from .engine.checkpoint import __all__  # noqa: F401
