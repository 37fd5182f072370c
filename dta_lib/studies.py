"""What the recorded runs say, study by study: statistics (mean +- std, paired differences, t-intervals, Bonferroni
corrections, minimum detectable effects), the paper's numbers, and the tables and verdicts of notebooks 06-12.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .analysis import E_AC_PJ, E_MAC_PJ, energy_totals, profile
from .atomic import atomic_write_text
from .checkpoint import read_metrics
from .data.registry import dataset_info, env_root
from .models.ms_resnet import ms_resnet18
from .models.params import count_parameters
from .runs import (AUGMENTED_TRAIN_LABEL, CLEAN_TRAIN_FILE, STUDIES, Study, is_finished, load_run, run_dir, run_one,
                   run_study, variant_key)
from .train import (PROBE_FIELDS, RUN_FREE_FIELDS, TrainConfig, build_data, evaluate_model, get_data_info, load_model,
                    make_config)


# ---- stats ---------------------------------------------------------------------------------------------------------
def t_critical(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value for the mean of ``n`` paired differences: 4.30 at n = 3, 2.78 at n = 5."""
    from scipy import stats  # on use: slow to import

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 paired differences, got n={n}")
    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def t_interval(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of a mean of ``n`` values with sample std ``std`` (NaN, NaN if n < 2)."""
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    half = t_critical(n, level) * std / math.sqrt(n)
    return mean - half, mean + half


def bonferroni_interval(mean: float, std: float, n: int, comparisons: int, level: float = 0.95) -> tuple[float, float]:
    """The t-interval of one of ``comparisons`` paired means at level ``1 - (1 - level) / comparisons``, so that all
    of them hold together with probability at least ``level`` (e.g. 3 pairs, 2 comparisons: ``t = 6.21``, not 4.30)."""
    if int(comparisons) != comparisons or comparisons < 1:
        raise ValueError(f"comparisons must be a positive whole number, got {comparisons!r}")
    return t_interval(mean, std, n, 1 - (1 - level) / int(comparisons))


def _excludes_zero(interval: tuple[float, float]) -> bool:
    return bool(interval[0] > 0 or interval[1] < 0)


def exceeds_noise(diff_mean: float, diff_std: float, n: int, level: float = 0.95) -> bool | None:
    """Whether the ``level`` t-interval of the mean paired difference excludes 0 (None below 2 pairs or NaN std)."""
    return None if n < 2 or not math.isfinite(diff_std) else _excludes_zero(t_interval(diff_mean, diff_std, n, level))


def min_detectable_effect(std: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """Smallest true mean paired difference that ``n`` seeds detect with probability ``power`` at ``level``
    (paired t test, two-sided): ``(t_{level} + t_{power}) x std / sqrt(n)`` with ``n - 1`` degrees of freedom."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return math.nan
    return (t_critical(n, level) + float(stats.t.ppf(power, n - 1))) * std / math.sqrt(n)


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"91.23 +- 0.45"`` (or ``"91.23"`` when std is undefined)."""
    return f"{mean:.{digits}f}" + ("" if std is None or not math.isfinite(std) else f" +- {std:.{digits}f}")


def _ms(values: pd.Series) -> str:
    return format_mean_std(values.mean(), values.std())


def _fmt_ci(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _check_columns(df: pd.DataFrame, need: Sequence[str], what: str) -> None:
    if missing := [c for c in need if c not in df.columns]:
        raise ValueError(f"{what}: the runs table lacks columns {missing}; expected run_study/load_run rows")


def mean_std_table(df: pd.DataFrame, by: str, columns: dict[str, str], order: Sequence[Any] | None = None,
                   seeds: str = "seed") -> pd.DataFrame:
    """Indexed by ``by`` (rows in ``order``, else ``groupby``'s): each ``columns`` entry (header -> column) as
    "mean +- std" over the rows, then the number of ``seeds``."""
    _check_columns(df, [by, seeds, *columns.values()], "mean_std_table")
    g = df.groupby(by, sort=order is None)
    table = pd.DataFrame({header: g[c].mean().combine(g[c].std(), format_mean_std) for header, c in columns.items()})
    table["seeds"] = g[seeds].count()
    return (table.reindex(list(order)) if order is not None else table).rename_axis(by)


def paired_comparison(df: pd.DataFrame, by: str, baseline: Any, metric: str = "best_test_acc",
                      label: Callable[[Any], str] | None = None, more: str | None = None, less: str | None = None,
                      pair_on: str = "seed") -> pd.DataFrame:
    """Per other value ``v`` of ``by`` (order of appearance), the differences ``d = baseline - v`` of ``metric`` over
    their common ``pair_on`` values (none: no row; no row at all: an empty frame), one row each: ``comparison``
    (``label(v)``), ``by``, ``vs``, ``diff_mean``, ``diff_std``, ``n_pairs``, ``std_error``, ``exceeds seed noise``
    (the 95 % t-interval ``ci95_low`` / ``_high`` excludes 0; None below 2 pairs), ``comparisons`` (m), the same
    at 1 - 0.05 / m (Bonferroni: ``ci95_bonferroni_*``, ``exceeds seed noise (Bonferroni)``), ``min_detectable_effect``
    (80 % power) and the ``verdict`` sentence (:func:`_verdict`)."""
    base, rows = df[df[by] == baseline].set_index(pair_on)[metric], []
    for v, sub in df[df[by] != baseline].groupby(by, sort=False):
        d = (base - sub.set_index(pair_on)[metric]).dropna()
        if len(d):  # no seed in common: nothing to compare, and no member of the family
            rows.append({"comparison": label(v) if label else f"{baseline} - {v} ({metric})", by: v, "vs": baseline,
                         "diff_mean": d.mean(), "diff_std": d.std(), "n_pairs": len(d)})
    m = len(rows)
    for r in rows:
        mean, sd, n = r["diff_mean"], r["diff_std"], r["n_pairs"]
        ci, bonf = t_interval(mean, sd, n), bonferroni_interval(mean, sd, n, m)
        plain = exceeds_noise(mean, sd, n)
        r.update({"exceeds seed noise": plain, "comparisons": m, "ci95_low": ci[0], "ci95_high": ci[1],
                  "ci95_bonferroni_low": bonf[0], "ci95_bonferroni_high": bonf[1],
                  "exceeds seed noise (Bonferroni)": None if plain is None else _excludes_zero(bonf),
                  "std_error": sd / math.sqrt(n),
                  "min_detectable_effect": min_detectable_effect(sd, n)})
        r["verdict"] = _verdict(r, more or f"{baseline} higher", less or f"{baseline} lower")
    return pd.DataFrame(rows)


def _verdict(r: Mapping[str, Any], more: str, less: str) -> str:
    """One sentence on a :func:`paired_comparison` row: mean difference, 95 % t-interval, and ``more`` (d > 0) or
    ``less`` if it excludes 0 (with m > 1 comparisons the Bonferroni interval too), else the MDE."""
    n, m = int(r["n_pairs"]), int(r["comparisons"])
    head = f"{r['comparison']}: {r['diff_mean'] + 0.0:+.2f} points (mean of {n} per-seed difference{'s' * (n != 1)}"
    if r["exceeds seed noise"] is None:
        return head + "); with fewer than 2 seeds seed noise cannot be estimated, so this says nothing."
    head += (f"; 95% t-interval {_fmt_ci((r['ci95_low'], r['ci95_high']))} (mean +- {t_critical(n):.2f} x std error "
             f"{r['std_error']:.2f})): the interval ")
    if not r["exceeds seed noise"]:
        return head + (f"includes 0: no difference shown (the smallest effect {n} seeds detect with 80% power: "
                       f"{r['min_detectable_effect']:.2f} points).")
    side = more if r["diff_mean"] > 0 else less
    if m == 1:
        return head + f"excludes 0, {side}."
    bonf = (f"corrected for the {m} comparisons (Bonferroni) it is "
            f"{_fmt_ci((r['ci95_bonferroni_low'], r['ci95_bonferroni_high']))}")
    if r["exceeds seed noise (Bonferroni)"]:
        return head + f"excludes 0, and {bonf} and still excludes 0: {side}."
    return head + f"excludes 0 alone, but {bonf} and includes 0: no difference shown across the {m} comparisons."


# ---- paper ---------------------------------------------------------------------------------------------------------
#: Headline top-1 accuracies from the paper summary (docs/reference.md, "Headline results").
PAPER_RESULTS = pd.DataFrame(
    [("cifar10", 6, "dta", 96.73), ("cifar100", 6, "dta", 81.16), ("cifar100", 4, "dta", 79.94),
     ("imagenet", 6, "dta", 71.29), ("cifar10-dvs", 10, "dta", 81.3), ("cifar10-dvs", 10, "none", 80.4)],
    columns=["dataset", "time_steps", "attention", "paper_top1"])
_DVS_TOP1 = PAPER_RESULTS[PAPER_RESULTS["dataset"] == "cifar10-dvs"].set_index("attention")["paper_top1"]
PAPER_ABLATION_GAP = (0.4, 0.8)  # CIFAR10 ablation: T-XA only and T-NA only trail full DTA by about 0.4-0.8 points


def headline_table(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """The paper's headline numbers beside ours (mean +- std over seeds), the paper recipe's epochs and command."""
    keyed = not runs.empty and {"dataset", "time_steps", "attention"} <= set(runs.columns)
    rows = []
    for ds, t, att, top1 in PAPER_RESULTS.itertuples(index=False):
        t = int(t)
        mine = runs[(runs["dataset"] == ds) & (runs["time_steps"] == t) & (runs["attention"] == att)] if keyed else []
        rows.append({"dataset": ds, "T": t, "attention": att, "paper top-1 (%)": float(top1),
                     "ours (%)": _ms(mine[metric]) if len(mine) else "not run at this scale",
                     "command": f"python -m dta_lib train --dataset {ds} --preset paper --attention {att} -T {t} "
                                f"--out runs/{ds}-{att}-T{t}",
                     "epochs": make_config(ds, "paper", time_steps=t, attention=att).epochs})
    return pd.DataFrame(rows)


# ---- ablation (06) -------------------------------------------------------------------------------------------------
#: display names of the attention variants (paper Table "ablation")
ATTENTION_LABELS = {"none": "none (MS-ResNet)", "txa": "T-XA only", "tna": "T-NA only", "dta": "DTA (T-XA x T-NA)"}


def ablation_summary(df: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """Per attention variant (paper order): mean +- sample std over seeds of ``metric`` and of the final accuracy."""
    _check_columns(df, ["attention", "seed", metric, "final_test_acc"], "ablation_summary")
    return pd.DataFrame([{"attention": a, "variant": ATTENTION_LABELS[a], "seeds": len(sub),
                          f"{metric}_mean": sub[metric].mean(), f"{metric}_std": sub[metric].std(),
                          metric: _ms(sub[metric]), "final_test_acc": _ms(sub["final_test_acc"])}
                         for a in ATTENTION_LABELS if len(sub := df[df["attention"] == a])])


def ablation_paired(df: pd.DataFrame, metric: str = "best_test_acc", baseline: str = "dta") -> pd.DataFrame:
    """Per variant (paper order): :func:`paired_comparison` of DTA - variant beside the paper's CIFAR10 gap."""
    _check_columns(df, ["attention", "seed", metric], "ablation_paired")
    if baseline not in set(df["attention"]):
        raise ValueError(f"ablation_paired: no {baseline!r} runs among attention={sorted(set(df['attention']))}")
    d = paired_comparison(df, "attention", baseline, metric, lambda a: f"DTA - {ATTENTION_LABELS.get(a, a)}",
                          "DTA better", "DTA worse")
    if d.empty:
        return d
    d["ours (points)"] = [format_mean_std(m, s) for m, s in zip(d["diff_mean"], d["diff_std"])]
    d["paper CIFAR10 (points)"] = ["{}-{}".format(*PAPER_ABLATION_GAP) if a in ("txa", "tna") else "not reported"
                                   for a in d["attention"]]
    d = d.rename(columns={"exceeds seed noise": "exceeds_noise"})[[
        "comparison", "attention", "n_pairs", "diff_mean", "diff_std", "std_error", "ci95_low", "ci95_high",
        "comparisons", "ci95_bonferroni_low", "ci95_bonferroni_high", "min_detectable_effect", "ours (points)",
        "paper CIFAR10 (points)", "exceeds_noise", "verdict"]]
    return d.sort_values("attention", key=lambda s: s.map({a: i for i, a in enumerate(ATTENTION_LABELS)})
                         ).reset_index(drop=True)


# ---- time_steps (07) -----------------------------------------------------------------------------------------------
def time_step_table(df: pd.DataFrame, memory: pd.DataFrame | None = None,
                    metric: str = "best_test_acc") -> pd.DataFrame:
    """Per T: accuracy mean +- std over seeds, seconds per epoch (train + test, wall), and ``memory``'s
    ``step_mib`` / ``step_cpu_s`` (:func:`dta_lib.bench.step_cost`) if given."""
    _check_columns(df, ["time_steps", "seed", metric, "train_seconds", "epochs"], "time_step_table")
    out = pd.DataFrame([{"time_steps": int(t), "seeds": len(sub), f"{metric}_mean": sub[metric].mean(),
                         f"{metric}_std": sub[metric].std(), metric: _ms(sub[metric]),
                         "seconds_per_epoch": float((sub["train_seconds"] / sub["epochs"]).mean())}
                        for t, sub in df.groupby("time_steps", sort=True)])
    if memory is not None and len(memory):
        cols = [c for c in ("time_steps", "step_mib", "step_cpu_s") if c in memory.columns]
        out = out.merge(memory[cols], on="time_steps", how="left")
    return out


def time_step_costs(dataset: str, width: float, time_steps: Sequence[int], attention: str = "dta") -> pd.DataFrame:
    """Per T: ``parameters`` and ``dense_macs`` per image of the model at ``width`` and of its DTA block alone
    (``dta_parameters``, ``dta_macs``), counted by :func:`dta_lib.analysis.profile` on one zero image."""
    if not time_steps or any(int(t) < 1 for t in time_steps):
        raise ValueError(f"time_steps must be a non-empty list of integers >= 1, got {list(time_steps)}")
    info, rows = dataset_info(dataset), []
    for t in map(int, time_steps):
        model = ms_resnet18(num_classes=info.num_classes, time_steps=t, attention=attention,
                            in_channels=info.in_channels, width=width)
        table = profile(model, torch.zeros(1, info.in_channels, info.image_size, info.image_size)).energy_table(
            elementwise=True)
        rows.append({"time_steps": t, "parameters": count_parameters(model),
                     "dta_parameters": count_parameters(model.dta) if model.dta is not None else 0,
                     "dense_macs": float(table["dense_macs"].sum()),
                     "dta_macs": float(table.loc[table["group"] == "DTA", "dense_macs"].sum())})
    return pd.DataFrame(rows)


# ---- dvs (08) ------------------------------------------------------------------------------------------------------
OVERFIT_GAP = 10.0  # a clean train - test gap above this many points: the paper summary's overfitting signature
#: static dataset -> the event dataset notebook 08 studies for it (``make reproduce`` injects DATASET)
EVENT_COUNTERPART = {"fashion-mnist": "fashion-mnist-dvs", "cifar10": "cifar10-dvs", "synthetic": "synthetic-dvs"}
_EVENT = ("fashion-mnist-dvs", "cifar10-dvs", "cifar10-emulated-dvs", "synthetic-dvs")
TIME_ORDERS = ("original", "shuffled", "reversed")  # the orders of :func:`time_order_control`
TIME_ORDER_FILE = "time_order.json"  # :func:`time_order_table`'s cache in the run folder, like ``clean_train.json``


def event_dataset(name: str) -> str:
    """The event dataset for ``name``: itself if it is one, else its DVS counterpart."""
    if name in _EVENT or name in EVENT_COUNTERPART:
        return EVENT_COUNTERPART.get(name, name)
    raise ValueError(f"no event dataset for {name!r}; expected one of {sorted(set(_EVENT) | set(EVENT_COUNTERPART))}")


def cifar10_dvs_available(root: str | os.PathLike | None = None) -> bool:
    """True when real CIFAR10-DVS (``<root>/CIFAR10DVS/<class>/*.aedat4``) is found at ``root`` or
    ``$DTA_DATA_ROOT`` (the lookup of :func:`dta_lib.data.datasets.build_datasets`); nothing is read or created."""
    base = Path(root).expanduser() if root is not None else env_root()
    return base is not None and (base / "CIFAR10DVS").is_dir() and any((base / "CIFAR10DVS").glob("*/*.aedat4"))


def _accuracy(model: torch.nn.Module, dataset: Any, batch_size: int,
              reorder: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    batches = ((reorder(x), y) for x, y in loader)  # event data: x is [B, T, C, H, W]
    return float(evaluate_model(model, batches, torch.device("cpu"))["test_acc"])


def clean_train_accuracy(run: str | os.PathLike, checkpoint: str = "last.pt", batch_size: int | None = None) -> float:
    """Top-1 accuracy (%) of ``run/<checkpoint>`` on the run's training subset without augmentation or MixUp/CutMix
    (``metrics.jsonl``'s ``train_acc`` is on augmented batches); ``batch_size`` defaults to 2x the training one."""
    model, state = load_model(Path(run) / checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    return _accuracy(model, build_data(cfg.replace(augment=False), train=True)[0], batch_size or cfg.batch_size * 2)


def time_order_control(run: str | os.PathLike, checkpoint: str = "best.pt", seed: int = 0,
                       batch_size: int | None = None) -> dict[str, float]:
    """Test accuracy (%) of a trained event-data model with its test streams in each of :data:`TIME_ORDERS` (shuffled:
    one permutation of the T steps per batch, from ``seed``); the drops measure its reliance on temporal order."""
    model, state = load_model(Path(run) / checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    if not get_data_info(cfg.dataset).is_event:
        raise ValueError(f"time_order_control needs event data; {run} trained on {cfg.dataset}, whose T steps are "
                         "copies of one image")
    test_ds, g = build_data(cfg, train=False)[1], torch.Generator().manual_seed(seed)
    reorder = {"original": lambda x: x, "shuffled": lambda x: x[:, torch.randperm(x.shape[1], generator=g)],
               "reversed": lambda x: x.flip(1)}
    return {o: _accuracy(model, test_ds, batch_size or cfg.batch_size * 2, reorder[o]) for o in TIME_ORDERS}


def _cached(run: str | os.PathLike, name: str, checkpoint: str,
            compute: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The JSON file ``run/name`` if written for ``checkpoint`` (its ``"checkpoint"`` key), else ``compute()``
    written there atomically (a run rendered from its committed folder keeps it); None with neither."""
    path = Path(run) / name
    d = json.loads(path.read_text()) if path.is_file() else {}
    if d.get("checkpoint") == checkpoint:
        return d
    if not (Path(run) / checkpoint).is_file():
        return None
    atomic_write_text(path, json.dumps(d := compute()) + "\n")
    return d


def train_test_gaps(runs: pd.DataFrame, checkpoint: str = "last.pt") -> pd.DataFrame:
    """``runs`` plus ``clean_train_acc`` (:func:`clean_train_accuracy`, cached as ``clean_train.json``) and
    ``train_test_gap`` (clean train minus final test accuracy); NaN with neither cache nor checkpoint."""
    values = []
    for run in runs["run"]:
        d = _cached(run, CLEAN_TRAIN_FILE, checkpoint, lambda: {
            "clean_train_acc": clean_train_accuracy(run, checkpoint), "checkpoint": checkpoint})
        values.append(float(d["clean_train_acc"]) if d else math.nan)
    return runs.assign(clean_train_acc=values, train_test_gap=lambda d: d["clean_train_acc"] - d["final_test_acc"])


def time_order_table(runs: pd.DataFrame, checkpoint: str = "best.pt") -> pd.DataFrame:
    """``runs`` plus the :func:`time_order_control` accuracy per order (cached as :data:`TIME_ORDER_FILE`) and
    ``drop_shuffled`` / ``drop_reversed`` (original minus that order); neither cache nor checkpoint is an error."""
    rows = []
    for run in runs["run"]:
        d = _cached(run, TIME_ORDER_FILE, checkpoint,
                    lambda: {"checkpoint": checkpoint, **time_order_control(run, checkpoint)})
        if d is None:
            raise FileNotFoundError(f"{run}: no {TIME_ORDER_FILE} and no {checkpoint} to evaluate; train the run "
                                    "again or restore its checkpoint")
        rows.append({o: float(d[o]) for o in TIME_ORDERS})
    out = pd.concat([runs.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    return out.assign(**{f"drop_{o}": out["original"] - out[o] for o in TIME_ORDERS[1:]})


def time_order_verdicts(orders: pd.DataFrame) -> list[str]:
    """Per variant, its accuracy with the frames in order minus shuffled / reversed, then DTA's drop minus each other
    variant's, paired by seed (``orders``: :func:`time_order_table`), as :func:`paired_comparison` sentences."""
    long = orders.melt(["attention", "seed"], list(TIME_ORDERS), "order", "accuracy")
    lines = [v for a, g in long.groupby("attention", sort=False) for v in paired_comparison(
        g, "order", "original", "accuracy", lambda o, a=a: f"{a}, original minus {o} frames",
        "the model uses the order of the frames", "accuracy rises without the order").get("verdict", [])]
    for o in TIME_ORDERS[1:]:
        lines += list(paired_comparison(orders, "attention", "dta", f"drop_{o}", lambda b, o=o: f"DTA's drop minus "
                                        f"{b}'s ({o})", "DTA relies on the order more", "DTA relies on it less"
                                        ).get("verdict", []))
    return lines


def dvs_table(runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per attention variant: accuracies and the clean train - test gap (:func:`train_test_gaps`) as mean +- std
    over seeds, the seed count, the paper's CIFAR10-DVS top-1 and whether the mean gap exceeds :data:`OVERFIT_GAP`."""
    table = mean_std_table(runs, "attention", {
        "best test acc. (%)": "best_test_acc", "final test acc. (%)": "final_test_acc",
        "clean train acc. (%)": "clean_train_acc", "train/test gap (points)": "train_test_gap",
        f"{AUGMENTED_TRAIN_LABEL} (%)": "final_train_acc",
    }, order=order if order is not None else list(dict.fromkeys(runs["attention"])))
    table["paper CIFAR10-DVS top-1 (%)"] = _DVS_TOP1.reindex(table.index)
    gap = runs.groupby("attention")["train_test_gap"].mean()
    table[f"gap > {OVERFIT_GAP:g} points"] = gap.gt(OVERFIT_GAP).reindex(table.index)
    return table.reset_index()


def dvs_verdicts(runs: pd.DataFrame, diffs: pd.DataFrame, order: Sequence[str] | None = None) -> list[str]:
    """The ``verdict`` of each of ``diffs`` (:func:`paired_comparison` against ``dta``), the paper's full-scale gap and
    each variant's clean train - test gap against :data:`OVERFIT_GAP`, as sentences."""
    lines = [*diffs.get("verdict", []), f"Paper, CIFAR10-DVS: {_DVS_TOP1['dta'] - _DVS_TOP1['none']:+.1f} points "
             f"({_DVS_TOP1['dta']:g} vs {_DVS_TOP1['none']:g}) at full scale."]
    for a, gap in runs.groupby("attention", sort=False)["train_test_gap"].mean().reindex(order).items():
        lines.append(f"{a}: no train/test gap (no clean training accuracy: neither clean_train.json nor the final "
                     "checkpoint is in the run folder)." if math.isnan(gap) else
                     f"{a}: train/test gap {gap:.1f} points -> {'above' if gap > OVERFIT_GAP else 'below'} the "
                     f"summary's {OVERFIT_GAP:g}-point overfitting signature.")
    return lines


# ---- surrogate_width (09) ------------------------------------------------------------------------------------------
RELEASE_WIDTH = 1.0  # the release's triangle half-width gamma
VANISHING_RATIO, EXPLODING_RATIO, CHANCE_MARGIN = 0.1, 10.0, 5.0  # the thresholds of :func:`diagnose_widths`'s rule
_GAMMA = "surrogate width gamma"


def grad_norm_curves(runs: pd.DataFrame, by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """Per-layer gradient norms over training of the ``run`` folders (recorded with ``record_grad_norms=True``),
    long form: ``*by, epoch, layer, grad_norm``, layers in forward order (:func:`layer_order`)."""
    _check_columns(runs, ["run", *by], "grad_norm_curves")
    rows = []
    for _, r in runs.iterrows():
        for rec in read_metrics(r["run"]):
            if not (norms := rec.get("grad_norms")):
                raise ValueError(f"run {r['run']} has no grad_norms at epoch {rec.get('epoch')}; "
                                 "train it with record_grad_norms=True")
            rows += [{**{c: r[c] for c in by}, "epoch": rec["epoch"], "layer": k, "grad_norm": norms[k]}
                     for k in layer_order(norms)]
    return pd.DataFrame(rows)


def layer_order(names: Iterable[str]) -> list[str]:
    """Layer-group names in forward order: ``stem``, ``dta``, ``layerS.B`` by stage and block, the rest, ``fc`` last.

    >>> layer_order(["fc", "layer2.0", "stem", "layer1.1", "dta", "layer1.0"])
    ['stem', 'dta', 'layer1.0', 'layer1.1', 'layer2.0', 'fc']
    """
    def rank(name: str) -> tuple[int, int, int, str]:
        head, _, block = name.partition(".")
        if head.startswith("layer") and head[5:].isdigit():
            return (2, int(head[5:]), int(block) if block.isdigit() else 0, name)
        return ({"stem": 0, "dta": 1, "fc": 4}.get(name, 3), 0, 0, name)

    return sorted(names, key=rank)


def gradient_ratio(curves: pd.DataFrame, first: str = "stem", last: str = "fc",
                   by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """``first``-layer over ``last``-layer gradient norm per run and epoch (columns ``*by, epoch, ratio``); far below 1
    and falling over training is the vanishing-gradient signature."""
    for name in (first, last):
        if name not in set(curves["layer"]):
            raise ValueError(f"layer {name!r} not in the gradient norms; layers: {sorted(set(curves['layer']))}")
    wide = curves.pivot_table(index=[*by, "epoch"], columns="layer", values="grad_norm").reset_index()
    return wide.assign(ratio=wide[first] / wide[last])[[*by, "epoch", first, last, "ratio"]]


def diagnose_widths(ratio: pd.DataFrame, runs: pd.DataFrame, reference: float = RELEASE_WIDTH,
                    chance: float = 10.0) -> pd.DataFrame:
    """Per width: the stem/fc ratio at the first and last epoch (mean over seeds), relative to ``reference``'s, the
    mean final test accuracy and the diagnosis, at the last epoch: **vanishing** (ratio < :data:`VANISHING_RATIO` and
    below ``reference``'s), **exploding** (> :data:`EXPLODING_RATIO` and above it), **not learning** (accuracy within
    :data:`CHANCE_MARGIN` points of ``chance``, %), else **healthy** (docs/experiments.md, "09 · Surrogate width")."""
    first, last = (ratio[ratio["epoch"] == e].groupby("surrogate_width")["ratio"].mean()
                   for e in (ratio["epoch"].min(), ratio["epoch"].max()))
    final_acc = runs.groupby("surrogate_width")["final_test_acc"].mean()
    ref = last.get(reference, float("nan"))
    summary = pd.DataFrame({
        "stem/fc ratio, first epoch": first.round(3), "stem/fc ratio, last epoch": last.round(3),
        f"ratio vs gamma={reference:g}": (last / ref).round(2), "final test acc. (%)": final_acc.round(1),
    })

    summary["diagnosis"] = [", ".join(name for name, hit in (
        ("vanishing", r < VANISHING_RATIO and r < ref), ("exploding", r > EXPLODING_RATIO and r > ref),
        ("not learning", a <= chance + CHANCE_MARGIN)) if hit) or "healthy" for r, a in zip(last, final_acc)]
    return summary.rename_axis(_GAMMA).reset_index()


def width_verdicts(summary: pd.DataFrame, diffs: pd.DataFrame, reference: float = RELEASE_WIDTH) -> list[str]:
    """One sentence per width (ratio trend, diagnosis), then the ``verdict`` of each of ``diffs``
    (:func:`paired_comparison` of ``reference`` minus each other width)."""
    first, last, rel = "stem/fc ratio, first epoch", "stem/fc ratio, last epoch", f"ratio vs gamma={reference:g}"
    lines = [f"gamma = {r[_GAMMA]:g}: stem/fc gradient ratio {r[first]:.3g} -> {r[last]:.3g} over training "
             f"({'falls' if r[last] < r[first] else 'rises'}), {r[rel]:.2f}x the release width's; final test accuracy "
             f"{r['final test acc. (%)']:.1f}% -> diagnosis by the rule above: {r['diagnosis'].upper()}."
             for _, r in summary.iterrows()]
    return lines + (list(diffs["verdict"]) if len(diffs) else
                    [f"No paired differences against gamma = {reference:g}: no width is declared better or worse."])


# ---- precision (11) ------------------------------------------------------------------------------------------------
def precision_study(dataset: str, preset: str, seeds: Iterable[int], root: str | os.PathLike[str] | None = None,
                    reuse: bool = True, **common: Any) -> pd.DataFrame:
    """fp32 and bf16-autocast runs (the registry's variants; LIF state stays fp32) of the preset's default model, one
    row per run: does bf16 keep fp32's accuracy, paired by seed (:func:`precision_verdict`)?"""
    return run_study("precision", dataset, preset, STUDIES["precision"].variants_for(preset), seeds, root=root,
                     reuse=reuse, **common)


def precision_verdict(runs: pd.DataFrame, metric: str = "best_test_acc") -> dict[str, Any]:
    """``table``: per precision, ``<metric>_mean``, sample ``<metric>_std`` (NaN for one seed) and ``n``; the
    seed-paired difference fp32 - bf16 (:func:`paired_comparison`); ``within_noise``: its 95 % t-interval includes 0
    (None with one seed); ``verdict``: the sentence."""
    _check_columns(runs, ["precision", "seed", metric], "precision_verdict")
    if set(runs["precision"]) != {"fp32", "bf16"}:
        raise ValueError(f"precision_verdict needs fp32 and bf16 runs, got precisions {sorted(set(runs['precision']))}")
    r = paired_comparison(runs, "precision", "fp32", metric).iloc[0]
    table = runs.groupby("precision", sort=False)[metric].agg(**{f"{metric}_mean": "mean", f"{metric}_std": "std",
                                                                 "n": "count"})
    return {"table": table.reset_index(), "diff_mean": float(r["diff_mean"]),
            "diff_std": float(r["diff_std"]), "n_pairs": int(r["n_pairs"]), "verdict": r["verdict"],
            "within_noise": None if r["exceeds seed noise"] is None else not r["exceeds seed noise"]}


# ---- energy (12) ---------------------------------------------------------------------------------------------------
def find_trained_run(dataset: str, preset: str, variant: dict[str, Any], seed: int,
                     studies: Iterable[str] = ("ablation", "energy"), root: str | os.PathLike[str] | None = None,
                     **common: Any) -> Path | None:
    """The first finished run of ``studies`` (every epoch recorded) holding ``best.pt`` whose config equals
    ``make_config(dataset, preset, seed=seed, **common, **variant)`` up to threads, progress bars and probes;
    ``None`` if none."""
    cfg = make_config(dataset, preset, seed=seed, **{**common, **variant})
    for study in studies:
        for path in sorted(p.parent for p in run_dir(study, cfg, variant, root).parent.glob("*/config.json")):
            if is_finished(path, cfg, RUN_FREE_FIELDS | PROBE_FIELDS) and (path / "best.pt").is_file():
                return path
    return None


def trained_run(dataset: str, preset: str, variant: dict[str, Any], seed: int, reuse: bool = True,
                studies: Sequence[str] = ("ablation", "surrogate_width", "train"), own_study: str = "energy",
                root: str | os.PathLike[str] | None = None, **common: Any) -> tuple[dict[str, Any], str]:
    """``(row, source study)`` of a run with ``best.pt``: an equal run of ``studies`` (:func:`find_trained_run`;
    ``reuse`` governs ``own_study``'s runs only), else one trained under ``own_study`` by :func:`run_one`."""
    found = find_trained_run(dataset, preset, variant, seed, (*studies, *((own_study,) if reuse else ())), root,
                             **common)
    if found is None:
        return run_one(own_study, dataset, preset, variant, seed, root=root, reuse=False, **common), own_study
    study = found.parent.parent.name
    return {**load_run(found), "study": study, "variant": variant_key(variant), **variant}, study


def energy_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model and group (stem / DTA / backbone / head / total): MACs, SOPs and energy (µJ); ``tables`` maps a
    model label to its :meth:`~dta_lib.analysis.SpikeRecorder.energy_table`."""
    out = pd.concat([energy_totals(table, by="group").rename_axis("group").reset_index().assign(model=label)
                     for label, table in tables.items()], ignore_index=True)
    out = out.assign(energy_mac_uj=out["energy_mac_pj"] * 1e-6, energy_ac_uj=out["energy_ac_pj"] * 1e-6)
    return out[["model", "group", "macs", "sops", "energy_mac_uj", "energy_ac_uj", "energy_uj"]]


def extrapolate_energy(full: pd.DataFrame, measured: pd.DataFrame, e_mac: float = E_MAC_PJ,
                       e_ac: float = E_AC_PJ) -> pd.DataFrame:
    """Energy table of a larger model of the same layout (``full``) with the input rates of ``measured`` (by layer
    name): ``sops = input_rate * dense_macs`` spike-fed, ``macs = dense_macs`` real-fed, and the paper's
    ``E = e_mac * macs + e_ac * sops`` (docs/analysis.md). An **extrapolation**."""
    m = measured.set_index("name")
    if missing := sorted(set(full["name"]) - set(m.index)):
        raise ValueError(f"layers {missing} of the full model are not in the measured table; same layout needed")
    out = full[["name", "type", "group", "steps", "flops", "dense_macs"]].join(m[["input", "input_rate"]], on="name")
    spike = out["input"] == "spike"
    out["macs"] = out["dense_macs"].where(~spike, 0.0)
    out["sops"] = (out["input_rate"] * out["dense_macs"]).where(spike, 0.0)
    out["energy_pj"] = e_mac * out["macs"] + e_ac * out["sops"]
    out.attrs.update(e_mac_pj=e_mac, e_ac_pj=e_ac, extrapolated=True)
    return out


def dta_cost(summary: pd.DataFrame, model: str) -> dict[str, float]:
    """The DTA block's MACs and energy (µJ) in ``model`` (rows of :func:`energy_summary`), the backbone's SOP
    energy, the total, the DTA share of the total and its ratio to the backbone's SOP energy."""
    s = summary[summary["model"] == model].set_index("group")
    if s.empty:
        raise ValueError(f"model {model!r} not in the summary; models: {sorted(set(summary['model']))}")
    if "DTA" not in s.index:
        raise ValueError(f"model {model!r} has no DTA rows (groups: {list(s.index)})")
    dta_e, total = float(s.loc["DTA", "energy_uj"]), float(s.loc["total", "energy_uj"])
    bb_ac = float(s.loc["backbone", "energy_ac_uj"]) if "backbone" in s.index else math.nan
    return {"dta_macs": float(s.loc["DTA", "macs"]), "dta_energy_uj": dta_e, "backbone_sop_energy_uj": bb_ac,
            "total_energy_uj": total, "dta_share_of_total": dta_e / total if total else math.nan,
            "dta_over_backbone_sops": dta_e / bb_ac if bb_ac else math.nan}


def firing_rates_by_model(recorders: dict[str, Any], reference: str = "DTA"
                          ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(rates, per_step, order)`` of :class:`~dta_lib.analysis.SpikeRecorder` s by model label: mean firing rate per
    LIF layer and per time step (with a ``model`` column), and the layers in ``reference``'s forward order."""
    if reference not in recorders:
        raise ValueError(f"reference model {reference!r} not among the recorders {sorted(recorders)}")
    rates = pd.concat([r.firing_rates().assign(model=label) for label, r in recorders.items()], ignore_index=True)
    per_step = pd.concat([r.firing_rates(long=True).assign(model=label) for label, r in recorders.items()],
                         ignore_index=True)
    return rates, per_step, list(dict.fromkeys([*recorders[reference].firing_rates()["name"], *rates["name"]]))


def energy_per_layer(tables: dict[str, pd.DataFrame], reference: str = "DTA") -> tuple[pd.DataFrame, list[str]]:
    """Energy tables per model in long form with ``model``, ``energy (nJ)`` and the ``kind`` of arithmetic (AC for
    spike-fed layers, MAC for real-fed ones), and the layers in ``reference``'s forward order."""
    if reference not in tables:
        raise ValueError(f"reference model {reference!r} not among the tables {sorted(tables)}")
    per_layer = pd.concat([t.assign(model=label) for label, t in tables.items()], ignore_index=True)
    per_layer["energy (nJ)"] = per_layer["energy_pj"] / 1e3
    per_layer["kind"] = per_layer["input"].map({"spike": "AC (spike-fed)", "real": "MAC (real-fed)"}).fillna("mixed")
    return per_layer, list(dict.fromkeys([*tables[reference]["name"], *per_layer["name"]]))


# ---- summary (10) --------------------------------------------------------------------------------------------------
def load_study_runs(preset_root: str | os.PathLike[str], preset: str | None = None,
                    registry: Mapping[str, Study] | None = None) -> pd.DataFrame:
    """Exactly the runs ``registry`` (default :data:`~dta_lib.runs.STUDIES`) expects of ``preset`` (default: the
    folder's name) under ``<preset_root>/<study>/<dataset>/<variant>-s<seed>/``, as load_run rows plus ``study``
    and ``variant``; any missing, unfinished, extra or copied run raises ``ValueError`` naming it and the fix."""
    root = Path(preset_root)
    if not root.is_dir():
        return pd.DataFrame()
    preset, studies, rows, problems = preset or root.name, STUDIES if registry is None else registry, [], []

    def visible(folder: Path) -> list[Path]:  # .ipynb_checkpoints and other hidden folders are not runs
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    for study_dir in visible(root):
        if (study := studies.get(study_dir.name)) is None:
            problems.append(f"{study_dir}: not a study of the registry ({', '.join(sorted(studies))}); move it out")
            continue
        expected = study.expected(preset)
        for data_dir in visible(study_dir):
            fix = (f"python -m dta_lib.campaign {study.name} --preset {preset}" if data_dir.name == study.dataset else
                   f"notebook {study.notebook} with PRESET={preset!r}, DATASET={data_dir.name!r}")
            found = {p.name for p in visible(data_dir)}
            problems += [f"{data_dir / name}: missing (the {study.name} study records {len(expected)} runs at preset "
                         f"{preset}); train it: {fix}" for name in expected if name not in found and study.complete]
            problems += [f"{data_dir / name}: not a run the {study.name} study records at preset {preset} (a copy, or "
                         f"another variant or seed); move it out" for name in sorted(found - set(expected))]
            for name in (n for n in expected if n in found):
                run = data_dir / name
                try:
                    row = load_run(run)  # with run.json's status (none without a run.json)
                except (OSError, ValueError) as e:
                    problems.append(f"{run}: unreadable ({' '.join(str(e).split())[:200]}); retrain it: {fix}")
                    continue
                said = f"{variant_key({k: row.get(k) for k in sorted(study.variants[0])})}-s{row.get('seed')}"
                if row.get("status") != "completed":
                    problems.append(f"{run}: not finished (run.json status {row.get('status')!r}); finish it: {fix}")
                elif said != name or row.get("preset") != preset or row.get("dataset") != data_dir.name:
                    problems.append(f"{run}: its config.json is {said} of preset {row.get('preset')!r} on "
                                    f"{row.get('dataset')!r}, not what its folder says; a copied or moved run: "
                                    f"retrain it: {fix}")
                else:
                    rows.append({**row, "study": study.name, "variant": name.rsplit("-s", 1)[0],
                                 "run": str(run.relative_to(root))})
    if problems:
        raise ValueError(f"{root} does not hold exactly the runs the registry expects at preset {preset} "
                         f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    return pd.DataFrame(rows)


#: config fields that may distinguish variants in a study (shown as group keys when they vary)
_KEYS = ("dataset", "attention", "time_steps", "surrogate_width", "surrogate", "width", "epochs", "subset", "precision")


def study_summary(runs: pd.DataFrame, study: str, metric: str = "best_test_acc") -> pd.DataFrame:
    """One row per (dataset, variant) of ``study``: varying config fields, mean +- std of ``metric``, final test
    accuracy, train/test gap (``n/a`` if a run lacks it) and :data:`~dta_lib.runs.AUGMENTED_TRAIN_LABEL`."""
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
        row = {**dict(zip(keys, vals)),  # keys: dataset and at least time_steps
               "seeds": ",".join(str(s) for s in sorted(g["seed"])),
               f"{metric}_mean": round(float(g[metric].mean()), 2), metric: _ms(g[metric]),
               "final_test_acc": _ms(g["final_test_acc"])}
        if has_gap:  # a gap over some of the seeds is not the variant's gap
            row["train_test_gap"] = "n/a" if g["train_test_gap"].isna().any() else _ms(g["train_test_gap"])
        rows.append({**row, AUGMENTED_TRAIN_LABEL: _ms(g["final_train_acc"])})
    return pd.DataFrame(rows)


def paper_gaps(runs: pd.DataFrame, metric: str = "best_test_acc") -> pd.DataFrame:
    """The paper's comparisons (ablation, time_steps, dvs, train) beside ours: per-seed differences (mean +- std,
    ``ci95``, ``exceeds_noise``: "n/a" with one seed), the MDE (80 % power) and ``resolves the paper's gap`` (<= it)."""
    lo, hi = PAPER_ABLATION_GAP
    p = PAPER_RESULTS.set_index(["dataset", "time_steps", "attention"])["paper_top1"]
    t_gap = p[("cifar100", 6, "dta")] - p[("cifar100", 4, "dta")]
    dvs_gap = p[("cifar10-dvs", 10, "dta")] - p[("cifar10-dvs", 10, "none")]
    nan = math.nan
    # study: (column, a, the paper's setting, [(b, comparison, the paper's a - b as text, low, high)]); ours: a - b
    comparisons = {
        "ablation": ("attention", "dta", "CIFAR10, T=6", [
            (b, f"DTA - {ATTENTION_LABELS[b]}", *((f"{lo}-{hi}", lo, hi) if b != "none" else ("not reported", nan, nan)))
            for b in ("none", "txa", "tna")]),
        "time_steps": ("time_steps", 6, "CIFAR100, DTA",
                       [(4, "T=6 - T=4", f"{t_gap:.2f} (81.16 - 79.94)", t_gap, t_gap)]),
        "dvs": ("attention", "dta", "CIFAR10-DVS, T=10",
                [("none", "DTA - none", f"{dvs_gap:.2f} (81.3 - 80.4)", dvs_gap, dvs_gap)]),
        "train": ("attention", "dta", "not reported", [("none", "DTA - none", "not reported", nan, nan)]),  # nb 05
    }
    rows: list[dict[str, Any]] = []
    for study, (col, a, setting, versus) in comparisons.items():
        for ds, g in runs[runs["study"] == study].groupby("dataset") if "study" in runs.columns else ():
            ours = f"{ds}, DTA" if col == "time_steps" else f"{ds}, T={int(g['time_steps'].iloc[0])}"
            diffs = paired_comparison(g, col, a, metric)
            diffs = diffs.set_index(col) if len(diffs) else diffs
            for b, comparison, text, low, high in versus:
                if b not in diffs.index:
                    continue
                r = diffs.loc[b]
                mean, std, n, ci = r["diff_mean"], r["diff_std"], int(r["n_pairs"]), (r["ci95_low"], r["ci95_high"])
                rows.append({"study": study, "comparison": comparison, "paper setting": setting, "paper (points)": text,
                             "our setting": ours, "ours (points)": format_mean_std(mean, std), "n_pairs": n,
                             "exceeds_noise": "n/a" if n < 2 else r["exceeds seed noise"], "ours_mean": mean,
                             "ours_std": std, "paper_low": low, "paper_high": high,
                             "ci95 (points)": _fmt_ci(ci) if math.isfinite(ci[0]) else "n/a (1 seed)",
                             "ci95_low": ci[0], "ci95_high": ci[1], "min_detectable_effect": r["min_detectable_effect"],
                             "resolves the paper's gap": _resolves(r["min_detectable_effect"], low, high)})
    return pd.DataFrame(rows)


def _resolves(mde: float, low: float, high: float) -> str:
    """Whether the seeds resolve the paper's gap: their MDE (80 % power, 95 %) is at most it (a range: its low end)."""
    paper = min(abs(low), abs(high)) if math.isfinite(low) else math.nan
    if not math.isfinite(mde):
        return "no: one seed, no noise estimate"
    if not math.isfinite(paper):
        return f"no paper gap (MDE {mde:.2f})"
    return f"yes (MDE {mde:.2f} <= {paper:.2f})" if mde <= paper else f"no (MDE {mde:.2f} > {paper:.2f})"


def describe_runs(runs: pd.DataFrame) -> str:
    """The provenance of ``runs`` in one line (captions, the report): preset, dataset, seeds, runs, hardware, torch
    threads, total training wall time (``run.json``'s ``wall_seconds``, else summed epochs) and git commit(s)."""
    if runs.empty:
        raise ValueError("describe_runs: no runs")

    def joined(col: str) -> str:  # the distinct values as sorted text
        return ", ".join(sorted({str(v) for v in runs[col].dropna()})) if col in runs.columns else "unknown"

    train = runs.get("train_seconds", pd.Series(math.nan, runs.index))
    minutes = float(runs.get("wall_seconds", train).fillna(train).sum()) / 60
    commits = ", ".join(c[:10] for c in joined("hardware.git_commit").split(", "))
    seeds = ",".join(str(s) for s in sorted(set(runs["seed"])))
    return (f"preset {joined('preset')}; dataset {joined('dataset')}; seeds {seeds}; {len(runs)} run(s); hardware "
            f"{joined('hardware.cpu')} ({joined('hardware.device')}, torch threads "
            f"{joined('hardware.torch_threads')}); total training wall time {minutes:.1f} min; git {commits}")


RECORDED_BLOCK = re.compile(r"<!-- recorded: (?P<pattern>\S+) -->(?P<text>.*?)<!-- /recorded -->", re.S)


def recorded_hardware(pattern: str, root: str | os.PathLike[str] = ".") -> str:
    """The machine and precision recorded by the files matching ``pattern`` under ``root`` (bench ``meta`` or run
    ``run.json``), as one phrase for :func:`sync_recorded`."""
    if not (files := sorted(Path(root).glob(pattern))):
        raise FileNotFoundError(f"no recorded file matches {pattern} under {root}")

    def what(d: dict[str, Any]) -> str:  # a bench file's meta, else a run folder's run.json
        h, run = d.get("meta") or d["hardware"], "meta" not in d
        t, kernels = h["torch_threads" if run else "threads"], h.get("cpu_capability")
        return (f"{h['cpu']}{f' ({kernels} kernels)' if kernels else ''}, {h['cpu_count']} cores, {t} thread"
                f"{'s' * (t != 1)}" + (f" per run, {d.get('autocast_dtype') or 'fp32'}" if run else "")
                + f", torch {h['torch'].split('+')[0]}")

    seen = Counter(what(json.loads(f.read_text())) for f in files)
    if len(files) == 1:
        return next(iter(seen))
    return "; ".join(f"{w} ({n} of {len(files)} runs)" if len(seen) > 1 else f"{w} (all {n} runs)"
                     for w, n in seen.items())


def sync_recorded(text: str, root: str | os.PathLike[str] = ".") -> str:
    """``text`` with every ``<!-- recorded: PATTERN -->`` block refilled from the files it names."""
    return RECORDED_BLOCK.sub(lambda m: f"<!-- recorded: {m['pattern']} -->{recorded_hardware(m['pattern'], root)}"
                              "<!-- /recorded -->", text)
