"""Old path of :mod:`dta_lib.viz.diagrams` (block diagrams), kept importable."""
from __future__ import annotations

from .viz.diagrams import *  # noqa: F403
from .viz.diagrams import __all__  # noqa: F401
