"""Run the numbered notebooks headless with papermill (what ``make reproduce`` calls).

Executed copies go to ``reports/notebooks/<preset>/``; the notebooks in ``notebooks/``
keep their committed CI-sized outputs. Only the parameters a notebook declares in its
``parameters`` cell are injected.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .paths import output_root

ROOT = Path(__file__).resolve().parent.parent


def notebooks(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``notebooks/NN_*.ipynb`` in order, optionally filtered by number or name."""
    found = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return found
    chosen = [p for p in found if any(p.name.startswith(s) or p.stem == s for s in selection)]
    missing = [s for s in selection if not any(p.name.startswith(s) or p.stem == s for p in found)]
    if missing:
        raise SystemExit(f"no notebook matches {missing}; have {[p.name for p in found]}")
    return chosen


def refresh_committed(paths: list[Path]) -> int:
    """Execute each notebook with its defaults (nothing injected) and atomically replace it, metadata normalised."""
    import nbformat
    import papermill as pm

    from .nbsetup import normalize_notebook

    for nb in paths:
        t0 = time.perf_counter()
        tmp = nb.with_name(f".{nb.name}.partial")
        try:
            pm.execute_notebook(str(nb), str(tmp), cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
            executed = normalize_notebook(nbformat.read(str(tmp), as_version=4))
            nbformat.write(executed, str(tmp))
            tmp.replace(nb)
        finally:
            tmp.unlink(missing_ok=True)
        print(f"[refresh] {nb.name} in {time.perf_counter() - t0:.0f}s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import papermill as pm

    ap = argparse.ArgumentParser(prog="python -m dta_lib.reproduce", description=__doc__)
    ap.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "paper"], help="training preset (default cpu)")
    ap.add_argument("--dataset", default="fashion-mnist", help="dataset for the training notebooks")
    ap.add_argument("--notebooks", nargs="*", help="only these (number prefix like 05, or the file stem)")
    ap.add_argument("--reuse", action="store_true",
                    help="re-render from runs already recorded under reports/runs/ instead of re-training them")
    ap.add_argument("--out", default=None, help="output folder (default reports/notebooks/<preset>)")
    ap.add_argument("--refresh-committed", action="store_true",
                    help="maintainers: re-execute the notebooks in notebooks/ with their default parameters and "
                         "replace their committed outputs (what nbval checks); ignores --preset/--dataset/--reuse")
    args = ap.parse_args(argv)
    if args.refresh_committed:
        return refresh_committed(notebooks(args.notebooks))
    out = Path(args.out) if args.out else output_root() / "notebooks" / args.preset
    out.mkdir(parents=True, exist_ok=True)
    for nb in notebooks(args.notebooks):
        declared = pm.inspect_notebook(str(nb))
        params = {k: v for k, v in {"PRESET": args.preset, "DATASET": args.dataset, "REUSE": args.reuse}.items() if k in declared}
        t0 = time.perf_counter()
        print(f"[reproduce] {nb.name} {params}", flush=True)
        tmp = out / f".{nb.name}.partial"
        pm.execute_notebook(str(nb), str(tmp), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                            progress_bar=False)
        tmp.replace(out / nb.name)
        print(f"[reproduce] {nb.name} done in {time.perf_counter() - t0:.0f}s -> {out / nb.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
