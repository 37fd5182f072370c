"""One-call profiles of a model: the energy table of a batch, per-group totals, and the attention maps."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import pandas as pd
import torch
from torch import Tensor, nn

from ..models.ms_resnet import MSResNet
from .counting import E_AC_PJ, E_MAC_PJ
from .recorder import SpikeRecorder

__all__ = [
    "energy_totals",
    "profile",
    "attention_maps",
    "map_statistics",
]


def energy_totals(table: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Sum ``macs``, ``sops`` and energy of an :meth:`SpikeRecorder.energy_table`.

    Returns one row ``total`` (or one row per value of column ``by``, e.g. ``"group"``, plus
    ``total``) with ``macs, sops, energy_mac_pj, energy_ac_pj, energy_pj`` and ``energy_uj``.
    """
    need = {"macs", "sops", "energy_pj"}
    if not need <= set(table.columns):
        raise ValueError(f"expected an energy table with columns {sorted(need)}, got {list(table.columns)}")
    e_mac = table.attrs.get("e_mac_pj", E_MAC_PJ)
    e_ac = table.attrs.get("e_ac_pj", E_AC_PJ)
    t = table.assign(energy_mac_pj=e_mac * table["macs"], energy_ac_pj=e_ac * table["sops"])
    cols = ["macs", "sops", "energy_mac_pj", "energy_ac_pj", "energy_pj"]
    total = t[cols].sum().to_frame("total").T
    if by is not None:
        if by not in t.columns:
            raise ValueError(f"column {by!r} not in the table; columns: {list(t.columns)}")
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


def profile(
    model: nn.Module,
    batches: Tensor | Iterable[Any],
    max_batches: int | None = None,
    **recorder: Any,
) -> SpikeRecorder:
    """Run ``model`` in eval mode without gradients over ``batches`` inside a :class:`SpikeRecorder`.

    ``batches``: one input tensor, or an iterable of tensors or ``(x, y, ...)`` tuples (a
    DataLoader); ``max_batches`` stops early. Keyword arguments go to :class:`SpikeRecorder`.
    The model's train/eval mode is restored afterwards.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
    items = [batches] if isinstance(batches, Tensor) else batches
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with _eval(model), SpikeRecorder(model, **recorder) as rec:
        for i, b in enumerate(items):
            if max_batches is not None and i >= max_batches:
                break
            x = b if isinstance(b, Tensor) else b[0]
            model(x.to(device))
    return rec


def attention_maps(model: MSResNet, x: Tensor) -> dict[str, Tensor]:
    """The DTA block's maps for a batch ``x`` (an input of ``model``), each on the CPU.

    Keys (present when the branch exists): ``stem`` (X ``[B, T, C, H, W]``), ``spikes``
    (``LIF(X)``), ``txa_temporal`` (``A_t`` ``[B, T, C]``), ``txa_channel`` (``A_c``
    ``[B, T, C]``), ``tna_local`` (``LTCA(E)`` ``[B, T, C, H, W]``), ``tna_global``
    (``GTCA(E)`` ``[B, T, C]``), ``gate`` (``sigmoid(T-NA(X) T-XA(X))`` ``[B, T, C, H, W]``) and
    ``output`` (``gate * spikes``, DTA's output). Runs in eval mode without gradients
    (BatchNorm uses its running statistics and is not updated); the mode is restored.
    """
    if not isinstance(model, MSResNet) or model.dta is None or model.stem_lif is None:
        raise ValueError("attention_maps expects an MSResNet built with attention in {'txa', 'tna', 'dta'}")
    with _eval(model):
        y = model.stem(x)
        s = model.stem_lif(y)
        out = {"stem": y, "spikes": s}
        if model.dta.txa is not None:
            out["txa_temporal"], out["txa_channel"] = model.dta.txa.maps(y)
        if model.dta.tna is not None:
            out["tna_local"], out["tna_global"] = model.dta.tna.maps(y)
        out["gate"] = model.dta.gate(y)
        out["output"] = out["gate"] * s
    return {k: v.detach().cpu() for k, v in out.items()}


#: maps that :func:`map_statistics` summarises, in this order (those present in the dict)
_MAP_KEYS = ("txa_temporal", "txa_channel", "tna_global", "tna_local", "gate")


def map_statistics(maps: dict[str, Tensor]) -> pd.DataFrame:
    """How far each attention map of :func:`attention_maps` is from a constant gate, one row per map.

    Columns: ``mean`` and ``std`` over all entries; ``std_over_t`` and ``std_over_c``, the spread of the
    map's mean per time step ``t`` and per channel ``c`` (averaged over the batch, and over ``H, W``
    for the spatial maps): how much the map tells time steps or channels apart; ``near_half`` (the
    fraction of entries within 0.05 of 0.5, the value of a sigmoid whose input is ~0). Maps are
    ``[B, T, C]`` or ``[B, T, C, H, W]``.
    """
    rows = []
    for key in _MAP_KEYS:
        if key not in maps:
            continue
        m = maps[key].float()
        if m.dim() not in (3, 5):
            raise ValueError(f"map {key!r} has shape {tuple(m.shape)}; expected [B, T, C] or [B, T, C, H, W]")
        tc = m.mean(dim=(3, 4)) if m.dim() == 5 else m  # [B, T, C]
        rows.append({
            "map": key,
            "mean": m.mean().item(),
            "std": m.std().item(),
            "std_over_t": tc.mean(dim=(0, 2)).std().item() if tc.shape[1] > 1 else 0.0,
            "std_over_c": tc.mean(dim=(0, 1)).std().item() if tc.shape[2] > 1 else 0.0,
            "near_half": ((m - 0.5).abs() < 0.05).float().mean().item(),
        })
    if not rows:
        raise ValueError(f"no attention map among the keys {sorted(maps)}; expected some of {list(_MAP_KEYS)}")
    return pd.DataFrame(rows)
