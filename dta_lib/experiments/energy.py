"""The energy study (notebook 12): reuse or train a run, energy tables per model (paper convention
``E = E_MAC * MACs + E_AC * SOPs``, ``docs/analysis.md``), extrapolation to the paper's size and the cost of DTA."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..analysis import E_AC_PJ, E_MAC_PJ, energy_totals
from ..engine.config import (
    PROBE_FIELDS,
    RUN_FREE_FIELDS,
    TrainConfig,
    config_diff,
    make_config,
)
from .runner import run_dir, run_one

__all__ = [
    "find_trained_run",
    "trained_run",
    "energy_summary",
    "extrapolate_energy",
    "dta_cost",
    "runs_provenance",
    "firing_rates_by_model",
    "energy_per_layer",
]

def _same_maths(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    """Same run up to the fields that do not identify one (:data:`RUN_FREE_FIELDS`) and the probes."""
    return not config_diff(saved, cfg, RUN_FREE_FIELDS | PROBE_FIELDS)


def find_trained_run(
    dataset: str, preset: str, variant: dict[str, Any], seed: int, studies: Iterable[str] = ("ablation", "energy"),
    root: str | os.PathLike[str] | None = None, **common: Any,
) -> Path | None:
    """The first completed run recorded under ``studies`` (any variant folder) whose config equals
    ``make_config(dataset, preset, seed=seed, **common, **variant)`` (ignoring threads, progress
    bars and probes such as ``record_grad_norms``) and which still holds ``best.pt``; ``None`` if
    there is none. Nothing is written (safe on another notebook's runs)."""
    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    for study in studies:
        folder = run_dir(study, cfg, variant, root).parent
        for path in sorted(folder.glob("*/config.json")):
            path = path.parent
            try:
                saved = json.loads((path / "config.json").read_text())
                status = json.loads((path / "run.json").read_text()).get("status")
            except (OSError, ValueError):
                continue
            if status == "completed" and _same_maths(saved, cfg) and (path / "best.pt").is_file():
                return path
    return None


def trained_run(
    dataset: str, preset: str, variant: dict[str, Any], seed: int, reuse: bool = True,
    studies: Sequence[str] = ("ablation", "surrogate_width", "train"), own_study: str = "energy",
    root: str | os.PathLike[str] | None = None,
    **common: Any,
) -> tuple[dict[str, Any], str]:
    """A trained run with ``best.pt``: ``(row, source)``; ``source`` names the study the weights came from.

    An equal run of ``studies`` (notebook 06's ``ablation``, notebook 09's ``surrogate_width``:
    trained earlier in the same ``make reproduce``; notebook 05's ``train``, whose ``study`` preset
    runs are the full-data models) is always preferred when its checkpoint exists, in that order;
    ``reuse`` governs only ``own_study``'s runs. Otherwise (checkpoints are not committed, or
    ``reuse=False``) the run is trained under ``own_study`` through :func:`run_one`.
    """
    found = find_trained_run(dataset, preset, variant, seed, (*studies, *((own_study,) if reuse else ())), root,
                             **common)
    if found is not None:
        return _row(found, variant), found.parent.parent.name
    row = run_one(own_study, dataset, preset, variant, seed, root=root, reuse=False, **common)
    return row, own_study


def _row(path: Path, variant: dict[str, Any]) -> dict[str, Any]:
    from .runner import variant_key
    from .tables import load_run

    row = load_run(path)
    row.update({"study": path.parent.parent.name, "variant": variant_key(variant), **variant})
    return row


def energy_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and group (stem / DTA / backbone / head / total): MACs, SOPs and energy (µJ).

    ``tables`` maps a model label to its :meth:`~dta_lib.analysis.SpikeRecorder.energy_table`.
    """
    frames = []
    for label, table in tables.items():
        tot = energy_totals(table, by="group")
        tot = tot.rename_axis("group").reset_index()
        tot.insert(0, "model", label)
        frames.append(tot)
    out = pd.concat(frames, ignore_index=True)
    out["energy_mac_uj"] = out["energy_mac_pj"] * 1e-6
    out["energy_ac_uj"] = out["energy_ac_pj"] * 1e-6
    return out[["model", "group", "macs", "sops", "energy_mac_uj", "energy_ac_uj", "energy_uj"]]


def extrapolate_energy(full: pd.DataFrame, measured: pd.DataFrame, e_mac: float = E_MAC_PJ,
                       e_ac: float = E_AC_PJ) -> pd.DataFrame:
    """Energy table of a larger model of the same layout (``full``: an energy table whose dense
    counts are exact) with each spike-fed layer's input rate taken from ``measured`` (a trained
    model's energy table, matched by layer name).

    ``sops = input_rate(measured) * dense_macs(full)`` for layers fed by spikes in ``measured`` (the field's
    rate x FLOPs estimate: without the full model's spike maps the exact count of
    :func:`dta_lib.analysis.exact_sops` is not available);
    ``macs = dense_macs(full)`` for real-fed ones. An **extrapolation**: it assumes firing rates do
    not change with width, ``T``, input size or dataset. Raises ``ValueError`` when a layer of
    ``full`` has no counterpart in ``measured``.
    """
    m = measured.set_index("name")
    missing = sorted(set(full["name"]) - set(m.index))
    if missing:
        raise ValueError(f"layers {missing} of the full model are not in the measured table; same layout needed")
    out = full[["name", "type", "group", "steps", "flops", "dense_macs"]].copy()
    out["input"] = out["name"].map(m["input"])
    out["input_rate"] = out["name"].map(m["input_rate"])
    spike = out["input"] == "spike"
    out["macs"] = out["dense_macs"].where(~spike, 0.0)
    out["sops"] = (out["input_rate"] * out["dense_macs"]).where(spike, 0.0)
    out["energy_pj"] = e_mac * out["macs"] + e_ac * out["sops"]
    out.attrs.update(e_mac_pj=e_mac, e_ac_pj=e_ac, extrapolated=True)
    return out


def dta_cost(summary: pd.DataFrame, model: str) -> dict[str, float]:
    """What the DTA block of ``model`` costs next to the rest (rows of :func:`energy_summary`).

    Returns the DTA block's MACs and energy (µJ), the backbone's SOP energy, the total, and the
    DTA share of the total and its ratio to the backbone's SOP energy.
    """
    s = summary[summary["model"] == model].set_index("group")
    if s.empty:
        raise ValueError(f"model {model!r} not in the summary; models: {sorted(set(summary['model']))}")
    if "DTA" not in s.index:
        raise ValueError(f"model {model!r} has no DTA rows (groups: {list(s.index)})")
    dta_e = float(s.loc["DTA", "energy_uj"])
    bb_ac = float(s.loc["backbone", "energy_ac_uj"]) if "backbone" in s.index else math.nan
    total = float(s.loc["total", "energy_uj"])
    return {
        "dta_macs": float(s.loc["DTA", "macs"]), "dta_energy_uj": dta_e, "backbone_sop_energy_uj": bb_ac,
        "total_energy_uj": total, "dta_share_of_total": dta_e / total if total else math.nan,
        "dta_over_backbone_sops": dta_e / bb_ac if bb_ac else math.nan,
    }


def runs_provenance(rows: pd.DataFrame) -> dict[str, Any]:
    """Preset, dataset(s), seeds, hardware and summed wall time of the runs of a study table (captions)."""
    def col(name: str) -> list[Any]:
        return sorted({str(v) for v in rows[name].dropna()}) if name in rows.columns else []

    wall = rows["wall_seconds"].sum() if "wall_seconds" in rows.columns else rows["train_seconds"].sum()
    return {
        "preset": ", ".join(col("preset")), "dataset": ", ".join(col("dataset")),
        "seeds": ", ".join(col("seed")), "hardware": ", ".join(col("hardware.cpu")) or "unknown",
        "threads": ", ".join(col("config.threads") or col("threads")), "runs": len(rows),
        "wall_minutes": round(float(wall) / 60, 1),
    }



def _forward_order(first: Sequence[str], names: Iterable[str]) -> list[str]:
    order = list(dict.fromkeys(first))
    return order + [n for n in dict.fromkeys(names) if n not in order]


def firing_rates_by_model(recorders: dict[str, Any], reference: str = "DTA"
                          ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(rates, per_step, order)`` of several :class:`~dta_lib.analysis.SpikeRecorder` s keyed by model label:
    mean firing rate per LIF layer and per time step (long form, with a ``model`` column), and the layers in the
    forward order of ``reference``'s model (layers only the others have come last)."""
    if reference not in recorders:
        raise ValueError(f"reference model {reference!r} not among the recorders {sorted(recorders)}")
    rates = pd.concat([r.firing_rates().assign(model=label) for label, r in recorders.items()], ignore_index=True)
    per_step = pd.concat([r.firing_rates(long=True).assign(model=label) for label, r in recorders.items()],
                         ignore_index=True)
    return rates, per_step, _forward_order(recorders[reference].firing_rates()["name"], rates["name"])


def energy_per_layer(tables: dict[str, pd.DataFrame], reference: str = "DTA") -> tuple[pd.DataFrame, list[str]]:
    """Energy tables per model (``SpikeRecorder.energy_table``) in long form with ``model``, ``energy (nJ)`` and the
    ``kind`` of arithmetic (AC for spike-fed layers, MAC for real-fed ones), and the layers in forward order."""
    if reference not in tables:
        raise ValueError(f"reference model {reference!r} not among the tables {sorted(tables)}")
    per_layer = pd.concat([t.assign(model=label) for label, t in tables.items()], ignore_index=True)
    per_layer["energy (nJ)"] = per_layer["energy_pj"] / 1e3
    per_layer["kind"] = per_layer["input"].map({"spike": "AC (spike-fed)", "real": "MAC (real-fed)"}).fillna("mixed")
    return per_layer, _forward_order(tables[reference]["name"], per_layer["name"])
