"""Recorded runs: run folders read into rows, tables written, the runs of a study trained, resumed or reused (one
folder per variant and seed), and :data:`STUDIES`, the one registry of studies (variants and seeds per preset).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .atomic import atomic_write_text
from .checkpoint import METRICS_FILE, read_metrics
from .paths import TIME_FORMAT, output_root
from .train import RUN_FREE_FIELDS, TrainConfig, config_diff, make_config, train


# tables: a run folder holds config.json, metrics.jsonl (one JSON object per epoch) and optionally run.json

#: :func:`dta_lib.studies.train_test_gaps`'s cache of a run's clean training accuracy (committed; checkpoints are not)
CLEAN_TRAIN_FILE = "clean_train.json"

#: how tables name ``final_train_acc``: the last epoch's running accuracy on augmented, MixUp/CutMix batches, not the
#: final weights' training accuracy, so never subtracted from the test accuracy as a gap
AUGMENTED_TRAIN_LABEL = "train acc (augmented, running)"


def load_run(path: str | os.PathLike) -> dict:
    """One run folder -> a flat dict: its config, run metadata and summary metrics (``epochs``, ``best_test_acc``,
    ``final_test_acc``, ``final_train_acc``: :data:`AUGMENTED_TRAIN_LABEL`, ``final_train_loss``, ``train_seconds``,
    ``clean_train_acc``: ``last.pt``'s, from the run's :data:`CLEAN_TRAIN_FILE`, NaN without it, and
    ``train_test_gap``: clean train minus final test accuracy); nothing is evaluated here."""
    p, rows = Path(path), read_metrics(path)
    if not rows:
        raise ValueError(f"run {p}: metrics.jsonl is empty (the run recorded no epoch)")
    row: dict = {"run": str(p)}
    for name in ("config.json", "run.json"):
        f = p / name
        if f.is_file():  # nested dicts as dotted keys ("hardware.cpu"), lists as JSON text
            flat = pd.json_normalize(json.loads(f.read_text())).to_dict("records")[0]
            row.update({k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()})
    last = rows[-1]
    accs = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    clean = json.loads((p / CLEAN_TRAIN_FILE).read_text()) if (p / CLEAN_TRAIN_FILE).is_file() else {}
    row.update(
        epochs=len(rows),
        best_test_acc=max(accs) if accs else math.nan,
        final_test_acc=last.get("test_acc", math.nan),
        final_train_acc=last.get("train_acc", math.nan),
        final_train_loss=last.get("train_loss", math.nan),
        train_seconds=sum(r.get("seconds", 0.0) for r in rows),
        clean_train_acc=(float(clean["clean_train_acc"]) if clean.get("checkpoint") == "last.pt"
                         else math.nan),  # NaN without a cache of last.pt
    )
    row["train_test_gap"] = row["clean_train_acc"] - row["final_test_acc"]
    return row


def load_curves(runs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in long form (one row per run and epoch), with the run path."""
    frames = [pd.DataFrame(read_metrics(r)).assign(run=str(r)) for r in runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_table(df: pd.DataFrame, stem: str | os.PathLike, caption: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (markdown table, caption above) atomically."""
    csv, md = Path(stem).with_suffix(".csv"), Path(stem).with_suffix(".md")
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(md, (f"{caption}\n\n" if caption else "") + df.to_markdown(index=False) + "\n")
    return csv, md


# runner: a study is variants (TrainConfig overrides) x seeds, one folder each (:func:`run_dir`)

def variant_key(variant: dict[str, Any]) -> str:
    """A readable, filesystem-safe folder name for a variant: ``attention=dta,time_steps=4``."""
    return ",".join(f"{k}={variant[k]}" for k in sorted(variant)).replace("/", "_").replace(" ", "") or "default"


def run_dir(study: str, cfg: TrainConfig, variant: dict[str, Any], root: str | os.PathLike[str] | None = None) -> Path:
    """Where a run of ``study`` with ``cfg`` (from ``variant``) is recorded, under ``root`` (default: ``runs/`` of
    :func:`dta_lib.paths.output_root`, read per call)."""
    base = Path(root) if root is not None else output_root() / "runs"
    return base / cfg.preset / study / cfg.dataset / f"{variant_key(variant)}-s{cfg.seed}"


def is_finished(path: Path, cfg: TrainConfig, free: frozenset[str] = RUN_FREE_FIELDS) -> bool:
    """``path`` holds a completed run of ``cfg``: the same config up to the ``free`` fields, every epoch recorded."""
    try:
        saved = json.loads((path / "config.json").read_text())
        status = json.loads((path / "run.json").read_text()).get("status")
        epochs = len(read_metrics(path))
    except (OSError, ValueError):
        return False
    # progress bars, worker counts, devices and data folders do not identify a run (``free``)
    return not config_diff(saved, cfg, free) and status in ("finished", "completed", "done") and epochs == cfg.epochs


#: runs finished after this time (ISO; set by ``dta_lib.reproduce``) are reused even with ``reuse=False``
REUSE_SINCE_ENV = "DTA_REUSE_SINCE"
#: set by ``dta_lib.reproduce`` while rendering committed runs: an unrecorded run is an error, not hours of training
NO_TRAIN_ENV = "DTA_NO_TRAIN"


def _refuse_training(out: Path) -> None:
    if os.environ.get(NO_TRAIN_ENV, "").strip() not in ("", "0"):
        raise RuntimeError(
            f"{out} is not a finished recorded run of the requested configuration, and ${NO_TRAIN_ENV} forbids "
            "training it here (rendering from committed runs); `make reproduce PRESET=study` trains the study runs")


def _finished_since(path: Path) -> bool:
    try:  # unset: strptime("") raises ValueError
        since = datetime.strptime(os.environ.get(REUSE_SINCE_ENV, "").strip(), TIME_FORMAT)
        finished = json.loads((path / "run.json").read_text()).get("finished") or ""
        return datetime.strptime(finished, TIME_FORMAT) >= since
    except (OSError, ValueError, TypeError):
        return False


def _settle_swap(out: Path) -> tuple[Path, Path]:
    """Finish a replacement that a kill interrupted (see :func:`run_one`): ``<run>.retrain`` -> ``<run>``; returns
    the two names a replacement uses."""
    new, old = out.with_name(out.name + ".retrain"), out.with_name(out.name + ".replaced")
    if not out.exists() and new.is_dir() and old.is_dir():
        os.replace(new, out)
    if out.exists() and old.is_dir():
        shutil.rmtree(old)
    return new, old


def run_one(study: str, dataset: str, preset: str, variant: dict[str, Any], seed: int,
            root: str | os.PathLike[str] | None = None, reuse: bool = True,
            on_epoch: Callable[[pd.DataFrame], None] | None = None, **common: Any) -> dict[str, Any]:
    """Train, resume or reuse one run; returns :func:`load_run`'s row plus the variant's fields.

    Never deletes a run it could continue (docs/training.md, "Guarantees of a run folder"): ``last.pt`` is resumed (a
    different config is an error naming the fields); ``reuse=False`` retrains a finished run into ``<run>.retrain``
    and swaps it in once finished (runs finished since :data:`REUSE_SINCE_ENV` count as retrained).

    ``on_epoch(history)`` (a frame of the per-epoch records) is called after every finished epoch, once its files
    are written, and once more at the end (a reused run: that call only). The run trains in the caller's thread: a
    ``KeyboardInterrupt`` (a notebook's stop button, or raised by ``on_epoch``) stops it at once, keeps the last
    finished epoch, releases the lock, and the same call resumes it exactly.
    """
    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    out = run_dir(study, cfg, variant, root)
    new, old = _settle_swap(out)
    live = (lambda history: on_epoch(pd.DataFrame(history))) if on_epoch is not None else None
    if is_finished(out, cfg):
        if not (reuse or _finished_since(out)):
            _refuse_training(out)
            train(cfg, out=new, resume=new.is_dir() and any(new.iterdir()), on_epoch=live)
            os.replace(out, old)
            _settle_swap(out)  # <run>.retrain -> <run>, then <run>.replaced removed
    elif (out / METRICS_FILE).is_file() and not (out / "last.pt").is_file():
        try:
            read_metrics(out)
        except ValueError as e:  # a torn or corrupt line: name the file and the line, not the config
            raise ValueError(f"{str(e).split('; ')[0]}, and {out} has no last.pt to rebuild it from; move the folder "
                             "away to retrain the run") from None
        raise ValueError(
            f"{out} holds a recorded run that differs from the requested one (config or epochs) and has no last.pt "
            "to continue from; move it away to retrain it")
    else:
        _refuse_training(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        train(cfg, out=out, resume=(out / "last.pt").is_file() or (out / "config.json").is_file(), on_epoch=live)
    if on_epoch is not None:
        on_epoch(read_history(out))
    return {**load_run(out), "study": study, "variant": variant_key(variant), **variant}


def run_study(study: str, dataset: str, preset: str, variants: Sequence[dict[str, Any]], seeds: Iterable[int],
              root: str | os.PathLike[str] | None = None, reuse: bool = True, **common: Any) -> pd.DataFrame:
    """Every variant x seed (seeds inner), one row per run. ``common`` overrides go to every run."""
    return pd.DataFrame([run_one(study, dataset, preset, v, s, root=root, reuse=reuse, **common)
                         for v in variants for s in seeds])


def read_history(out: str | os.PathLike[str]) -> pd.DataFrame:
    """The per-epoch records of a run folder (empty frame while no epoch has finished)."""
    return pd.DataFrame(read_metrics(out) if (Path(out) / METRICS_FILE).is_file() else [])


# registry: the runs each notebook records per preset (:func:`dta_lib.studies.load_study_runs` checks a folder)

@dataclass(frozen=True)
class Study:
    """One study: its folder name, dataset, variants (config overrides), overrides common to every run, the notebook
    that renders it, and its seeds per preset (``"*"``: every other preset). ``variants_by_preset``: presets that
    run fewer variants (notebook 05 trains its no-attention baseline at the study presets only)."""

    name: str
    dataset: str
    variants: tuple[dict[str, Any], ...]
    seeds: dict[str, tuple[int, ...]]
    common: dict[str, Any] = field(default_factory=dict)
    notebook: str = ""
    variants_by_preset: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    #: False where runs stand in for others' (notebook 12's ``energy``): a missing run is then no error
    complete: bool = True

    def seeds_for(self, preset: str) -> list[int]:
        """The seeds this study runs at ``preset``."""
        return list(self.seeds.get(preset, self.seeds["*"]))

    def variants_for(self, preset: str) -> list[dict[str, Any]]:
        """The variants this study runs at ``preset``."""
        return [dict(v) for v in self.variants_by_preset.get(preset, self.variants)]

    def expected(self, preset: str) -> list[str]:
        """The run folder names (``<variant>-s<seed>``) this study records at ``preset``, variant-major."""
        return [f"{variant_key(v)}-s{s}" for v in self.variants_for(preset) for s in self.seeds_for(preset)]


_T4 = ({"attention": "dta", "time_steps": 4}, {"attention": "none", "time_steps": 4})

#: every study of the notebooks, by folder name
STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("train", "fashion-mnist", _T4, {"*": (0,)}, notebook="05_train",
          variants_by_preset={p: _T4[:1] for p in ("smoke", "cpu", "paper")}),
    Study("ablation", "fashion-mnist", tuple({"attention": a} for a in ("none", "txa", "tna", "dta")),
          {"smoke": (0, 1), "study": (0, 1, 2, 3, 4), "study-10k": (0, 1, 2, 3, 4), "*": (0, 1, 2)},
          notebook="06_ablation"),
    Study("time_steps", "fashion-mnist", tuple({"attention": "dta", "time_steps": t} for t in (2, 4, 6, 8)),
          {"smoke": (0,), "cpu": (0,), "*": (0, 1, 2)}, notebook="07_time_steps"),
    Study("dvs", "fashion-mnist-dvs", ({"attention": "none"}, {"attention": "dta"}),
          {"smoke": (0,), "cpu": (0, 1), "*": (0, 1, 2)}, {"time_steps": 10}, notebook="08_dvs"),
    Study("surrogate_width", "fashion-mnist", tuple({"surrogate_width": w} for w in (0.5, 1.0, 2.0)),
          {"smoke": (0,), "cpu": (0,), "*": (0, 1, 2)},
          {"attention": "dta", "time_steps": 4, "record_grad_norms": True}, notebook="09_surrogate_width"),
    Study("precision", "fashion-mnist", ({"precision": "fp32"}, {"precision": "bf16"}),
          {"smoke": (0, 1), "*": (0, 1, 2)}, notebook="11_performance"),
    Study("energy", "fashion-mnist", ({"attention": "none"}, {"attention": "dta"}), {"*": (0,)},
          notebook="12_spikes_and_energy", complete=False),
)}
