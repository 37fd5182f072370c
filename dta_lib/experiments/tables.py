"""Turn recorded runs into the paper-vs-ours tables (pandas) and write them atomically.

A *run* is a folder holding ``config.json`` (the training configuration), ``metrics.jsonl``
(one JSON object per epoch) and optionally ``run.json`` (hardware, versions, git commit,
wall time). :func:`load_runs` finds every run below a folder and returns one row per run.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..atomic import atomic_write_text
from ..engine.runfolder import read_metrics

__all__ = [
    "CLEAN_TRAIN_FILE",
    "AUGMENTED_TRAIN_LABEL",
    "read_clean_train_acc",
    "load_run",
    "load_runs",
    "load_curves",
    "write_table",
]


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


#: where :func:`dta_lib.experiments.train_test_gaps` caches a run's clean training accuracy (checkpoints are not
#: committed, this small file is)
CLEAN_TRAIN_FILE = "clean_train.json"

#: the name under which tables show ``final_train_acc``: the running accuracy of the last epoch on augmented,
#: MixUp/CutMix-mixed batches (against the dominant label). It is not the training accuracy of the final weights,
#: so it is never subtracted from the test accuracy and called a gap.
AUGMENTED_TRAIN_LABEL = "train acc (augmented, running)"


def read_clean_train_acc(run: str | os.PathLike, checkpoint: str = "last.pt") -> float:
    """The clean training accuracy of ``run/<checkpoint>`` cached in ``run/clean_train.json``; NaN when none is cached
    (or the cache is of another checkpoint)."""
    cache = Path(run) / CLEAN_TRAIN_FILE
    if not cache.is_file():
        return math.nan
    d = json.loads(cache.read_text())
    return float(d["clean_train_acc"]) if d.get("checkpoint", checkpoint) == checkpoint else math.nan


def load_run(path: str | os.PathLike) -> dict:
    """One run folder -> a flat dict: its config, run metadata and summary metrics.

    Summary: ``epochs``, ``best_test_acc``, ``final_test_acc``, ``final_train_acc`` (the last epoch's running
    accuracy on augmented, mixed batches: :data:`AUGMENTED_TRAIN_LABEL`), ``final_train_loss``, ``train_seconds``
    (sum of per-epoch seconds), ``clean_train_acc`` and ``train_test_gap``.

    The train/test gap has one definition in the project: the *clean* training accuracy (the final checkpoint
    ``last.pt`` in eval mode on the run's un-augmented training set, :func:`dta_lib.experiments.clean_train_accuracy`)
    minus the final test accuracy (the same checkpoint). ``load_run`` reads the clean accuracy from the run's
    ``clean_train.json`` cache and evaluates nothing; without the cache both columns are NaN (use
    :func:`dta_lib.experiments.train_test_gaps` to compute them from a checkpoint).
    """
    p = Path(path)
    metrics = p / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"not a run folder: {p} has no metrics.jsonl")
    rows = read_metrics(p)
    if not rows:
        raise ValueError(f"run {p}: metrics.jsonl is empty (the run recorded no epoch)")
    row: dict = {"run": str(p)}
    for name in ("config.json", "run.json"):
        f = p / name
        if f.is_file():
            row.update(_flatten(json.loads(f.read_text())))
    last = rows[-1]
    accs = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    row.update(
        epochs=len(rows),
        best_test_acc=max(accs) if accs else math.nan,
        final_test_acc=last.get("test_acc", math.nan),
        final_train_acc=last.get("train_acc", math.nan),
        final_train_loss=last.get("train_loss", math.nan),
        train_seconds=sum(r.get("seconds", 0.0) for r in rows),
    )
    row["clean_train_acc"] = read_clean_train_acc(p)
    row["train_test_gap"] = row["clean_train_acc"] - row["final_test_acc"]
    return row


def load_runs(root: str | os.PathLike, pattern: str = "**/metrics.jsonl") -> pd.DataFrame:
    """Every run below ``root`` (folders holding ``metrics.jsonl``), one row each, sorted by path."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no runs folder at {root}")
    rows = [load_run(m.parent) for m in sorted(root.glob(pattern))]
    return pd.DataFrame(rows)


def load_curves(runs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in long form (one row per run and epoch), with the run path."""
    frames = []
    for r in runs:
        df = pd.DataFrame(read_metrics(r))
        df["run"] = str(r)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_table(df: pd.DataFrame, stem: str | os.PathLike, caption: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (markdown table, caption above) atomically."""
    stem = Path(stem)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    atomic_write_text(csv, df.to_csv(index=False))
    body = df.to_markdown(index=False) if _has_tabulate() else df.to_string(index=False)
    atomic_write_text(md, (f"{caption}\n\n" if caption else "") + body + "\n")
    return csv, md


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
