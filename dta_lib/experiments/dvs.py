"""The DVS study (notebook 08): which event dataset a static dataset is paired with, and the overfitting
signature of the paper summary (train - test gap on the un-augmented training subset)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..engine.config import TrainConfig
from .paper import PAPER_RESULTS
from .stats import mean_std_table
from .tables import AUGMENTED_TRAIN_LABEL

__all__ = [
    "EVENT_COUNTERPART",
    "event_dataset",
    "cifar10_dvs_available",
    "clean_train_accuracy",
    "train_test_gaps",
    "OVERFIT_GAP",
    "dvs_table",
    "dvs_verdicts",
]

#: a clean train - test gap above this many points is the overfitting signature of the paper summary
OVERFIT_GAP = 10.0

#: static dataset -> the event dataset notebook 08 studies for it (``make reproduce`` injects DATASET)
EVENT_COUNTERPART = {
    "fashion-mnist": "fashion-mnist-dvs",
    "cifar10": "cifar10-dvs",
    "synthetic": "synthetic-dvs",
}


_EVENT = ("fashion-mnist-dvs", "cifar10-dvs", "cifar10-emulated-dvs", "synthetic-dvs")


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
    from ..data.registry import env_root

    base = Path(root).expanduser() if root is not None else env_root()
    if base is None:
        return False
    folder = base / "CIFAR10DVS"
    return folder.is_dir() and any(folder.glob("*/*.aedat4"))


def clean_train_accuracy(run: str | os.PathLike, checkpoint: str = "last.pt", batch_size: int | None = None) -> float:
    """Top-1 accuracy (percent) of ``run/<checkpoint>`` on the run's own training subset, without
    augmentation or MixUp/CutMix (``train_acc`` of ``metrics.jsonl`` is measured on augmented, mixed
    batches against the dominant label, which understates what the network fits).

    Evaluates with the training loop's test batch size (2x the training batch) by default.
    """
    from ..engine import build_data, evaluate_model, load_model

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
    ``train_test_gap`` (clean train minus final test accuracy, points: the project's one definition of the gap,
    the same as :func:`~dta_lib.experiments.load_run`'s column).

    The value is cached as ``clean_train.json`` in the run folder (written atomically), so a
    notebook re-rendered from committed runs, whose checkpoints are not committed, still has it
    (and :func:`~dta_lib.experiments.load_run` reads it, so notebook 10 shows the same gap);
    a run with neither gets NaN. :func:`dta_lib.experiments.run_one` deletes the folder before
    re-training, so a cached value never outlives its run.
    """
    from ..atomic import atomic_write_text
    from .tables import CLEAN_TRAIN_FILE, read_clean_train_acc

    values = []
    for run in runs["run"]:
        acc = read_clean_train_acc(run, checkpoint)
        if math.isnan(acc) and (Path(run) / checkpoint).is_file():
            acc = clean_train_accuracy(run, checkpoint)
            atomic_write_text(Path(run) / CLEAN_TRAIN_FILE,
                              json.dumps({"clean_train_acc": acc, "checkpoint": checkpoint}) + "\n")
        values.append(acc)
    out = runs.copy()
    out["clean_train_acc"] = values
    out["train_test_gap"] = out["clean_train_acc"] - out["final_test_acc"]
    return out


def dvs_table(runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per attention variant: accuracies and the clean train - test gap as mean +- std over seeds, the seed count,
    the paper's CIFAR10-DVS top-1 and whether the mean gap exceeds :data:`OVERFIT_GAP`.

    ``runs`` carries :func:`train_test_gaps`' ``clean_train_acc`` / ``train_test_gap`` columns; the last-epoch
    running accuracy on augmented batches is shown under :data:`~dta_lib.experiments.AUGMENTED_TRAIN_LABEL`, not as a gap.
    """
    table = mean_std_table(runs, "attention", {
        "best test acc. (%)": "best_test_acc", "final test acc. (%)": "final_test_acc",
        "clean train acc. (%)": "clean_train_acc", "train/test gap (points)": "train_test_gap",
        f"{AUGMENTED_TRAIN_LABEL} (%)": "final_train_acc",
    }, order=order if order is not None else list(dict.fromkeys(runs["attention"])))
    paper = PAPER_RESULTS[PAPER_RESULTS["dataset"] == "cifar10-dvs"].set_index("attention")["paper_top1"]
    table["paper CIFAR10-DVS top-1 (%)"] = paper.reindex(table.index)
    table[f"gap > {OVERFIT_GAP:g} points"] = runs.groupby("attention")["train_test_gap"].mean().gt(OVERFIT_GAP).reindex(
        table.index)
    return table.reset_index()


def dvs_verdicts(runs: pd.DataFrame, diffs: pd.DataFrame, order: Sequence[str] | None = None) -> list[str]:
    """The study's reading in sentences: DTA minus the baseline with the noise verdict (``diffs``:
    :func:`~dta_lib.experiments.stats.paired_verdicts` against ``dta``), the paper's full-scale gap, and each
    variant's clean train - test gap against :data:`OVERFIT_GAP`."""
    order = list(order) if order is not None else list(dict.fromkeys(runs["attention"]))
    m = runs.groupby("attention")[["best_test_acc", "train_test_gap"]].mean().reindex(order)
    paper = PAPER_RESULTS[PAPER_RESULTS["dataset"] == "cifar10-dvs"].set_index("attention")["paper_top1"]
    d = diffs.iloc[0]
    lines = [f"DTA minus baseline, best test accuracy: {d.diff_mean + 0.0:+.2f} points over {int(d.n_pairs)} seed "
             "pair(s)" + (f" (sd {d.diff_std:.2f})" if d.n_pairs > 1 else "") + "; "
             + ("exceeds seed noise." if d["exceeds seed noise"]
                else "does NOT exceed seed noise (or too few seeds to tell): not a win."),
             f"Paper, CIFAR10-DVS: {paper['dta'] - paper['none']:+.1f} points ({paper['dta']:g} vs {paper['none']:g}) "
             "at full scale."]
    for a, r in m.iterrows():
        if math.isnan(r.train_test_gap):
            lines.append(f"{a}: no train/test gap (no clean training accuracy: neither clean_train.json nor the "
                         "final checkpoint is in the run folder).")
            continue
        lines.append(f"{a}: train/test gap {r.train_test_gap:.1f} points -> "
                     + ("above" if r.train_test_gap > OVERFIT_GAP else "below")
                     + f" the summary's {OVERFIT_GAP:g}-point overfitting signature.")
    return lines
