"""The DVS study (notebook 08): which event dataset a static dataset is paired with, and the overfitting
signature of the paper summary (train - test gap on the un-augmented training subset)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..engine.config import TrainConfig

__all__ = [
    "EVENT_COUNTERPART",
    "event_dataset",
    "cifar10_dvs_available",
    "clean_train_accuracy",
    "train_test_gaps",
]

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
    ``clean_gap`` (clean train minus final test accuracy, points).

    The value is cached as ``clean_train.json`` in the run folder (written atomically), so a
    notebook re-rendered from committed runs, whose checkpoints are not committed, still has it;
    a run with neither gets NaN. :func:`dta_lib.experiments.run_one` deletes the folder before
    re-training, so a cached value never outlives its run.
    """
    from ..atomic import atomic_write_text

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
