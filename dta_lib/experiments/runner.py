"""Studies: grids of training runs with a stable folder layout, reused when already recorded.

A study is a list of variants (dicts of :class:`~dta_lib.engine.config.TrainConfig` overrides)
times a list of seeds. Each run lives in
``<root>/<preset>/<study>/<dataset>/<key>-s<seed>/`` where ``key`` names the variant
(e.g. ``attention=dta,time_steps=4``). With ``reuse=True`` a finished run whose
``config.json`` equals the requested config is read instead of re-trained, so notebooks
re-render instantly from committed runs; ``reuse=False`` trains afresh (what
``make reproduce`` does).
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from ..engine.config import TrainConfig, config_diff, make_config
from ..engine.runfolder import METRICS_FILE, read_metrics
from ..paths import output_root
from .tables import load_run

__all__ = [
    "runs_root",
    "variant_key",
    "run_dir",
    "REUSE_SINCE_ENV",
    "NO_TRAIN_ENV",
    "run_one",
    "run_study",
    "read_history",
    "live_run",
]

def runs_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where runs go: ``root`` when given, else ``runs/`` of :func:`dta_lib.paths.output_root` (read per call)."""
    return Path(root) if root is not None else output_root() / "runs"


def variant_key(variant: dict[str, Any]) -> str:
    """A readable, filesystem-safe folder name for a variant: ``attention=dta,time_steps=4``."""
    if not variant:
        return "default"
    parts = [f"{k}={variant[k]}" for k in sorted(variant)]
    return ",".join(parts).replace("/", "_").replace(" ", "")


def run_dir(study: str, cfg: TrainConfig, variant: dict[str, Any], root: str | os.PathLike[str] | None = None) -> Path:
    """Where a run of ``study`` with ``cfg`` (from ``variant``) is recorded."""
    return runs_root(root) / cfg.preset / study / cfg.dataset / f"{variant_key(variant)}-s{cfg.seed}"


