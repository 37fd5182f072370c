"""All plotting (matplotlib + seaborn); every function returns its Figure and :func:`save_figure` writes it.

- :mod:`~dta_lib.viz.core`: mechanism figures (LIF traces, surrogates, T-XA / T-NA maps, architecture) and
  :func:`save_figure`, the one way a figure is written;
- :mod:`~dta_lib.viz.diagrams`: block diagrams of the DTA block and the MS basic block, with tensor shapes;
- :mod:`~dta_lib.viz.events`: event frames of the emulator next to its image, real vs emulated recordings;
- :mod:`~dta_lib.viz.studies`: study figures (curves, ablation, time steps, report over recorded runs).
"""
from __future__ import annotations

from .core import *  # noqa: F403
from .core import __all__ as _core
from .diagrams import *  # noqa: F403
from .diagrams import __all__ as _diagrams
from .events import *  # noqa: F403
from .events import __all__ as _events
from .studies import *  # noqa: F403
from .studies import __all__ as _studies

__all__ = [*_core, *_diagrams, *_events, *_studies]
