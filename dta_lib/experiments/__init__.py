"""Studies over recorded training runs: one module per study, shared statistics, the paper's numbers, tables.

- :mod:`~dta_lib.experiments.registry`: every study's variants and seeds per preset, declared once;
- :mod:`~dta_lib.experiments.runner`: grids of runs with a stable folder layout, reuse, live curves;
- :mod:`~dta_lib.experiments.stats`: mean +- std, paired differences, t intervals, the noise rule;
- :mod:`~dta_lib.experiments.paper`: the paper's headline numbers and gaps, paper-vs-ours tables;
- :mod:`~dta_lib.experiments.tables`: read run folders into rows, write tables (CSV + markdown) atomically;
- one module per study: :mod:`.ablation` (06), :mod:`.time_steps` (07), :mod:`.dvs` (08),
  :mod:`.surrogate_width` (09), :mod:`.summary` (10), :mod:`.precision` (11), :mod:`.energy` (12).

Every name is re-exported here, so ``from dta_lib.experiments import run_study, summarize`` works.
"""
from __future__ import annotations

from .ablation import *  # noqa: F403
from .ablation import __all__ as _ablation
from .dvs import *  # noqa: F403
from .dvs import __all__ as _dvs
from .energy import *  # noqa: F403
from .energy import __all__ as _energy
from .paper import *  # noqa: F403
from .paper import __all__ as _paper
from .registry import *  # noqa: F403
from .registry import __all__ as _registry
from .precision import *  # noqa: F403
from .precision import __all__ as _precision
from .runner import *  # noqa: F403
from .runner import __all__ as _runner
from .stats import *  # noqa: F403
from .stats import __all__ as _stats
from .summary import *  # noqa: F403
from .summary import __all__ as _summary
from .surrogate_width import *  # noqa: F403
from .surrogate_width import __all__ as _surrogate_width
from .tables import *  # noqa: F403
from .tables import __all__ as _tables
from .time_steps import *  # noqa: F403
from .time_steps import __all__ as _time_steps

__all__ = [*_runner, *_stats, *_paper, *_tables, *_ablation, *_time_steps, *_dvs, *_surrogate_width, *_summary,
           *_precision, *_energy, *_registry]
