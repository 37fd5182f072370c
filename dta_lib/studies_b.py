"""Helpers for the experiment notebooks 08 (DVS), 09 (surrogate width) and 12 (spikes and energy).

Small, typed functions over the run folders of :mod:`dta_lib.experiments` and the tables of
:mod:`dta_lib.analysis`, so the notebooks stay thin:

- :func:`event_dataset`, :func:`cifar10_dvs_available`: which event dataset a study runs on;
- :func:`clean_train_accuracy`: train accuracy of a checkpoint on its un-augmented, un-mixed
  training subset (the overfitting signature of the paper summary: train - test gap);
- :func:`grad_norm_curves`, :func:`gradient_ratio`: per-layer gradient norms over training
  (``metrics.jsonl`` ``grad_norms``) and the first-to-last-layer ratio (vanishing-gradient check);
- :func:`find_trained_run`, :func:`trained_run`: reuse a recorded run with its ``best.pt``
  (e.g. of study ``ablation``) or train one;
- :func:`energy_summary`, :func:`extrapolate_energy`, :func:`dta_cost`: energy tables per model
  (paper convention ``E = E_MAC * MACs + E_AC * SOPs``, ``docs/analysis.md``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader

from .analysis import E_AC_PJ, E_MAC_PJ, energy_totals
from .engine.config import TrainConfig, make_config
from .experiments import RUNS, run_dir, run_one

__all__ = [
    "EVENT_COUNTERPART",
    "event_dataset",
    "cifar10_dvs_available",
    "clean_train_accuracy",
    "grad_norm_curves",
    "gradient_ratio",
    "find_trained_run",
    "trained_run",
    "energy_summary",
    "extrapolate_energy",
    "dta_cost",
    "runs_provenance",
    "output_dirs",
    "layer_order",
    "train_test_gaps",
]

#: static dataset -> the event dataset notebook 08 studies for it (``make reproduce`` injects DATASET)
EVENT_COUNTERPART = {
    "fashion-mnist": "fashion-mnist-dvs",
    "cifar10": "cifar10-dvs",
    "synthetic": "synthetic-dvs",
}
_EVENT = ("fashion-mnist-dvs", "cifar10-dvs", "cifar10-emulated-dvs", "synthetic-dvs")
# config fields that do not change the maths of a run (as dta_lib.experiments treats them) + probes
_FREE = {"progress", "workers", "threads", "data_root", "download", "record_grad_norms", "record_firing_rates"}


def event_dataset(name: str) -> str:
    """The event dataset for ``name``: itself if it is one, else its DVS counterpart.

    >>> event_dataset("fashion-mnist"), event_dataset("cifar10-dvs")
    ('fashion-mnist-dvs', 'cifar10-dvs')
    """
    if name in _EVENT:
        return name
    if name in EVENT_COUNTERPART:
        return EVENT_COUNTERPART[name]
    raise ValueError(f"no event dataset for {name!r}; expected one of {sorted(set(_EVENT) | set(EVENT_COUNTERPART))}")


def cifar10_dvs_available(root: str | os.PathLike | None = None) -> bool:
    """True when real CIFAR10-DVS (``<root>/CIFAR10DVS/<class>/*.aedat4``) is found at ``root`` or
    ``$DTA_DATA_ROOT`` (the lookup of :func:`dta_lib.data.build_datasets`); nothing is read or created."""
    from .data.registry import env_root

    base = Path(root).expanduser() if root is not None else env_root()
    if base is None:
        return False
    folder = base / "CIFAR10DVS"
    return folder.is_dir() and any(folder.glob("*/*.aedat4"))


# ---------------------------------------------------------------------------- overfitting
def clean_train_accuracy(run: str | os.PathLike, checkpoint: str = "last.pt", batch_size: int | None = None) -> float:
    """Top-1 accuracy (percent) of ``run/<checkpoint>`` on the run's own training subset, without
    augmentation or MixUp/CutMix (``train_acc`` of ``metrics.jsonl`` is measured on augmented, mixed
    batches against the dominant label, which understates what the network fits).

    Evaluates with the training loop's test batch size (2x the training batch) by default.
    """
    from .engine import build_data, evaluate_model, load_model

    path = Path(run) / checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint {path}; train the run first (checkpoints are not committed)")
    model, state = load_model(path)
    cfg = TrainConfig.from_dict(state["config"]).replace(augment=False)
    train_ds, _, _ = build_data(cfg, train=True)
    assert train_ds is not None
    loader = DataLoader(train_ds, batch_size=batch_size or cfg.batch_size * 2, shuffle=False)
    return float(evaluate_model(model, loader, torch.device("cpu"))["test_acc"])


def train_test_gaps(runs: pd.DataFrame, checkpoint: str = "last.pt") -> pd.DataFrame:
    """``runs`` plus ``clean_train_acc`` (:func:`clean_train_accuracy` of the final epoch) and
    ``clean_gap`` (clean train minus final test accuracy, points).

    The value is cached as ``clean_train.json`` in the run folder (written atomically), so a
    notebook re-rendered from committed runs, whose checkpoints are not committed, still has it;
    a run with neither gets NaN. :func:`dta_lib.experiments.run_one` deletes the folder before
    re-training, so a cached value never outlives its run.
    """
    from .atomic import atomic_write_text

    values = []
    for run in runs["run"]:
        cache = Path(run) / "clean_train.json"
        if cache.is_file():
            values.append(float(json.loads(cache.read_text())["clean_train_acc"]))
        elif (Path(run) / checkpoint).is_file():
            acc = clean_train_accuracy(run, checkpoint)
            atomic_write_text(cache, json.dumps({"clean_train_acc": acc, "checkpoint": checkpoint}) + "\n")
            values.append(acc)
        else:
            values.append(math.nan)
    out = runs.copy()
    out["clean_train_acc"] = values
    out["clean_gap"] = out["clean_train_acc"] - out["final_test_acc"]
    return out


# ---------------------------------------------------------------------------- gradient norms
def grad_norm_curves(runs: pd.DataFrame, by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """Per-layer gradient norms over training, long form: ``*by, epoch, layer, grad_norm``.

    ``runs`` has a ``run`` column (run folders recorded with ``record_grad_norms=True``) and the
    ``by`` columns. Layers come in forward order (stem, dta, layer1.0 ... layer3.1, fc; see
    :func:`layer_order`), not the alphabetical order of ``metrics.jsonl``.
    """
    missing = [c for c in ("run", *by) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; expected 'run' and {list(by)}")
    rows = []
    for _, r in runs.iterrows():
        lines = (Path(r["run"]) / "metrics.jsonl").read_text().splitlines()
        for rec in (json.loads(x) for x in lines if x.strip()):
            norms = rec.get("grad_norms")
            if not norms:
                raise ValueError(f"run {r['run']} has no grad_norms at epoch {rec.get('epoch')}; "
                                 "train it with record_grad_norms=True")
            rows += [{**{c: r[c] for c in by}, "epoch": rec["epoch"], "layer": k, "grad_norm": norms[k]}
                     for k in layer_order(norms)]
    return pd.DataFrame(rows)


def layer_order(names: Iterable[str]) -> list[str]:
    """Layer-group names in forward order: ``stem``, ``dta``, ``layerS.B`` by stage and block, then the rest, ``fc`` last.

    >>> layer_order(["fc", "layer2.0", "stem", "layer1.1", "dta", "layer1.0"])
    ['stem', 'dta', 'layer1.0', 'layer1.1', 'layer2.0', 'fc']
    """
    def rank(name: str) -> tuple[int, int, int, str]:
        if name == "stem":
            return (0, 0, 0, name)
        if name == "dta":
            return (1, 0, 0, name)
        head, _, block = name.partition(".")
        if head.startswith("layer") and head[5:].isdigit():
            return (2, int(head[5:]), int(block) if block.isdigit() else 0, name)
        return (4, 0, 0, name) if name == "fc" else (3, 0, 0, name)

    return sorted(names, key=rank)


def gradient_ratio(curves: pd.DataFrame, first: str = "stem", last: str = "fc",
                   by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """``first``-layer over ``last``-layer gradient norm per run and epoch (columns ``*by, epoch, ratio``).

    A ratio far below 1 that falls over training is the vanishing-gradient signature: the loss
    signal reaching the first layer through the spiking layers (each multiplying by the surrogate
    derivative, paper Eq. 5) shrinks relative to the classifier's.
    """
    layers = set(curves["layer"])
    for name in (first, last):
        if name not in layers:
            raise ValueError(f"layer {name!r} not in the gradient norms; layers: {sorted(layers)}")
    wide = curves.pivot_table(index=[*by, "epoch"], columns="layer", values="grad_norm").reset_index()
    wide["ratio"] = wide[first] / wide[last]
    return wide[[*by, "epoch", first, last, "ratio"]]


# ---------------------------------------------------------------------------- trained models
def _same_maths(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    want = cfg.to_dict()
    return {k: v for k, v in saved.items() if k not in _FREE} == {k: v for k, v in want.items() if k not in _FREE}


def find_trained_run(
    dataset: str, preset: str, variant: dict[str, Any], seed: int, studies: Iterable[str] = ("ablation", "energy"),
    root: str | os.PathLike = RUNS, **common: Any,
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
    studies: Sequence[str] = ("ablation", "surrogate_width"), own_study: str = "energy", root: str | os.PathLike = RUNS,
    **common: Any,
) -> tuple[dict[str, Any], str]:
    """A trained run with ``best.pt``: ``(row, source)``; ``source`` names the study the weights came from.

    An equal run of ``studies`` (notebook 06's ``ablation``, notebook 09's ``surrogate_width``:
    trained earlier in the same ``make reproduce``) is always preferred when its checkpoint exists;
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
    from .experiments import variant_key
    from .report import load_run

    row = load_run(path)
    row.update({"study": path.parent.parent.name, "variant": variant_key(variant), **variant})
    return row


# ---------------------------------------------------------------------------- energy
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


def output_dirs(preset: str, root: str | os.PathLike = RUNS.parent) -> tuple[Path, Path]:
    """``(tables, figures)`` folders for a notebook run with ``preset``.

    ``cpu`` (the committed project results, read by notebook 10) writes to ``reports/tables`` and
    ``reports/figures``; any other preset to a ``<preset>/`` subfolder of each, so the CI-sized
    smoke executions never overwrite the committed results.
    """
    from .engine.config import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    tables, figures = Path(root) / "tables", Path(root) / "figures"
    if preset != "cpu":
        tables, figures = tables / preset, figures / preset
    return tables, figures
