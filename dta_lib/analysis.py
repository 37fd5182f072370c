"""Spike and energy analysis: firing rates, synaptic operations, energy, attention maps (see ``docs/analysis.md``).

:class:`SpikeRecorder` hooks every LIF (firing rates per step) and every Conv/Linear: a layer whose input is all
0/1 is *fed by spikes* and performs accumulates (SOPs, counted exactly by :func:`exact_sops`; the field's estimate
``rate_in x T x FLOPs`` is kept beside it), any other performs real-valued MACs. Energy (45 nm, Horowitz 2014)::

    E = E_MAC * MACs + E_AC * SOPs,   E_MAC = 4.6 pJ, E_AC = 0.9 pJ
"""
from __future__ import annotations

import math
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.attention import DTA, TNA, TXA
from .models.ms_resnet import MSResNet
from .snn.neuron import LIF

#: Energy of one 32-bit floating-point multiply-accumulate at 45 nm (pJ).
E_MAC_PJ = 4.6
#: Energy of one 32-bit floating-point accumulate (addition) at 45 nm (pJ).
E_AC_PJ = 0.9

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_COUNTED = (*_CONVS, nn.Linear)
_RULES = {"spike": "input is 0/1 -> AC", "real": "input not 0/1 -> MAC"}  # the ``rule`` column per input kind


def is_binary(x: Tensor) -> bool:
    """True when every element of ``x`` is exactly 0 or 1 (an all-zero tensor counts as binary)."""
    return bool(((x == 0) | (x == 1)).all())


def layer_flops(module: nn.Module, output: Tensor) -> int:
    """Dense MACs of one call of a conv/linear ``module`` that produced ``output``, biases not counted: conv
    ``out.numel() x C_in/groups x prod(kernel)``, Linear ``out.numel() x in_features``."""
    if isinstance(module, _CONVS):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    raise ValueError(f"layer_flops expects a Conv1d/2d/3d or Linear, got {type(module).__name__}")


