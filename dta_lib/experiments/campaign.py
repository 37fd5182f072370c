"""Train a study's runs in parallel worker processes, resumably: ``python -m dta_lib.experiments.campaign``.

The notebooks train their runs one after another in the kernel. For the ``study`` presets (hours of CPU) this
module trains the same runs (same study names, variants and configs, so the notebooks then read them with
``REUSE=True``) in ``--workers`` processes of ``--threads`` threads each: on a 2-core CPU two one-thread
processes train ~1.25x more images per second than one two-thread process (measured: 99 img/s per one-thread
process vs 159 img/s for one two-thread process, width 1/8, T=4, batch 64, fp32, channels_last).

Every run goes through :func:`dta_lib.experiments.run_one`: a finished run is reused, a run with ``last.pt`` is
resumed, and a folder another process works on is skipped (its lock), so an interrupted campaign is continued
by starting it again. Jobs are ordered seed-major (every variant of seed 0, then of seed 1, ...) so that a
campaign stopped half-way leaves complete paired seeds.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Study", "STUDIES", "jobs", "run_jobs", "main"]


@dataclass(frozen=True)
class Study:
    """One study: its folder name, dataset, variants (config overrides) and overrides common to every run.

    The names, variants and common overrides are those of the notebook that renders it, so its ``run_study``
    call finds these runs.
    """

    name: str
    dataset: str
    variants: tuple[dict[str, Any], ...]
    common: dict[str, Any] = field(default_factory=dict)
    notebook: str = ""


#: the studies of notebooks 05-09 (their ``run_study`` / ``live_run`` calls)
STUDIES: dict[str, Study] = {
    "train": Study("train", "fashion-mnist", ({"attention": "dta", "time_steps": 4}, {"attention": "none", "time_steps": 4}),
                   notebook="05_train"),
    "ablation": Study("ablation", "fashion-mnist", tuple({"attention": a} for a in ("none", "txa", "tna", "dta")),
                      notebook="06_ablation"),
    "time_steps": Study("time_steps", "fashion-mnist", tuple({"attention": "dta", "time_steps": t} for t in (2, 4, 6, 8)),
                        notebook="07_time_steps"),
    "dvs": Study("dvs", "fashion-mnist-dvs", ({"attention": "none"}, {"attention": "dta"}), {"time_steps": 10},
                 notebook="08_dvs"),
    "surrogate_width": Study("surrogate_width", "fashion-mnist", tuple({"surrogate_width": w} for w in (0.5, 1.0, 2.0)),
                             {"attention": "dta", "time_steps": 4, "record_grad_norms": True},
                             notebook="09_surrogate_width"),
}


def jobs(study: Study, seeds: Sequence[int]) -> list[tuple[dict[str, Any], int]]:
    """``(variant, seed)`` pairs, seed-major."""
    return [(v, s) for s in seeds for v in study.variants]


def _work(args: tuple[str, str, dict[str, Any], int, dict[str, Any]]) -> tuple[str, int, str]:
    from ..engine.runfolder import RunLockedError
    from .runner import run_one

    name, preset, variant, seed, common = args
    study = STUDIES[name]
    t0 = time.perf_counter()
    try:
        row = run_one(study.name, study.dataset, preset, variant, seed, reuse=True, **{**study.common, **common})
    except RunLockedError as e:  # another campaign works on this run
        return (f"{variant}", seed, f"skipped: {e}")
    return (f"{variant}", seed, f"best {row.get('best_test_acc')} in {time.perf_counter() - t0:.0f}s")


def run_jobs(name: str, preset: str, seeds: Sequence[int], workers: int = 1, threads: int = 1,
             **common: Any) -> list[tuple[str, int, str]]:
    """Train (or reuse, or resume) every run of study ``name`` at ``preset`` for ``seeds`` in ``workers`` processes."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; expected one of {sorted(STUDIES)}")
    if workers < 1 or threads < 1:
        raise ValueError(f"need workers >= 1 and threads >= 1, got workers={workers}, threads={threads}")
    todo = [(name, preset, v, s, {"threads": threads, "progress": False, **common}) for v, s in jobs(STUDIES[name], seeds)]
    out: list[tuple[str, int, str]] = []
    if workers == 1:
        for a in todo:
            out.append(_work(a))
            print(f"[{name}/{preset}] {out[-1][0]} seed {out[-1][1]}: {out[-1][2]}", flush=True)
        return out
    # spawn: a clean interpreter per worker (no forked OpenMP state)
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(_work, todo):
            out.append(r)
            print(f"[{name}/{preset}] {r[0]} seed {r[1]}: {r[2]}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from ..engine.config import PRESETS

    ap = argparse.ArgumentParser(prog="python -m dta_lib.experiments.campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="+", choices=sorted(STUDIES), help="studies to train, in this order")
    ap.add_argument("--preset", default="study-10k", choices=sorted(PRESETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    a = ap.parse_args(argv)
    for name in a.study:
        run_jobs(name, a.preset, a.seeds, a.workers, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