def _finished(path: Path, cfg: TrainConfig) -> bool:
    try:
        saved = json.loads((path / "config.json").read_text())
        status = json.loads((path / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return False
    try:
        epochs = len(read_metrics(path))
    except (OSError, ValueError):
        return False
    # progress bars, worker counts, devices and data folders do not identify a run (RUN_FREE_FIELDS)
    return not config_diff(saved, cfg) and status in ("finished", "completed", "done") and epochs == cfg.epochs


#: ``$DTA_REUSE_SINCE`` (an ISO time, set by ``python -m dta_lib.reproduce``): runs finished after it are reused
#: even with ``reuse=False``, so an interrupted ``make reproduce`` continues where it stopped
REUSE_SINCE_ENV = "DTA_REUSE_SINCE"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
#: ``$DTA_NO_TRAIN`` (set by ``python -m dta_lib.reproduce`` while it renders the studies from their committed runs):
#: a run that is not recorded is an error instead of hours of training
NO_TRAIN_ENV = "DTA_NO_TRAIN"


def _refuse_training(out: Path) -> None:
    if os.environ.get(NO_TRAIN_ENV, "").strip() not in ("", "0"):
        raise RuntimeError(
            f"{out} is not a finished recorded run of the requested configuration, and ${NO_TRAIN_ENV} forbids "
            "training it here (rendering from committed runs); `make reproduce PRESET=study` trains the study runs"
        )


def _finished_since(path: Path) -> bool:
    since = os.environ.get(REUSE_SINCE_ENV, "").strip()
    if not since:
        return False
    try:
        finished = json.loads((path / "run.json").read_text()).get("finished") or ""
        return datetime.strptime(finished, _TIME_FORMAT) >= datetime.strptime(since, _TIME_FORMAT)
    except (OSError, ValueError, TypeError):
        return False


def _settle_swap(out: Path) -> None:
    """Finish a replacement that a kill interrupted (see :func:`run_one`): ``<run>.retrain`` -> ``<run>``."""
    new, old = out.with_name(out.name + ".retrain"), out.with_name(out.name + ".replaced")
    if not out.exists() and new.is_dir() and old.is_dir():
        os.replace(new, out)
    if out.exists() and old.is_dir():
        shutil.rmtree(old)


def run_one(
    study: str,
    dataset: str,
    preset: str,
    variant: dict[str, Any],
    seed: int,
    root: str | os.PathLike[str] | None = None,
    reuse: bool = True,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    **common: Any,
) -> dict[str, Any]:
    """Train, resume or reuse one run (``on_epoch``: the training loop's callback, see :func:`dta_lib.engine.train`); returns :func:`dta_lib.experiments.load_run`'s row plus the variant's fields.

    Never deletes a run it could continue: a folder with ``last.pt`` is resumed (``--resume`` semantics; a different
    config is an error naming the fields). ``reuse=True`` reads a finished run with the same config. With
    ``reuse=False`` a finished run is retrained into ``<run>.retrain`` (itself resumable) and only replaces the
    old folder once it has finished; runs finished since ``$DTA_REUSE_SINCE`` count as already retrained.
    """
    from ..engine import train

    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    out = run_dir(study, cfg, variant, root)
    _settle_swap(out)
    finished = _finished(out, cfg)
    if finished and (reuse or _finished_since(out)):
        pass
    elif finished:
        _refuse_training(out)
        new = out.with_name(out.name + ".retrain")
        train(cfg, out=new, resume=new.is_dir() and any(new.iterdir()), on_epoch=on_epoch)
        old = out.with_name(out.name + ".replaced")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old)
    elif (out / "metrics.jsonl").is_file() and not (out / "last.pt").is_file():
        try:
            read_metrics(out)
        except ValueError as e:  # a torn or corrupt line: name the file and the line, not the config
            raise ValueError(f"{str(e).split('; ')[0]}, and {out} has no last.pt to rebuild it from; move the folder "
                             "away to retrain the run") from None
        raise ValueError(
            f"{out} holds a recorded run that differs from the requested one (config or epochs) and has no last.pt "
            "to continue from; move it away to retrain it"
        )
    else:
        _refuse_training(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        train(cfg, out=out, resume=(out / "last.pt").is_file() or (out / "config.json").is_file(), on_epoch=on_epoch)
    row = load_run(out)
    row.update({"study": study, "variant": variant_key(variant), **variant})
    return row


def run_study(
    study: str,
    dataset: str,
    preset: str,
    variants: Sequence[dict[str, Any]],
    seeds: Iterable[int],
    root: str | os.PathLike[str] | None = None,
    reuse: bool = True,
    **common: Any,
) -> pd.DataFrame:
    """Every variant x seed (seeds inner), one row per run. ``common`` overrides go to every run."""
    rows = [
        run_one(study, dataset, preset, v, s, root=root, reuse=reuse, **common) for v in variants for s in seeds
    ]
    return pd.DataFrame(rows)


def read_history(out: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-epoch records of a run folder (empty frame while no epoch has finished)."""
    if not (Path(out) / METRICS_FILE).is_file():
        return pd.DataFrame()
    return pd.DataFrame(read_metrics(out))


def live_run(
    study: str,
    dataset: str,
    preset: str,
    variant: dict[str, Any],
    seed: int,
    on_epoch: Callable[[pd.DataFrame], None] | None = None,
    reuse: bool = True,
    root: str | os.PathLike[str] | None = None,
    **common: Any,
) -> dict[str, Any]:
    """:func:`dta_lib.experiments.run_one` with ``on_epoch(history)`` after every finished epoch.

    The run trains in the caller's thread; the training loop calls back once an epoch's files are written, and this
    calls once more at the end with the whole history (a reused run: that call only). Interrupting the caller
    (``KeyboardInterrupt``: the stop button of a notebook cell, or raised by ``on_epoch``) stops the training at
    once; the run folder keeps its last finished epoch, its lock is released, and the same call resumes it exactly.
    Returns ``run_one``'s row.
    """
    callback = (lambda history: on_epoch(pd.DataFrame(history))) if on_epoch is not None else None
    row = run_one(study, dataset, preset, variant, seed, root=root, reuse=reuse, on_epoch=callback, **common)
    if on_epoch is not None:
        on_epoch(read_history(row["run"]))
    return row