def exact_sops(module: nn.Module, x: Tensor) -> float:
    """Accumulates a conv/linear ``module`` performs on the 0/1 input ``x``, one per spike and synapse it reaches:
    conv ``sum(conv(x, ones)) x C_out / groups`` (all-ones weights ``[groups, C_in/groups, *kernel]``, the layer's
    stride, padding and dilation; taps on zero padding not counted), Linear ``sum(x) x out_features``."""
    if isinstance(module, nn.Linear):
        return float(x.sum(dtype=torch.float64)) * module.out_features
    if not isinstance(module, _CONVS):
        raise ValueError(f"exact_sops expects a Conv1d/2d/3d or Linear, got {type(module).__name__}")
    if module.padding_mode != "zeros":
        raise ValueError(f"exact_sops supports zero padding only, got padding_mode={module.padding_mode!r}")
    conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[type(module)]
    g = module.groups
    ones = torch.ones(g, module.in_channels // g, *module.kernel_size, dtype=torch.float64, device=x.device)
    hits = conv(x.to(torch.float64), ones, None, module.stride, module.padding, module.dilation, g)
    return float(hits.sum()) * (module.out_channels // g)


def _group(name: str) -> str:
    head = name.split(".", 1)[0]
    return "stem" if head.startswith("stem") else "backbone" if head.startswith("layer") else {
        "dta": "DTA", "fc": "head"}.get(head, head)


@dataclass
class _LayerStats:
    type: str
    rows: int = 0            # leading (batch x time) rows seen, summed over calls
    dense: float = 0.0       # dense MACs summed over calls (after the static-stem factor)
    macs: float = 0.0        # MACs of calls with real-valued input
    sops: float = 0.0        # accumulates of calls with 0/1 input (exact per-spike fan-out)
    sops_dense: float = 0.0  # the same, estimated as rate x dense FLOPs (counts zero-padding taps)
    ones: float = 0.0        # sum of 0/1 inputs
    numel: float = 0.0       # number of 0/1 input elements
    kinds: set[str] = field(default_factory=set)  # "spike" (0/1 input -> AC) and / or "real" (-> MAC)
    notes: set[str] = field(default_factory=set)


@dataclass
class _LIFStats:
    neurons: int
    time_steps: int
    counts: Tensor           # float64 [T]: spikes per time step, summed over samples and neurons
    samples: int = 0


class SpikeRecorder:
    """Record firing rates, SOPs and MACs of a model with forward hooks (``with SpikeRecorder(model) as rec:``).

    Counts are summed over every forward pass inside the ``with`` block and reported **per sample**. ``keep``:
    LIF names whose spikes are kept (:meth:`raster`); ``static_stem``: for an :class:`MSResNet` fed a static image,
    ``"per_step"`` (default, the field's convention) counts the stem conv ``T`` times, ``"once"`` once.
    """

    def __init__(self, model: nn.Module, keep: Iterable[str] = (), static_stem: str = "per_step") -> None:
        if static_stem not in ("per_step", "once"):
            raise ValueError(f"static_stem must be one of ('per_step', 'once'), got {static_stem!r}")
        self.model, self.static_stem = model, static_stem
        self._lif_names = [n for n, m in model.named_modules() if isinstance(m, LIF)]
        self.keep = tuple(keep)
        if missing := [n for n in self.keep if n not in self._lif_names]:
            raise ValueError(f"keep names {missing} are not LIF modules of the model; LIF modules: {self._lif_names}")
        self._handles: list[Any] = []
        self.samples, self._static_input = 0, False
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
                self._handles.append(m.register_forward_hook(partial(self._on_lif, name)))
            elif isinstance(m, _COUNTED):
                self._handles.append(m.register_forward_hook(partial(self._on_layer, name)))
            elif isinstance(m, (TXA, TNA, DTA)):
                self._handles.append(m.register_forward_hook(partial(self._on_elementwise, name)))
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

    def _on_lif(self, name: str, module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        s = out.detach()
        b, t = s.shape[:2]
        st = self._lif.setdefault(name, _LIFStats(math.prod(s.shape[2:]), t, torch.zeros(t, dtype=torch.float64)))
        if (st.time_steps, st.neurons) != (t, math.prod(s.shape[2:])):  # a rate needs the same neurons every call
            raise ValueError(f"LIF {name!r} got output {tuple(s.shape)}, expected [B, {st.time_steps}, ...] "
                             f"with {st.neurons} neurons per step as in earlier calls")
        st.counts += s.transpose(0, 1).reshape(t, -1).sum(1, dtype=torch.float64).cpu()
        st.samples += b
        if name in self._spikes:
            self._spikes[name].append(s.to("cpu", torch.bool))

    def _on_layer(self, name: str, module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        x = args[0].detach()
        st = self._layers.setdefault(name, _LayerStats(type(module).__name__))
        dense = float(layer_flops(module, out))
        # independent rows of one call: leading dims of a Linear input, the batch dim of a conv input
        rows = x.numel() // module.in_features if isinstance(module, nn.Linear) else (
            int(x.shape[0]) if x.dim() == len(module.kernel_size) + 2 else 1)
        repeat = 1  # how many times this call counts (the static stem: T times under "per_step")
        if self._static_input and module is self.model.stem_conv:
            per_step = self.static_stem == "per_step"
            repeat = self.model.time_steps if per_step else 1
            st.notes.add("static image: executed once per sample, counted T times (static_stem='per_step')" if per_step
                         else "static image: executed once per sample and counted once (static_stem='once')")
            dense, rows = dense * repeat, rows * repeat
        binary = is_binary(x)
        st.rows += rows
        st.dense += dense
        st.kinds.add("spike" if binary else "real")
        if binary:
            ones = float(x.sum(dtype=torch.float64))
            st.sops_dense += ones * dense / x.numel()
            st.sops += exact_sops(module, x) * repeat
            st.ones += ones
            st.numel += x.numel()
        else:
            st.macs += dense

    def _on_elementwise(self, name: str, module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        # real x real products outside the block's layers: T-XA (X + a A_t)(X + b A_c) and a A_t, b A_c; T-NA
        # GTCA * LTCA * E; DTA the product of its branches ("dta" only; gate * spikes is a mask). Additions,
        # pooling, sigmoid and GELU are not counted.
        b, t, c, h, w = args[0].shape
        if isinstance(module, TXA):
            n = b * (t * c * h * w + 2 * t * c)
        else:
            n = b * 2 * t * c * h * w if isinstance(module, TNA) else b * t * c * h * w if module.mode == "dta" else 0
        self._elementwise[name] += n

    def _check_samples(self) -> None:
        if self.samples == 0:
            raise ValueError("SpikeRecorder recorded no forward pass of the model; run model(x) inside the `with` block")

    def firing_rates(self, long: bool = False) -> pd.DataFrame:
        """Firing rate of every LIF that ran, in model order: ``name, neurons`` (per sample and step), ``time_steps``,
        ``spikes`` (per sample, all steps), ``rate`` (overall) and ``t1 .. tT`` (rate at each step); ``long=True``:
        one row per ``(name, t, rate)`` (``t`` from 1), for seaborn."""
        self._check_samples()
        rows = []
        for name in (n for n in self._lif_names if n in self._lif):
            st = self._lif[name]
            total, per_t = float(st.counts.sum()), (st.counts / (st.samples * st.neurons)).tolist()
            rows.append(dict(name=name, neurons=st.neurons, time_steps=st.time_steps, spikes=total / st.samples,
                             rate=total / (st.samples * st.neurons * st.time_steps),
                             **{f"t{i + 1}": r for i, r in enumerate(per_t)}))
        df = pd.DataFrame(rows)
        if long and not df.empty:
            df = df.filter(regex=r"^(name|t\d+)$").melt(id_vars="name", var_name="t", value_name="rate").dropna()
            df["t"] = df["t"].str[1:].astype(int)
        return df

    def energy_table(self, e_mac: float = E_MAC_PJ, e_ac: float = E_AC_PJ, elementwise: bool = False) -> pd.DataFrame:
        """One row per Conv/Linear layer that ran (model order), counts per sample (columns: ``docs/analysis.md``):
        ``name, type, group, input, rule, input_rate, steps, flops, dense_macs, macs, sops, sops_rate_x_flops``,
        ``energy_pj = e_mac x macs + e_ac x sops`` and ``note``. ``elementwise=True`` appends one row per
        T-XA / T-NA / DTA block with its real element-wise multiplications counted as MACs."""
        self._check_samples()
        n, rows = self.samples, []
        for name in (x for x, _ in self.model.named_modules() if x in self._layers):
            st = self._layers[name]
            kind = next(iter(st.kinds)) if len(st.kinds) == 1 else "mixed"
            rule = "; ".join(sorted(_RULES[k] for k in st.kinds))
            rows.append(dict(
                name=name, type=st.type, group=_group(name), input=kind, rule=rule,
                input_rate=st.ones / st.numel if st.numel else math.nan, steps=st.rows / n, flops=st.dense / st.rows,
                dense_macs=st.dense / n, macs=st.macs / n, sops=st.sops / n, sops_rate_x_flops=st.sops_dense / n,
                note="; ".join(sorted(st.notes)),
            ))
        if elementwise:
            for name in (x for x, _ in self.model.named_modules() if self._elementwise.get(x)):
                mults = self._elementwise[name] / n
                rows.append(dict(
                    name=f"{name} (element-wise)", type="elementwise", group=_group(name), input="real",
                    rule="element-wise real multiplications -> MAC", input_rate=math.nan, steps=math.nan,
                    flops=math.nan, dense_macs=mults, macs=mults, sops=0.0, sops_rate_x_flops=0.0,
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
        return torch.cat(self._spikes[name]).float()

    def raster(self, name: str, sample: int = 0, neurons: Sequence[int] | Tensor | None = None) -> Tensor:
        """Spike raster ``[T, N]`` of one sample of the kept LIF ``name``; ``neurons`` index the flattened per-step
        neuron axis (``C*H*W`` for a conv layer), default all."""
        r = self.spikes(name)[sample].flatten(1)
        if neurons is None:
            return r
        idx = torch.as_tensor(neurons, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= r.shape[1]):
            raise ValueError(f"neurons must index [0, {r.shape[1]}) of LIF {name!r}, got {idx.tolist()}")
        return r[:, idx]


def energy_totals(table: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Sum ``macs``, ``sops`` and energy of an :meth:`SpikeRecorder.energy_table`: one row ``total`` (or one row per
    value of column ``by``, plus ``total``) with ``macs, sops, energy_mac_pj, energy_ac_pj, energy_pj, energy_uj``."""
    t = table.assign(energy_mac_pj=table.attrs.get("e_mac_pj", E_MAC_PJ) * table["macs"],
                     energy_ac_pj=table.attrs.get("e_ac_pj", E_AC_PJ) * table["sops"])
    cols = ["macs", "sops", "energy_mac_pj", "energy_ac_pj", "energy_pj"]
    total = t[cols].sum().to_frame("total").T
    if by is not None:
        total = pd.concat([t.groupby(by, sort=False)[cols].sum(), total])
    total["energy_uj"] = total["energy_pj"] * 1e-6
    return total


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def profile(model: nn.Module, batches: Tensor | Iterable[Any], max_batches: int | None = None,
            **recorder: Any) -> SpikeRecorder:
    """Run ``model`` in eval mode without gradients (mode restored) over ``batches`` (a tensor, or an iterable of
    tensors or ``(x, y, ...)`` tuples) inside a :class:`SpikeRecorder` built with ``recorder`` keywords."""
    items = [batches] if isinstance(batches, Tensor) else batches
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with _eval(model), SpikeRecorder(model, **recorder) as rec:
        for b in islice(items, max_batches):
            model((b if isinstance(b, Tensor) else b[0]).to(device))
    return rec


def attention_maps(model: MSResNet, x: Tensor) -> dict[str, Tensor]:
    """The DTA block's maps for a batch ``x``, each on the CPU (eval mode, no gradients; the mode is restored).

    Keys (present when the branch exists): ``stem`` (X ``[B, T, C, H, W]``), ``spikes`` (``LIF(X)``),
    ``txa_temporal`` / ``txa_channel`` (``A_t`` / ``A_c`` ``[B, T, C]``), ``tna_local`` (``LTCA(E)``
    ``[B, T, C, H, W]``), ``tna_global`` (``GTCA(E)`` ``[B, T, C]``), ``gate`` (``sigmoid(T-NA(X) T-XA(X))``) and
    ``output`` (``gate * spikes``)."""
    if not isinstance(model, MSResNet) or model.dta is None or model.stem_lif is None:
        raise ValueError("attention_maps expects an MSResNet built with attention in {'txa', 'tna', 'dta'}")
    with _eval(model):
        y = model.stem(x)
        out = {"stem": y, "spikes": model.stem_lif(y)}
        if model.dta.txa is not None:
            out["txa_temporal"], out["txa_channel"] = model.dta.txa.maps(y)
        if model.dta.tna is not None:
            out["tna_local"], out["tna_global"] = model.dta.tna.maps(y)
        out["gate"] = model.dta.gate(y)
        out["output"] = out["gate"] * out["spikes"]
    return {k: v.detach().cpu() for k, v in out.items()}


#: maps that :func:`map_statistics` summarises, in this order (those present in the dict)
_MAP_KEYS = ("txa_temporal", "txa_channel", "tna_global", "tna_local", "gate")


def map_statistics(maps: dict[str, Tensor]) -> pd.DataFrame:
    """How far each attention map of :func:`attention_maps` is from a constant gate, one row per map: ``mean`` and
    ``std`` over all entries, ``std_over_t`` / ``std_over_c`` (spread of the map's mean per time step / channel) and
    ``near_half`` (fraction of entries within 0.05 of 0.5)."""
    rows = []
    for key in (k for k in _MAP_KEYS if k in maps):
        m = maps[key].float()
        tc = m.mean(dim=(3, 4)) if m.dim() == 5 else m  # [B, T, C]
        rows.append({
            "map": key, "mean": m.mean().item(), "std": m.std().item(),
            "std_over_t": tc.mean(dim=(0, 2)).std().item() if tc.shape[1] > 1 else 0.0,
            "std_over_c": tc.mean(dim=(0, 1)).std().item() if tc.shape[2] > 1 else 0.0,
            "near_half": ((m - 0.5).abs() < 0.05).float().mean().item(),
        })
    if not rows:
        raise ValueError(f"no attention map among the keys {sorted(maps)}; expected some of {list(_MAP_KEYS)}")
    return pd.DataFrame(rows)
