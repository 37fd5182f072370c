"""Studies: grids of training runs with a stable folder layout, reused when already recorded.

A study is a list of variants (dicts of :class:`~dta_lib.config.TrainConfig` overrides)
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
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .config import TrainConfig, make_config
from .paths import output_root
from .report import load_run

__all__ = ["ROOT", "RUNS", "run_dir", "run_one", "run_study", "variant_key"]

ROOT = Path(__file__).resolve().parent.parent
#: default root of new runs: ``runs/`` of the output root (``$DTA_OUTPUT_DIR``, else the checkout's ``reports/``)
RUNS = output_root() / "runs"


def variant_key(variant: dict[str, Any]) -> str:
    """A readable, filesystem-safe folder name for a variant: ``attention=dta,time_steps=4``."""
    if not variant:
        return "default"
    parts = [f"{k}={variant[k]}" for k in sorted(variant)]
    return ",".join(parts).replace("/", "_").replace(" ", "")


def run_dir(study: str, cfg: TrainConfig, variant: dict[str, Any], root: str | os.PathLike = RUNS) -> Path:
    """Where a run of ``study`` with ``cfg`` (from ``variant``) is recorded."""
    return Path(root) / cfg.preset / study / cfg.dataset / f"{variant_key(variant)}-s{cfg.seed}"


def _finished(path: Path, cfg: TrainConfig) -> bool:
    try:
        saved = json.loads((path / "config.json").read_text())
        status = json.loads((path / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return False
    lines = (path / "metrics.jsonl").read_text().splitlines() if (path / "metrics.jsonl").is_file() else []
    # progress bars and worker counts do not change results
    ignore = {"progress", "workers", "threads", "data_root", "download"}
    same = {k: v for k, v in saved.items() if k not in ignore} == {
        k: v for k, v in cfg.to_dict().items() if k not in ignore
    }
    return same and status in ("finished", "completed", "done") and len([x for x in lines if x.strip()]) == cfg.epochs


def run_one(
    study: str,
    dataset: str,
    preset: str,
    variant: dict[str, Any],
    seed: int,
    root: str | os.PathLike = RUNS,
    reuse: bool = True,
    **common: Any,
) -> dict[str, Any]:
    """Train (or reuse) one run; returns :func:`dta_lib.report.load_run`'s row plus the variant's fields."""
    from .train import train

    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    out = run_dir(study, cfg, variant, root)
    if not (reuse and _finished(out, cfg)):
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        train(cfg, out=out)
    row = load_run(out)
    row.update({"study": study, "variant": variant_key(variant), **variant})
    return row


def run_study(
    study: str,
    dataset: str,
    preset: str,
    variants: Sequence[dict[str, Any]],
    seeds: Iterable[int],
    root: str | os.PathLike = RUNS,
    reuse: bool = True,
    **common: Any,
) -> pd.DataFrame:
    """Every variant x seed (seeds inner), one row per run. ``common`` overrides go to every run."""
    rows = [
        run_one(study, dataset, preset, v, s, root=root, reuse=reuse, **common) for v in variants for s in seeds
    ]
    return pd.DataFrame(rows)
