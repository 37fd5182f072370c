""":class:`SpikeRecorder`: forward hooks that record firing rates, spike rasters and the cost of every layer."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..models.attention import DTA, TNA, TXA
from ..models.ms_resnet import MSResNet
from ..snn.neuron import LIF
from .counting import (
    _COUNTED,
    _KINDS,
    _STATIC_STEM,
    E_AC_PJ,
    E_MAC_PJ,
    _elementwise_mults,
    _group,
    _Hook,
    _rows,
    exact_sops,
    is_binary,
    layer_flops,
)

__all__ = [
    "SpikeRecorder",
]


@dataclass
class _LayerStats:
    type: str
    calls: int = 0
    rows: int = 0            # leading (batch x time) rows seen, summed over calls
    dense: float = 0.0       # dense MACs summed over calls (after the static-stem factor)
    macs: float = 0.0        # MACs of calls with real-valued input
    sops: float = 0.0        # accumulates of calls with 0/1 input (exact per-spike fan-out)
    sops_dense: float = 0.0  # the same, estimated as rate x dense FLOPs (counts zero-padding taps)
    ones: float = 0.0        # sum of 0/1 inputs
    numel: float = 0.0       # number of 0/1 input elements
    kinds: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)


@dataclass
class _LIFStats:
    neurons: int
    time_steps: int
    counts: Tensor           # float64 [T]: spikes per time step, summed over samples and neurons
    samples: int = 0


class SpikeRecorder:
    """Record firing rates, SOPs and MACs of a model with forward hooks.

    >>> with SpikeRecorder(model) as rec:          # doctest: +SKIP
    ...     model(x)
    >>> rec.firing_rates(); rec.energy_table()     # doctest: +SKIP

    Counts are accumulated over every forward pass of ``model`` inside the ``with`` block and
    reported **per sample** (divided by the number of samples the model received; the batch
    size is read from dim 0 of the model's first positional input).

    Args:
        model: any module containing :class:`LIF` and/or Conv/Linear layers whose LIFs take
            ``[B, T, ...]``.
        keep: names of LIF modules whose output spikes are kept (for :meth:`raster`).
        kinds: per-layer override of the input-kind rule, ``{"fc": "spike"}``; values
            ``"spike"`` or ``"real"``.
        static_stem: for an :class:`MSResNet` fed a static image ``[B, C, H, W]``, the stem conv
            runs once per sample and is broadcast over time. ``"per_step"`` (default, the
            field's convention for direct encoding) counts it ``T`` times, ``"once"`` counts
            what this implementation executes.
    """

    def __init__(
        self,
        model: nn.Module,
        keep: Iterable[str] = (),
        kinds: Mapping[str, str] | None = None,
        static_stem: str = "per_step",
    ) -> None:
        if static_stem not in _STATIC_STEM:
            raise ValueError(f"static_stem must be one of {_STATIC_STEM}, got {static_stem!r}")
        self.model = model
        self.static_stem = static_stem
        modules = dict(model.named_modules())
        self._lif_names = [n for n, m in modules.items() if isinstance(m, LIF)]
        self._layer_names = [n for n, m in modules.items() if isinstance(m, _COUNTED)]
        self.keep = tuple(keep)
        missing = [n for n in self.keep if n not in self._lif_names]
        if missing:
            raise ValueError(f"keep names {missing} are not LIF modules of the model; LIF modules: {self._lif_names}")
        self.kinds = dict(kinds or {})
        bad = {k: v for k, v in self.kinds.items() if k not in self._layer_names or v not in _KINDS}
        if bad:
            raise ValueError(
                f"kinds overrides {bad} invalid: keys must be Conv/Linear layer names {self._layer_names}, "
                f"values one of {_KINDS}"
            )
        self._handles: list[RemovableHandle] = []
        self.reset()

    # ------------------------------------------------------------------ hooks
    def reset(self) -> None:
        """Forget everything recorded so far (hooks stay in place)."""
        self.samples = 0
        self._static_input = False
        self._lif: dict[str, _LIFStats] = {}
        self._layers: dict[str, _LayerStats] = {}
        self._elementwise: dict[str, float] = defaultdict(float)
        self._spikes: dict[str, list[Tensor]] = {n: [] for n in self.keep}

    def __enter__(self) -> "SpikeRecorder":
        if self._handles:
            raise ValueError("SpikeRecorder is already active; leave the previous `with` block first")
        self._handles.append(self.model.register_forward_pre_hook(self._on_model))
        for name, m in self.model.named_modules():
            if isinstance(m, LIF):
                self._handles.append(m.register_forward_hook(self._lif_hook(name)))
            elif isinstance(m, _COUNTED):
                self._handles.append(m.register_forward_hook(self._layer_hook(name)))
            elif isinstance(m, (TXA, TNA, DTA)):
                self._handles.append(m.register_forward_hook(self._ew_hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _on_model(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = next((a for a in args if isinstance(a, Tensor)), None)
        if x is None or x.dim() == 0:
            raise ValueError("SpikeRecorder needs the model's first tensor argument to be batch-first [B, ...]")
        self.samples += int(x.shape[0])
        self._static_input = isinstance(module, MSResNet) and x.dim() == 4

    def _lif_hook(self, name: str) -> _Hook:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
            s = out.detach()
            b, t = s.shape[0], s.shape[1]
            st = self._lif.get(name)
            if st is None:
                st = self._lif[name] = _LIFStats(math.prod(s.shape[2:]), t, torch.zeros(t, dtype=torch.float64))
            elif st.time_steps != t or st.neurons != math.prod(s.shape[2:]):
                raise ValueError(
                    f"LIF {name!r} got output {tuple(s.shape)}, expected [B, {st.time_steps}, ...] "
                    f"with {st.neurons} neurons per step as in earlier calls"
                )
            st.counts += s.transpose(0, 1).reshape(t, -1).sum(1, dtype=torch.float64).cpu()
            st.samples += b
            if name in self._spikes:
                self._spikes[name].append(s.to("cpu", torch.bool))

        return hook

    def _layer_hook(self, name: str) -> _Hook:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
            x = args[0].detach()
            st = self._layers.setdefault(name, _LayerStats(type(module).__name__))
            dense = float(layer_flops(module, out))
            rows = _rows(module, x)
            repeat = 1  # how many times this call counts (the static stem: T times under "per_step")
            if self._static_input and isinstance(self.model, MSResNet) and module is self.model.stem_conv:
                if self.static_stem == "per_step":
                    repeat = self.model.time_steps
                    dense *= repeat
                    rows *= repeat
                    st.notes.add("static image: executed once per sample, counted T times (static_stem='per_step')")
                else:
                    st.notes.add("static image: executed once per sample and counted once (static_stem='once')")
            if name in self.kinds:
                kind, rule = self.kinds[name], f"override: {self.kinds[name]}"
            elif is_binary(x):
                kind, rule = "spike", "input is 0/1 -> AC"
            else:
                kind, rule = "real", "input not 0/1 -> MAC"
            st.calls += 1
            st.rows += rows
            st.dense += dense
            st.kinds.add(kind)
            st.rules.add(rule)
            if kind == "spike":
                ones = float(x.sum(dtype=torch.float64))
                st.sops_dense += ones * dense / x.numel()
                st.sops += exact_sops(module, x) * repeat if is_binary(x) else ones * dense / x.numel()
                st.ones += ones
                st.numel += x.numel()
            else:
                st.macs += dense

        return hook

    def _ew_hook(self, name: str) -> _Hook:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
            self._elementwise[name] += _elementwise_mults(module, args[0])

        return hook

    # ------------------------------------------------------------------ results
    def _check_samples(self) -> None:
        if self.samples == 0:
            raise ValueError("SpikeRecorder recorded no forward pass of the model; run model(x) inside the `with` block")

    def firing_rates(self, long: bool = False) -> pd.DataFrame:
        """Firing rate of every LIF that ran, in model order.

        Wide (default): ``name, neurons`` (per sample and step), ``time_steps``, ``spikes``
        (per sample, all steps), ``rate`` (overall) and ``t1 .. tT`` (rate at each step).
        ``long=True``: one row per ``(name, t, rate)`` (``t`` from 1), for seaborn.
        """
        self._check_samples()
        rows = []
        for name in self._lif_names:
            st = self._lif.get(name)
            if st is None:
                continue
            per_t = (st.counts / (st.samples * st.neurons)).tolist()
            row: dict[str, Any] = dict(
                name=name, neurons=st.neurons, time_steps=st.time_steps,
                spikes=float(st.counts.sum()) / st.samples,
                rate=float(st.counts.sum()) / (st.samples * st.neurons * st.time_steps),
            )
            row.update({f"t{i + 1}": r for i, r in enumerate(per_t)})
            rows.append(row)
        df = pd.DataFrame(rows)
        if long and not df.empty:
            steps = [c for c in df.columns if c.startswith("t") and c[1:].isdigit()]
            df = df[["name", *steps]].melt(id_vars="name", var_name="t", value_name="rate").dropna()
            df["t"] = df["t"].str[1:].astype(int)
        return df

    def energy_table(
        self, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, elementwise: bool = False
    ) -> pd.DataFrame:
        """One row per Conv/Linear layer that ran (model order), counts per sample.

        Columns: ``name, type, group`` (stem / DTA / backbone / head / first name part),
        ``input`` (``spike``, ``real`` or ``mixed`` over calls), ``rule`` (why), ``input_rate``
        (mean of the 0/1 input; NaN for real input), ``steps`` (rows per sample: T for
        time-folded layers), ``flops`` (dense MACs of one step), ``dense_macs = steps x flops``,
        ``macs`` (real-input calls), ``sops`` (0/1-input calls: exact accumulates, :func:`exact_sops`),
        ``sops_rate_x_flops`` (the field's estimate ``input_rate x steps x flops``, which also counts taps on
        zero padding), ``energy_pj = e_mac x macs + e_ac x sops`` and ``note``.
        ``elementwise=True`` appends one row per T-XA / T-NA / DTA block with its real
        element-wise multiplications (see :func:`_elementwise_mults`) counted as MACs.
        """
        self._check_samples()
        if not (e_mac >= 0 and e_ac >= 0):
            raise ValueError(f"energies must be >= 0 pJ, got e_mac={e_mac}, e_ac={e_ac}")
        n = self.samples
        rows = []
        for name in self._layer_names:
            st = self._layers.get(name)
            if st is None:
                continue
            kind = next(iter(st.kinds)) if len(st.kinds) == 1 else "mixed"
            steps = st.rows / n
            rows.append(dict(
                name=name, type=st.type, group=_group(name), input=kind, rule="; ".join(sorted(st.rules)),
                input_rate=st.ones / st.numel if st.numel else math.nan, steps=steps,
                flops=st.dense / st.rows, dense_macs=st.dense / n, macs=st.macs / n, sops=st.sops / n,
                sops_rate_x_flops=st.sops_dense / n, note="; ".join(sorted(st.notes)),
            ))
        if elementwise:
            for name in (n for n, _ in self.model.named_modules() if self._elementwise.get(n)):
                mults = self._elementwise[name]
                rows.append(dict(
                    name=f"{name} (element-wise)", type="elementwise", group=_group(name), input="real",
                    rule="element-wise real multiplications -> MAC", input_rate=math.nan, steps=math.nan,
                    flops=math.nan, dense_macs=mults / n, macs=mults / n, sops=0.0, sops_rate_x_flops=0.0,
                    note="additions, pooling, sigmoid/GELU and the spike mask not counted",
                ))
        df = pd.DataFrame(rows, columns=[
            "name", "type", "group", "input", "rule", "input_rate", "steps", "flops", "dense_macs", "macs", "sops",
            "sops_rate_x_flops", "note",
        ])
        df.insert(len(df.columns) - 1, "energy_pj", e_mac * df["macs"] + e_ac * df["sops"])
        df.attrs.update(e_mac_pj=e_mac, e_ac_pj=e_ac, samples=n, static_stem=self.static_stem)
        return df

    def spikes(self, name: str) -> Tensor:
        """Spikes of the kept LIF ``name``, all recorded batches concatenated: float ``[N, T, ...]``."""
        if name not in self._spikes:
            raise ValueError(f"LIF {name!r} was not kept; pass keep=[{name!r}] (kept: {list(self._spikes)})")
        if not self._spikes[name]:
            raise ValueError(f"LIF {name!r} recorded no spikes; run the model inside the `with` block")
        return torch.cat(self._spikes[name]).float()

    def raster(self, name: str, sample: int = 0, neurons: Sequence[int] | Tensor | None = None) -> Tensor:
        """Spike raster ``[T, N]`` of one sample of the kept LIF ``name``.

        ``neurons`` index the flattened per-step neuron axis (``C*H*W`` for a conv layer);
        default: all of them.
        """
        s = self.spikes(name)
        if not 0 <= sample < s.shape[0]:
            raise ValueError(f"sample must be in [0, {s.shape[0]}), got {sample}")
        r = s[sample].flatten(1)
        if neurons is None:
            return r
        idx = torch.as_tensor(neurons, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= r.shape[1]):
            raise ValueError(f"neurons must index [0, {r.shape[1]}) of LIF {name!r}, got {idx.tolist()}")
        return r[:, idx]
