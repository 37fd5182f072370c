"""Spike and energy analysis: firing rates, synaptic operations, energy, attention maps.

:class:`SpikeRecorder` is a context manager that puts forward hooks on a model and records,
during ordinary forward passes,

- for every :class:`~dta_lib.snn.neuron.LIF`: firing rate = spikes / (neurons x time steps x samples),
  per time step and overall (:meth:`SpikeRecorder.firing_rates`);
- for every ``Conv1d/2d/3d`` and ``Linear``: its dense cost and the *actual* input it received.
  A layer whose input tensor holds only 0/1 values is *fed by spikes*: it performs
  accumulates only: one accumulate per (input spike, synapse it reaches). :func:`exact_sops` counts
  them exactly, convolving the spike map with all-ones weights of the layer's geometry, so taps on
  zero padding (which the dense FLOPs include) are not counted; the field's estimate
  ``rate_in x T x FLOPs`` (FLOPs = MACs of one time step's dense computation) is kept beside it
  as ``sops_rate_x_flops``. Any other layer performs real-valued ``MACs`` (the stem conv, the DTA
  block's convs and linears, the MS shortcut 1x1 conv on the membrane, the classifier on
  pooled spikes). Energy (45 nm, Horowitz 2014, the SNN field's convention)::

      E = E_MAC * MACs + E_AC * SOPs,   E_MAC = 4.6 pJ, E_AC = 0.9 pJ

  (:meth:`SpikeRecorder.energy_table`, one row per layer, :func:`energy_totals`).

:func:`attention_maps` returns the T-XA maps (``A_t``, ``A_c``), the T-NA maps (LTCA local,
GTCA global) and the DTA gate for a batch, per time step; :meth:`SpikeRecorder.raster` gives
spike rasters ``[T, N]`` of chosen neurons of a named LIF (plot with
:func:`dta_lib.viz.plot_spike_raster`). The assumptions are listed in ``docs/analysis.md``.

Modules: :mod:`.counting` (per-layer costs, energies), :mod:`.recorder` (:class:`SpikeRecorder`),
:mod:`.profile` (:func:`profile`, :func:`energy_totals`, :func:`attention_maps`).
"""
from __future__ import annotations

from .counting import *  # noqa: F403
from .counting import __all__ as _counting
from .profile import *  # noqa: F403
from .profile import __all__ as _profile
from .recorder import *  # noqa: F403
from .recorder import __all__ as _recorder

__all__ = [*_counting, *_recorder, *_profile]
