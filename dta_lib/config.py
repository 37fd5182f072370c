"""Stable import path: the implementation lives in :mod:`dta_lib.engine.config`."""
from __future__ import annotations

from .engine.config import *  # noqa: F401,F403
from .engine.config import __all__  # noqa: F401
