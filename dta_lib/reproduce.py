"""Run the numbered notebooks headless with papermill (what ``make reproduce`` calls).

Executed copies go to ``reports/notebooks/<preset>/``; the notebooks in ``notebooks/`` keep their committed
CI-sized outputs. Only the parameters a notebook declares in its ``parameters`` cell are injected.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .nbsetup import normalize_notebook, notebook_defaults
from .runs import NO_TRAIN_ENV, REUSE_SINCE_ENV
from .paths import CHECKOUT, now, output_root


def notebooks(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``notebooks/NN_*.ipynb`` in order, optionally filtered by number or name."""
    if CHECKOUT is None:
        raise SystemExit("dta_lib.reproduce runs the repository's notebooks: it needs dta_lib imported from a clone "
                         "of the repository (make setup), not an installed copy")
    found = sorted((CHECKOUT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    hit = lambda p, s: p.name.startswith(s) or p.stem == s  # noqa: E731
    if missing := [s for s in selection or [] if not any(hit(p, s) for p in found)]:
        raise SystemExit(f"no notebook matches {missing}; have {[p.name for p in found]}")
    return [p for p in found if not selection or any(hit(p, s) for s in selection)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dta_lib.reproduce", description=__doc__)
    ap.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "study", "paper"],
                    help="training preset (default cpu); study: the full-data and multi-seed studies (hours of CPU)")
    ap.add_argument("--dataset", default="fashion-mnist", help="dataset for the training notebooks")
    ap.add_argument("--notebooks", nargs="*", help="only these (number prefix like 05, or the file stem)")
    ap.add_argument("--reuse", action="store_true",
                    help="re-render from runs already recorded under reports/runs/ instead of re-training them")
    ap.add_argument("--out", default=None, help="output folder (default reports/notebooks/<preset>)")
    ap.add_argument("--download", action="store_true",
                    help="download missing datasets (needs internet), in the preflight before the first notebook")
    ap.add_argument("--refresh-committed", action="store_true",
                    help="maintainers: re-execute notebooks/ with their defaults, replacing the committed outputs "
                         "(what nbval checks); ignores --preset/--dataset/--reuse")
    ap.add_argument("--no-study-render", action="store_true",
                    help="with the cpu preset: skip rendering the study notebooks from their committed runs")
    args = ap.parse_args(argv)
    chosen = notebooks(args.notebooks)  # validated before anything is written
    if args.refresh_committed:  # each with its defaults (nothing injected), replaced atomically, metadata normalised
        for nb in chosen:
            _execute(nb, nb.parent, None)
        return 0
    if args.preset == "study" and (skipped := [p.name for p in chosen if p.name[:2] not in STUDY_PLAN]):
        chosen = [p for p in chosen if p.name[:2] in STUDY_PLAN]
        print(f"[reproduce] PRESET=study: not yet at this preset, skipped: {', '.join(skipped)}", flush=True)
    reports = output_root(fallback=CHECKOUT / "reports")
    out = Path(args.out) if args.out else reports / "notebooks" / args.preset
    t0 = time.perf_counter()
    try:
        for folder, what in ((reports, "the reports folder ($DTA_OUTPUT_DIR)"), (out, "--out")):
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{what} {folder} is a file; expected a folder (new or existing)")
        needed = preflight(args.preset, args.dataset, chosen, download=args.download)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[reproduce] preflight passed in {time.perf_counter() - t0:.0f} s; data found: "
          f"{', '.join(needed) or 'none needed'}" + (" (downloads allowed)" if args.download else ""), flush=True)
    os.environ["DTA_OUTPUT_DIR"] = str(reports)  # the notebooks' kernels inherit it: runs, tables, figures go there
    out.mkdir(parents=True, exist_ok=True)
    if args.preset == "study":
        print(STUDY_WARNING, flush=True)
    # this session, or the interrupted one with the same settings that it continues
    key = {"preset": args.preset, "dataset": args.dataset, "reuse": bool(args.reuse)}
    try:
        session = json.loads((out / SESSION_FILE).read_text())
    except (OSError, ValueError):
        session = {}
    if session and not session.get("completed") and session.get("key") == key:
        print(f"[reproduce] continuing the interrupted session started {session['started']}: runs finished since "
              "then are reused, unfinished ones resumed", flush=True)
    else:
        session = {"key": key, "started": now(), "completed": False}
        atomic_write_text(out / SESSION_FILE, json.dumps(session, indent=2) + "\n")
    os.environ[REUSE_SINCE_ENV] = session["started"]  # the notebooks' kernels inherit it (runs redone since: reused)
    common = {"DATASET": args.dataset, "DOWNLOAD": args.download}
    plan = [(nb, out, {**common, "PRESET": args.preset, "REUSE": args.reuse,
                       **(STUDY_PLAN[nb.name[:2]] if args.preset == "study" else {})}) for nb in chosen]
    study_out = Path(args.out).parent / "study" if args.out else reports / "notebooks" / "study"
    # the cpu preset also renders the studies from their committed runs (no training: $DTA_NO_TRAIN)
    study_plan = [(nb, study_out, {**common, "PRESET": "study", "REUSE": True, **STUDY_PLAN[nb.name[:2]]})
                  for nb in chosen if nb.name[:2] in STUDY_PLAN and args.preset == "cpu" and not args.no_study_render]
    total = len(plan) + len(study_plan)
    try:
        for i, (nb, folder, wanted) in enumerate(plan + study_plan, start=1):
            if i == len(plan) + 1:
                os.environ[NO_TRAIN_ENV] = "1"
                print("[reproduce] the study notebooks, rendered from their committed runs (no training) into "
                      f"{folder}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            print(f"[reproduce] {i}/{total} {nb.name} ({wanted['PRESET']} preset), "
                  f"{_clock(time.perf_counter() - t0)} elapsed", flush=True)
            try:
                _execute(nb, folder, wanted)
            except Exception as e:  # papermill's execution error (or a kernel that died): one line, and where to look
                what = (f"{e.ename}: {' '.join(str(e.evalue).split())[:300]}" if hasattr(e, "ename")
                        else f"{type(e).__name__}: {e}")
                print(f"error: {nb.name} failed: {what}\n       the executed copy with the traceback: "
                      f"{folder / _partial_name(nb)}", file=sys.stderr)
                return 1
    finally:
        os.environ.pop(NO_TRAIN_ENV, None)
    atomic_write_text(out / SESSION_FILE, json.dumps({**session, "completed": True}, indent=2) + "\n")
    print(f"[reproduce] done: {total} notebook(s) in {_clock(time.perf_counter() - t0)}; executed copies in {out}"
          + (f" and {study_out}" if study_plan else "") + f"; runs, tables and figures under {reports}", flush=True)
    return 0


