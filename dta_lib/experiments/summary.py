"""Every run recorded under a preset's runs folder, summarised per study: mean +- std per variant, the paper's
gaps beside ours, wall time and provenance (what notebook 10 renders)."""
from __future__ import annotations

import json
import re
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .ablation import ablation_paired
from .paper import PAPER_ABLATION_GAP, PAPER_RESULTS
from .registry import STUDIES, Study
from .runner import variant_key
from .stats import exceeds_noise, format_mean_std, min_detectable_effect, t_interval
from .tables import AUGMENTED_TRAIN_LABEL, load_run

__all__ = [
    "load_study_runs",
    "study_summary",
    "paper_gaps",
    "paper_gaps_by_preset",
    "study_wall_seconds",
    "provenance",
    "describe_runs",
    "recorded_hardware",
    "sync_recorded",
]


def load_study_runs(preset_root: str | os.PathLike[str], preset: str | None = None,
                    registry: Mapping[str, Study] | None = None) -> pd.DataFrame:
    """Exactly the runs the study registry expects below ``reports/runs/<preset>/``: load_run's row plus ``study``
    and ``variant``.

    The layout is ``<preset_root>/<study>/<dataset>/<variant>-s<seed>/`` (:func:`dta_lib.experiments.run_dir`);
    ``preset`` defaults to the folder's name. A study folder that exists must hold every run that ``registry``
    (default :data:`~dta_lib.experiments.registry.STUDIES`) lists for that preset, finished (``run.json`` status ``completed``), and
    nothing else: a missing, incomplete, extra (a copy, a study or variant the registry does not know) or duplicated
    run raises ``ValueError`` naming each such folder and the fix, instead of averaging what happens to be there.
    Missing root folder: empty frame.
    """
    root = Path(preset_root)
    preset = preset or root.name
    studies = STUDIES if registry is None else registry
    rows, problems = [], []
    if not root.is_dir():
        return pd.DataFrame(rows)
    def visible(folder: Path) -> list[Path]:  # .ipynb_checkpoints and other hidden folders are not runs
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    for study_dir in visible(root):
        study = studies.get(study_dir.name)
        if study is None:
            problems.append(f"{study_dir}: not a study of the registry ({', '.join(sorted(studies))}); move it out")
            continue
        expected = study.expected(preset)
        for data_dir in visible(study_dir):
            fix = (f"python -m dta_lib.experiments.campaign {study.name} --preset {preset}"
                   if data_dir.name == study.dataset else
                   f"notebook {study.notebook} with PRESET={preset!r}, DATASET={data_dir.name!r}")
            found = {p.name for p in visible(data_dir)}
            problems += [f"{data_dir / name}: missing (the {study.name} study records {len(expected)} runs at preset "
                         f"{preset}); train it: {fix}" for name in expected if name not in found and study.complete]
            problems += [f"{data_dir / name}: not a run the {study.name} study records at preset {preset} (a copy, or "
                         f"another variant or seed); move it out" for name in sorted(found - set(expected))]
            for name in expected:
                run = data_dir / name
                if name not in found:
                    continue
                try:
                    status = json.loads((run / "run.json").read_text()).get("status")
                    row = load_run(run)
                except (OSError, ValueError) as e:
                    problems.append(f"{run}: unreadable ({' '.join(str(e).split())[:200]}); retrain it: {fix}")
                    continue
                if status != "completed":
                    problems.append(f"{run}: not finished (run.json status {status!r}); finish it: {fix}")
                    continue
                variant = name.rsplit("-s", 1)[0]
                ident = ({k: row.get(k) for k in sorted(study.variants[0])}, row.get("seed"))
                said = f"{variant_key(ident[0])}-s{ident[1]}"
                if said != name or row.get("preset") != preset or row.get("dataset") != data_dir.name:
                    problems.append(f"{run}: its config.json is {said} of preset {row.get('preset')!r} on "
                                    f"{row.get('dataset')!r}, not what its folder says; a copied or moved run: "
                                    f"retrain it: {fix}")
                    continue
                row["study"], row["variant"], row["run"] = study.name, variant, str(run.relative_to(root))
                rows.append(row)
    if problems:
        raise ValueError(f"{root} does not hold exactly the runs the registry expects at preset {preset} "
                         f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    return pd.DataFrame(rows)


#: config fields that may distinguish variants in a study (shown as group keys when they vary)
_KEYS = ("dataset", "attention", "time_steps", "surrogate_width", "surrogate", "width", "epochs", "subset", "precision")


def study_summary(runs: pd.DataFrame, study: str, metric: str = "best_test_acc") -> pd.DataFrame:
    """One row per (dataset, variant) of ``study``: the varying config fields, mean +- std of ``metric``,
    final test accuracy, the train/test gap and the last epoch's running train accuracy on augmented batches.

    The gap is the project's one definition (:func:`~dta_lib.experiments.load_run`): clean training accuracy of the
    final checkpoint minus final test accuracy. The column ``train_test_gap`` is there only when a run of the study
    has its clean training accuracy (``clean_train.json``); a variant where any run lacks it reads ``n/a``. The
    running accuracy on augmented, mixed batches is shown as :data:`~dta_lib.experiments.AUGMENTED_TRAIN_LABEL`,
    never as a gap."""
    sub = runs[runs["study"] == study]
    if sub.empty:
        raise ValueError(f"no runs of study {study!r}; have {sorted(set(runs.get('study', [])))}")
    keys = ["dataset"] + [k for k in _KEYS[1:] if k in sub.columns and sub[k].nunique(dropna=False) > 1]
    if len(keys) == 1 and "attention" in sub.columns:
        keys.append("attention")
    if "time_steps" not in keys:
        keys.append("time_steps")
    has_gap = "train_test_gap" in sub.columns and bool(sub["train_test_gap"].notna().any())
    rows = []
    for vals, g in sub.groupby(keys, sort=True, dropna=False):
        vals = vals if isinstance(vals, tuple) else (vals,)
        def ms(col: str, all_or_na: bool = False) -> str:
            if all_or_na and g[col].isna().any():  # a gap over some of the seeds is not the variant's gap
                return "n/a"
            return format_mean_std(g[col].mean(), g[col].std(ddof=1) if len(g) > 1 else math.nan)
        row = {**dict(zip(keys, vals)), "seeds": ",".join(str(s) for s in sorted(g["seed"])),
               f"{metric}_mean": round(float(g[metric].mean()), 2), metric: ms(metric),
               "final_test_acc": ms("final_test_acc")}
        if has_gap:
            row["train_test_gap"] = ms("train_test_gap", all_or_na=True)
        rows.append({**row, AUGMENTED_TRAIN_LABEL: ms("final_train_acc")})
    return pd.DataFrame(rows)


def _mean_by(sub: pd.DataFrame, col: str, value: Any, metric: str) -> tuple[float, float, int]:
    g = sub[sub[col] == value][metric]
    return float(g.mean()), float(g.std(ddof=1)) if len(g) > 1 else math.nan, len(g)


def paper_gaps(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """The paper's comparisons beside ours, for the studies present.

    - ablation: DTA - T-XA, DTA - T-NA, DTA - none (paper CIFAR10: 0.4-0.8 for T-XA / T-NA);
    - time_steps: accuracy at T=6 minus T=4 (paper CIFAR100: 81.16 - 79.94);
    - dvs: DTA - none at T=10 (paper CIFAR10-DVS: 81.3 - 80.4);
    - train: DTA - none, where notebook 05 trained both (the full-data study preset).
    Ours are mean +- std of per-seed paired differences with their 95 % t-interval (``ci95``) and the minimum
    detectable effect (80 % power); ``exceeds_noise`` as in :func:`ablation_paired` (``"n/a"`` with one seed);
    ``resolves the paper's gap``: whether that MDE is at most the paper's difference.
    """
    lo, hi = PAPER_ABLATION_GAP
    rows: list[dict[str, Any]] = []
    studies = set(runs["study"]) if "study" in runs.columns else set()
    if "ablation" in studies:
        abl = runs[runs["study"] == "ablation"]
        for ds, g in abl.groupby("dataset"):
            if "dta" not in set(g["attention"]):
                continue
            for _, r in ablation_paired(g, metric).iterrows():
                rows.append({"study": "ablation", "comparison": r["comparison"], "paper setting": "CIFAR10, T=6",
                             "paper (points)": r["paper CIFAR10 (points)"], "our setting": f"{ds}, T={int(g['time_steps'].iloc[0])}",
                             "ours (points)": r["ours (points)"], "n_pairs": r["n_pairs"],
                             "exceeds_noise": _na(r["exceeds_noise"]), "ours_mean": r["diff_mean"], "ours_std": r["diff_std"],
                             "paper_low": lo if r["attention"] in ("txa", "tna") else math.nan,
                             "paper_high": hi if r["attention"] in ("txa", "tna") else math.nan})
    p = PAPER_RESULTS.set_index(["dataset", "time_steps", "attention"])["paper_top1"]
    t_gap = p[("cifar100", 6, "dta")] - p[("cifar100", 4, "dta")]
    dvs_gap = p[("cifar10-dvs", 10, "dta")] - p[("cifar10-dvs", 10, "none")]
    # study, column, a, b (ours: a - b per seed), the paper's setting, its difference as text and as a number
    pairs = [("time_steps", "time_steps", 6, 4, "CIFAR100, DTA", f"{t_gap:.2f} (81.16 - 79.94)", t_gap),
             ("dvs", "attention", "dta", "none", "CIFAR10-DVS, T=10", f"{dvs_gap:.2f} (81.3 - 80.4)", dvs_gap),
             ("train", "attention", "dta", "none", "not reported", "not reported", math.nan)]  # notebook 05, study
    for study, col, a, b, setting, text, gap in pairs:
        for ds, g in runs[runs["study"] == study].groupby("dataset") if study in studies else ():
            if not {a, b} <= set(g[col]):
                continue
            d = (g[g[col] == a].set_index("seed")[metric] - g[g[col] == b].set_index("seed")[metric]).dropna()
            mean, std = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else math.nan
            rows.append({"study": study, "comparison": "T=6 - T=4" if col == "time_steps" else "DTA - none",
                         "paper setting": setting, "paper (points)": text,
                         "our setting": f"{ds}, DTA" if col == "time_steps" else f"{ds}, T={int(g['time_steps'].iloc[0])}",
                         "ours (points)": format_mean_std(mean, std), "n_pairs": len(d),
                         "exceeds_noise": _na(exceeds_noise(mean, std, len(d))), "ours_mean": mean, "ours_std": std,
                         "paper_low": gap, "paper_high": gap})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    ci = [t_interval(m, sd, int(n)) for m, sd, n in zip(out["ours_mean"], out["ours_std"], out["n_pairs"])]
    out["ci95 (points)"] = [f"[{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else "n/a (1 seed)" for lo, hi in ci]
    out["ci95_low"], out["ci95_high"] = [lo for lo, _ in ci], [hi for _, hi in ci]
    out["min_detectable_effect"] = [min_detectable_effect(sd, int(n)) for sd, n in zip(out["ours_std"], out["n_pairs"])]
    out["resolves the paper's gap"] = [_resolves(r) for r in out.itertuples()]
    return out


def _resolves(r: Any) -> str:
    """Can these seeds tell the paper's difference from zero? Only if the smallest effect they detect (80 % power,
    95 % level) is at most the paper's (its lower bound for a range)."""
    paper = min(abs(r.paper_low), abs(r.paper_high)) if math.isfinite(r.paper_low) else math.nan
    mde = r.min_detectable_effect
    if not math.isfinite(mde):
        return "no: one seed, no noise estimate"
    if not math.isfinite(paper):
        return f"no paper gap (MDE {mde:.2f})"
    return f"yes (MDE {mde:.2f} <= {paper:.2f})" if mde <= paper else f"no (MDE {mde:.2f} > {paper:.2f})"


def paper_gaps_by_preset(presets: Sequence[str], metric: str = "best_test_acc") -> pd.DataFrame:
    """:func:`paper_gaps` of the recorded runs of each preset (``reports/runs/<preset>/``, through the registry), one
    table with a ``preset`` column; presets without runs are left out."""
    from ..paths import recorded

    frames = []
    for preset in presets:
        runs = load_study_runs(recorded(f"runs/{preset}"), preset)
        gaps = paper_gaps(runs, metric) if not runs.empty else pd.DataFrame()
        if not gaps.empty:
            frames.append(gaps.assign(preset=preset))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _na(verdict: bool | None) -> bool | str:
    """A noise verdict for a report table: ``"n/a"`` where it cannot be computed (fewer than 2 seeds)."""
    return "n/a" if verdict is None else bool(verdict)


def study_wall_seconds(runs: pd.DataFrame) -> pd.Series:
    """Total training wall time (``run.json`` ``wall_seconds``, else summed epoch seconds) per study."""
    w = runs["wall_seconds"] if "wall_seconds" in runs.columns else runs["train_seconds"]
    return w.fillna(runs["train_seconds"]).groupby(runs["study"]).sum()


def provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study: preset, datasets, seeds, runs, hardware, threads, total wall time and git commit(s)."""
    def col(g: pd.DataFrame, name: str) -> str:
        if name not in g.columns:
            return "unknown"
        return "; ".join(sorted({str(v) for v in g[name].dropna()})) or "unknown"

    wall = study_wall_seconds(runs)
    rows = []
    for study, g in runs.groupby("study", sort=True):
        rows.append({"study": study, "preset": col(g, "preset"), "dataset": col(g, "dataset"),
                     "seeds": ",".join(str(s) for s in sorted(set(g["seed"]))), "runs": len(g),
                     "hardware": col(g, "hardware.cpu"), "torch threads": col(g, "hardware.torch_threads"),
                     "torch": col(g, "hardware.torch"), "wall time (min)": round(float(wall[study]) / 60, 1),
                     "git commit": ", ".join(c[:10] for c in col(g, "hardware.git_commit").split("; "))})
    return pd.DataFrame(rows)


def describe_runs(runs: pd.DataFrame) -> str:
    """One line of provenance for captions: preset, dataset, seeds, runs, hardware, threads, wall time, commit."""
    if runs.empty:
        raise ValueError("describe_runs: no runs")
    def one(col: str) -> str:
        return ", ".join(sorted({str(v) for v in runs[col].dropna()})) if col in runs.columns else "unknown"
    wall = runs["wall_seconds"].fillna(runs["train_seconds"]) if "wall_seconds" in runs.columns else runs["train_seconds"]
    commits = ", ".join(c[:10] for c in one("hardware.git_commit").split(", "))
    return (f"preset {one('preset')}; dataset {one('dataset')}; seeds {','.join(str(s) for s in sorted(set(runs['seed'])))}; "
            f"{len(runs)} run(s); hardware {one('hardware.cpu')} ({one('hardware.device')}, torch threads "
            f"{one('hardware.torch_threads')}); total training wall time {float(wall.sum()) / 60:.1f} min; git {commits}")


RECORDED_BLOCK = re.compile(r"<!-- recorded: (?P<pattern>\S+) -->(?P<text>.*?)<!-- /recorded -->", re.S)


def recorded_hardware(pattern: str, root: str | os.PathLike[str] = ".") -> str:
    """What the files matching ``pattern`` (relative to ``root``) recorded about their machine and precision, as
    one phrase for prose: a bench file's ``meta`` or each run's ``run.json``. README and docs carry these phrases in
    ``<!-- recorded: PATTERN -->...<!-- /recorded -->`` blocks that :func:`sync_recorded` regenerates and a test
    compares, so a hardware or precision line is never typed by hand."""
    files = sorted(Path(root).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no recorded file matches {pattern} under {root}")
    seen: dict[str, int] = {}
    for f in files:
        d = json.loads(f.read_text())
        if "meta" in d:  # a bench file
            m = d["meta"]
            what = (f"{m['cpu']} ({m['cpu_capability']} kernels), {m['cpu_count']} cores, {m['threads']} "
                    f"thread{'s' * (m['threads'] != 1)}, torch {m['torch'].split('+')[0]}")
        else:  # a run folder's run.json
            h = d["hardware"]
            kernels = f" ({h['cpu_capability']} kernels)" if "cpu_capability" in h else ""
            what = (f"{h['cpu']}{kernels}, {h['cpu_count']} cores, {h['torch_threads']} thread{'s' * (h['torch_threads'] != 1)}"
                    f" per run, {d.get('autocast_dtype') or 'fp32'}, torch {h['torch'].split('+')[0]}")
        seen[what] = seen.get(what, 0) + 1
    if len(files) == 1:
        return next(iter(seen))
    return "; ".join(f"{what} ({n} of {len(files)} runs)" if len(seen) > 1 else f"{what} (all {n} runs)"
                     for what, n in seen.items())


def sync_recorded(text: str, root: str | os.PathLike[str] = ".") -> str:
    """``text`` with every ``<!-- recorded: PATTERN -->`` block refilled from the files it names."""
    return RECORDED_BLOCK.sub(lambda m: f"<!-- recorded: {m['pattern']} -->{recorded_hardware(m['pattern'], root)}"
                              "<!-- /recorded -->", text)
