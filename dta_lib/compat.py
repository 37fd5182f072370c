"""Stable import path: the implementation lives in :mod:`dta_lib.models.compat`."""
from __future__ import annotations

from .models.compat import *  # noqa: F401,F403
from .models.compat import __all__  # noqa: F401