SESSION_FILE = ".reproduce-session.json"


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _partial_name(nb: Path) -> str:
    return f".{nb.stem}.partial.ipynb"


def _execute(nb: Path, out: Path, wanted: dict[str, Any] | None) -> None:
    """Run notebook ``nb`` with the parameters of ``wanted`` that it declares into ``out``, atomically (``None``: its
    defaults, metadata normalised); a failure raises, leaving the traceback in ``out/.<name>.partial.ipynb``."""
    import nbformat
    import papermill as pm

    declared = notebook_defaults(nb)
    t0, tmp = time.perf_counter(), out / _partial_name(nb)
    # the kernel's start-up warning about TCP without encryption (a local kernel, for us) is noise: log errors only
    pm.execute_notebook(str(nb), str(tmp), parameters={k: v for k, v in (wanted or {}).items() if k in declared},
                        cwd=str(nb.parent), kernel_name="python3", progress_bar=False,
                        extra_arguments=["--IPKernelApp.log_level=ERROR"])
    if wanted is None:
        nbformat.write(normalize_notebook(nbformat.read(str(tmp), as_version=4)), str(tmp))
    tmp.replace(out / nb.name)
    print(f"[reproduce]    done in {time.perf_counter() - t0:.0f} s -> {out / nb.name}", flush=True)


#: ``make reproduce PRESET=study``: full-data ``study`` for the headline runs (05, 12), ``study-10k`` for the others
STUDY_PLAN: dict[str, dict[str, Any]] = {"05": {"PRESET": "study"}, "06": {"PRESET": "study-10k"},
                                         "07": {"PRESET": "study-10k"}, "08": {"PRESET": "study-10k"},
                                         "09": {"PRESET": "study-10k"}, "12": {"PRESET": "study"}}
STUDY_WARNING = (
    "[reproduce] PRESET=study trains for hours on a CPU (measured on 2 cores: ~10-12 min per full-data epoch per "
    "one-thread process (8 epochs: 1.4-1.6 h per run), ~7-8 min per study-10k run; see docs/experiments.md). Runs are "
    "resumable: stop at any time and run the same command again to continue. `python -m dta_lib.campaign` trains the "
    "same runs in parallel worker processes first, which is faster on several cores."
)


def preflight(preset: str, dataset: str, chosen: list[Path], download: bool = False) -> list[str]:
    """Before any notebook runs: every dataset the chosen notebooks need is found (``download``: fetched) and the
    paper preset has a CUDA GPU; else ``ValueError``, one line per problem naming the fix. Returns the datasets: a
    notebook declaring ``DATASET`` needs ``dataset`` (if its default is an event set: the event counterpart, an
    emulated one by its static source), one declaring only ``DOWNLOAD`` Fashion-MNIST, the others none."""
    from .data.datasets import EMULATION_SOURCE, build_datasets
    from .data.registry import dataset_info
    from .studies import event_dataset

    dataset_info(dataset)  # an unknown name: ValueError listing the valid ones
    needed: dict[str, None] = {}  # in order, once each
    for declared in map(notebook_defaults, chosen):
        if "DATASET" in declared:
            name = event_dataset(dataset) if dataset_info(declared["DATASET"]).is_event else dataset
            needed[EMULATION_SOURCE.get(name, name)] = None
        elif "DOWNLOAD" in declared:
            needed["fashion-mnist"] = None
    if preset == "paper" and dataset.startswith("cifar"):
        needed["cifar10-dvs"] = None
    problems = []
    for name in needed:
        try:
            info = dataset_info(name)
            build_datasets(name, time_steps=info.default_time_steps if info.is_event else None, download=download,
                           train_transform=False)
        except FileNotFoundError as e:  # names where it looked and how to get the data
            problems.append(" ".join(str(e).split()))
        except (ValueError, OSError, RuntimeError, ImportError) as e:  # corrupt files, no network, no tonic
            problems.append(f"{name}: {type(e).__name__}: {' '.join(str(e).split())[:600]}")
    if preset == "paper":
        import torch

        if not torch.cuda.is_available():
            problems.append("PRESET=paper trains the paper's recipes (200-1000 epochs at full width): it needs a CUDA "
                            "GPU and none is visible; use PRESET=cpu here")
    if problems:
        raise ValueError("\n       ".join(problems))
    return list(needed)


if __name__ == "__main__":
    raise SystemExit(main())
