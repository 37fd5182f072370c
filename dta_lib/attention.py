"""Stable import path: the implementation lives in :mod:`dta_lib.models.attention`."""
from __future__ import annotations

from .models.attention import *  # noqa: F401,F403
from .models.attention import __all__  # noqa: F401
