"""Train a study's runs in parallel worker processes, resumably: ``python -m dta_lib.campaign``.

The notebooks' own runs (they then read them with ``REUSE=True``) in ``--workers`` processes of ``--threads`` threads:
two one-thread processes beat one two-thread process by ~1.25x on 2 cores (docs/training.md, "Presets"). Each run
goes through :func:`dta_lib.runs.run_one` (reused when finished, resumed from ``last.pt``, skipped while locked), so
a second start continues the campaign; jobs run seed-major, so a stopped campaign leaves complete paired seeds.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import sys
import time
from typing import Any, Sequence

from .runs import STUDIES, Study


def jobs(study: Study, preset: str, seeds: Sequence[int] | None = None) -> list[tuple[dict[str, Any], int]]:
    """``(variant, seed)`` pairs of ``study`` at ``preset``, seed-major; ``seeds`` default to the registry's."""
    return [(v, s) for s in (study.seeds_for(preset) if seeds is None else seeds) for v in study.variants_for(preset)]


def _work(args: tuple[str, str, dict[str, Any], int, dict[str, Any]]) -> tuple[str, int, str]:
    from .checkpoint import RunLockedError
    from .runs import run_one

    name, preset, variant, seed, common = args
    study, t0 = STUDIES[name], time.perf_counter()
    try:
        row = run_one(study.name, study.dataset, preset, variant, seed, reuse=True, **{**study.common, **common})
    except RunLockedError as e:  # another campaign works on this run
        return (str(variant), seed, f"skipped: {e}")
    return (str(variant), seed, f"best {row.get('best_test_acc')} in {time.perf_counter() - t0:.0f}s")


def run_jobs(name: str, preset: str, seeds: Sequence[int] | None = None, workers: int = 1, threads: int = 1,
             **common: Any) -> list[tuple[str, int, str]]:
    """Train (or reuse, or resume) every run of study ``name`` at ``preset`` for ``seeds`` (default: the registry's)
    in ``workers`` processes."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; expected one of {sorted(STUDIES)}")
    if workers < 1 or threads < 1:
        raise ValueError(f"need workers >= 1 and threads >= 1, got workers={workers}, threads={threads}")
    common = {"threads": threads, "progress": False, **common}
    todo = [(name, preset, v, s, common) for v, s in jobs(STUDIES[name], preset, seeds)]
    out: list[tuple[str, int, str]] = []
    # spawn: a clean interpreter per worker (no forked OpenMP state)
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) if workers > 1 else contextlib.nullcontext() as pool:
        for r in pool.imap_unordered(_work, todo) if pool else map(_work, todo):
            out.append(r)
            print(f"[{name}/{preset}] {r[0]} seed {r[1]}: {r[2]}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .train import PRESETS

    ap = argparse.ArgumentParser(prog="python -m dta_lib.campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="+", choices=sorted(STUDIES), help="studies to train, in this order")
    ap.add_argument("--preset", default="study-10k", choices=sorted(PRESETS))
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="default: the seeds the study records at --preset (dta_lib.runs)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    a = ap.parse_args(argv)
    try:
        for name in a.study:
            run_jobs(name, a.preset, a.seeds, a.workers, a.threads)
    except (ValueError, FileNotFoundError) as e:  # bad input, or a recorded run that cannot be continued
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
