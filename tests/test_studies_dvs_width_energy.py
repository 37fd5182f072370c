"""Tests of dta_lib.experiments (helpers of notebooks 08, 09, 12)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from dta_lib import ms_resnet18
from dta_lib.analysis import E_AC_PJ, E_MAC_PJ, profile
from dta_lib.train import make_config
from dta_lib.runs import run_dir
from dta_lib.studies import cifar10_dvs_available, clean_train_accuracy, dta_cost, energy_summary, event_dataset, extrapolate_energy, find_trained_run, grad_norm_curves, gradient_ratio, trained_run


def test_event_dataset_maps_static_to_event_and_rejects_unknown() -> None:
    assert event_dataset("fashion-mnist") == "fashion-mnist-dvs"
    assert event_dataset("cifar10") == "cifar10-dvs"
    assert event_dataset("cifar10-dvs") == "cifar10-dvs"
    with pytest.raises(ValueError, match="imagenet"):
        event_dataset("imagenet")


def test_cifar10_dvs_available_needs_aedat4_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTA_DATA_ROOT", raising=False)
    assert not cifar10_dvs_available()
    assert not cifar10_dvs_available(tmp_path)
    (tmp_path / "CIFAR10DVS" / "airplane").mkdir(parents=True)
    assert not cifar10_dvs_available(tmp_path)  # folder without recordings
    (tmp_path / "CIFAR10DVS" / "airplane" / "cifar10_airplane_0.aedat4").write_bytes(b"x")
    assert cifar10_dvs_available(tmp_path)
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path))
    assert cifar10_dvs_available()


def _fake_run(path: Path, norms: list[dict[str, float]] | None) -> None:
    path.mkdir(parents=True)
    lines = [json.dumps({"epoch": i + 1, "test_acc": 10.0, "train_acc": 10.0, **({"grad_norms": n} if n else {})})
             for i, n in enumerate(norms or [{}])]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_grad_norm_curves_and_ratio(tmp_path: Path) -> None:
    _fake_run(tmp_path / "a", [{"stem": 1.0, "fc": 4.0}, {"stem": 0.5, "fc": 5.0}])
    _fake_run(tmp_path / "b", [{"stem": 3.0, "fc": 3.0}, {"stem": 2.0, "fc": 1.0}])
    runs = pd.DataFrame({"run": [str(tmp_path / "a"), str(tmp_path / "b")], "surrogate_width": [0.5, 2.0], "seed": [0, 0]})
    curves = grad_norm_curves(runs)
    assert len(curves) == 8 and set(curves["layer"]) == {"stem", "fc"}
    ratio = gradient_ratio(curves).set_index(["surrogate_width", "epoch"])["ratio"]
    assert ratio[(0.5, 1)] == pytest.approx(0.25) and ratio[(0.5, 2)] == pytest.approx(0.1)
    assert ratio[(2.0, 2)] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="layer 'layer9'"):
        gradient_ratio(curves, first="layer9")
    with pytest.raises(ValueError, match="lacks columns"):
        grad_norm_curves(runs.drop(columns="seed"))


def test_grad_norm_curves_refuses_runs_without_norms(tmp_path: Path) -> None:
    _fake_run(tmp_path / "a", None)
    runs = pd.DataFrame({"run": [str(tmp_path / "a")], "surrogate_width": [1.0], "seed": [0]})
    with pytest.raises(ValueError, match="record_grad_norms=True"):
        grad_norm_curves(runs)


def _record(root: Path, study: str, variant: dict, seed: int, best: bool, **over) -> Path:
    cfg = make_config("synthetic", "smoke", seed=seed, **{**over, **variant})
    path = run_dir(study, cfg, variant, root)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    (path / "run.json").write_text(json.dumps({"status": "completed"}))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "test_acc": 50.0, "train_acc": 60.0}) + "\n"
                                                for e in range(1, cfg.epochs + 1)))
    if best:
        (path / "best.pt").write_bytes(b"")
    return path


def test_find_trained_run_needs_equal_config_and_checkpoint(tmp_path: Path) -> None:
    v = {"attention": "none"}
    assert find_trained_run("synthetic", "smoke", v, 0, root=tmp_path) is None
    no_ckpt = _record(tmp_path, "ablation", v, 0, best=False)
    assert find_trained_run("synthetic", "smoke", v, 0, root=tmp_path) is None
    (no_ckpt / "best.pt").write_bytes(b"")
    assert find_trained_run("synthetic", "smoke", v, 0, root=tmp_path) == no_ckpt
    # threads / probes do not change the maths; the seed and other fields do
    assert find_trained_run("synthetic", "smoke", v, 0, root=tmp_path, threads=1, record_firing_rates=True) == no_ckpt
    assert find_trained_run("synthetic", "smoke", v, 1, root=tmp_path) is None
    assert find_trained_run("synthetic", "smoke", v, 0, root=tmp_path, epochs=5) is None
    row, source = trained_run("synthetic", "smoke", v, 0, root=tmp_path)
    assert source == "ablation" and row["best_test_acc"] == 50.0 and row["attention"] == "none"


def test_trained_run_falls_back_to_notebook_05s_runs(tmp_path: Path) -> None:
    # notebook 05 records {"attention", "time_steps"} variants under "train" (the study preset's full-data
    # models); the same maths is found there, but an ablation run is preferred when both exist
    v = {"attention": "dta"}
    train = _record(tmp_path, "train", {**v, "time_steps": 4}, 0, best=True)
    row, source = trained_run("synthetic", "smoke", v, 0, root=tmp_path, time_steps=4)
    assert (source, row["run"]) == ("train", str(train))
    assert find_trained_run("synthetic", "smoke", v, 0, studies=("ablation",), root=tmp_path, time_steps=4) is None
    _record(tmp_path, "ablation", v, 0, best=True, time_steps=4)
    assert trained_run("synthetic", "smoke", v, 0, root=tmp_path, time_steps=4)[1] == "ablation"


@pytest.mark.slow
def test_trained_run_trains_when_checkpoint_missing_and_clean_train_accuracy(tmp_path: Path) -> None:
    v = {"attention": "dta"}
    _record(tmp_path, "ablation", v, 0, best=False, epochs=1, subset=64, test_subset=64)
    row, source = trained_run("synthetic", "smoke", v, 0, root=tmp_path, epochs=1, subset=64, test_subset=64, threads=1,
                              progress=False)
    assert source == "energy" and (Path(row["run"]) / "best.pt").is_file()
    acc = clean_train_accuracy(row["run"])
    assert 0.0 <= acc <= 100.0
    assert acc == clean_train_accuracy(row["run"])  # deterministic
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        clean_train_accuracy(row["run"], checkpoint="nope.pt")


def _tables(width_small: float = 0.0625) -> tuple[pd.DataFrame, pd.DataFrame]:
    torch.manual_seed(0)
    small = ms_resnet18(10, time_steps=2, attention="dta", in_channels=1, width=width_small)
    full = ms_resnet18(10, time_steps=3, attention="dta", in_channels=1, width=2 * width_small)
    x = 5 * torch.rand(2, 1, 16, 16)  # large enough that spikes reach the backbone
    return (profile(full, x).energy_table(elementwise=True), profile(small, x).energy_table(elementwise=True))


def test_extrapolate_energy_uses_measured_rates_on_full_dense_counts() -> None:
    full, small = _tables()
    ext = extrapolate_energy(full, small)
    m = small.set_index("name")
    for _, r in ext.iterrows():
        if m.loc[r["name"], "input"] == "spike":
            assert r["sops"] == pytest.approx(m.loc[r["name"], "input_rate"] * r["dense_macs"]) and r["macs"] == 0
        else:
            assert r["macs"] == r["dense_macs"] and r["sops"] == 0
    assert ext["energy_pj"].sum() == pytest.approx(E_MAC_PJ * ext["macs"].sum() + E_AC_PJ * ext["sops"].sum())
    with pytest.raises(ValueError, match="not in the measured table"):
        extrapolate_energy(full, small[small["name"] != "fc"])


def test_energy_summary_and_dta_cost_add_up() -> None:
    full, small = _tables()
    s = energy_summary({"dta": small})
    tot = s.set_index("group").loc["total"]
    assert tot["energy_uj"] == pytest.approx(small["energy_pj"].sum() * 1e-6)
    assert tot["energy_uj"] == pytest.approx(tot["energy_mac_uj"] + tot["energy_ac_uj"])
    c = dta_cost(s, "dta")
    dta_rows = small[small["group"] == "DTA"]
    assert c["dta_macs"] == pytest.approx(dta_rows["macs"].sum()) and dta_rows["sops"].sum() == 0
    assert c["dta_share_of_total"] == pytest.approx(c["dta_energy_uj"] / c["total_energy_uj"])
    assert c["backbone_sop_energy_uj"] > 0 and 0 < c["dta_share_of_total"] < 1
    assert c["dta_over_backbone_sops"] == pytest.approx(c["dta_energy_uj"] / c["backbone_sop_energy_uj"])
    with pytest.raises(ValueError, match="not in the summary"):
        dta_cost(s, "none")


def test_describe_runs_sums_wall_time_and_lists_seeds() -> None:
    from dta_lib.studies import describe_runs

    rows = pd.DataFrame({"preset": ["cpu", "cpu"], "dataset": ["d", "d"], "seed": [1, 0], "hardware.cpu": ["X", "X"],
                         "wall_seconds": [60.0, None], "train_seconds": [30.0, 120.0]})  # no wall time: epoch seconds
    line = describe_runs(rows)
    assert line.startswith("preset cpu; dataset d; seeds 0,1; 2 run(s); hardware X (unknown, torch threads unknown)")
    assert "total training wall time 3.0 min" in line
    with pytest.raises(ValueError, match="no runs"):
        describe_runs(rows.iloc[:0])


def test_find_trained_run_matches_any_variant_folder(tmp_path: Path) -> None:
    # notebook 09's width-1.0 run with gradient probes is the same model as notebook 06's DTA run
    other = _record(tmp_path, "surrogate_width", {"surrogate_width": 1.0}, 0, best=True, record_grad_norms=True)
    assert find_trained_run("synthetic", "smoke", {"attention": "dta"}, 0, studies=("ablation", "surrogate_width"),
                            root=tmp_path) == other
    assert find_trained_run("synthetic", "smoke", {"attention": "none"}, 0, studies=("surrogate_width",),
                            root=tmp_path) is None


def test_train_test_gaps_reads_cache_and_gives_nan_without_checkpoint(tmp_path: Path) -> None:
    from dta_lib.studies import train_test_gaps

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "clean_train.json").write_text(json.dumps({"clean_train_acc": 90.0, "checkpoint": "last.pt"}))
    out = train_test_gaps(pd.DataFrame({"run": [str(tmp_path / "a"), str(tmp_path / "b")], "final_test_acc": [70.0, 60.0]}))
    assert out["train_test_gap"].iloc[0] == 20.0 and math.isnan(out["train_test_gap"].iloc[1])
    # a cache of another checkpoint is not the final weights' clean accuracy: no gap from it
    (tmp_path / "b" / "clean_train.json").write_text(json.dumps({"clean_train_acc": 99.0, "checkpoint": "best.pt"}))
    out = train_test_gaps(pd.DataFrame({"run": [str(tmp_path / "b")], "final_test_acc": [60.0]}))
    assert math.isnan(out["train_test_gap"].iloc[0])


def test_grad_norm_curves_are_in_forward_layer_order(tmp_path: Path) -> None:
    from dta_lib.studies import layer_order

    norms = {k: 1.0 for k in ("dta", "fc", "layer1.0", "layer10.0", "layer2.1", "layer2.0", "stem")}
    _fake_run(tmp_path / "a", [norms])
    curves = grad_norm_curves(pd.DataFrame({"run": [str(tmp_path / "a")], "surrogate_width": [1.0], "seed": [0]}))
    assert list(curves["layer"]) == ["stem", "dta", "layer1.0", "layer2.0", "layer2.1", "layer10.0", "fc"]
    assert layer_order(["fc", "stem"]) == ["stem", "fc"]


# ---------------------------------------------------------------------------- decision rules and tables in the library
def _width_runs(accs: dict[float, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"surrogate_width": w, "seed": s, "best_test_acc": a, "final_test_acc": a - 1.0,
                          "final_train_acc": a + 2.0} for w, xs in accs.items() for s, a in enumerate(xs)])


def width_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Notebook 09's own comparison (gamma = 1 minus each width): its ``diffs = ...`` statement, run on ``runs``."""
    import ast

    import nbformat

    from dta_lib.studies import paired_comparison

    nb = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / "09_surrogate_width.ipynb", 4)
    stmt = next(node for c in nb.cells if c.cell_type == "code" and "diffs = " in c.source
                for node in ast.parse(c.source).body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "diffs")
    scope = {"runs": runs, "paired_comparison": paired_comparison}
    exec(compile(ast.Module([stmt], []), "09_surrogate_width", "exec"), scope)
    return scope["diffs"]


def test_width_table_and_differences_pair_by_seed() -> None:
    from dta_lib.studies import mean_std_table

    runs = _width_runs({0.5: [50.0, 52.0, 54.0], 1.0: [60.0, 62.1, 63.9], 2.0: [59.0, 62.0, 64.0]})
    table = mean_std_table(runs, "surrogate_width", {"best test acc. (%)": "best_test_acc"}).reset_index()
    assert list(table["surrogate_width"]) == [0.5, 1.0, 2.0] and list(table["seeds"]) == [3, 3, 3]
    assert table.loc[0, "best test acc. (%)"] == "52.00 +- 2.00"
    diffs = width_differences(runs).set_index("surrogate_width")
    assert diffs.loc[0.5, "diff_mean"] == pytest.approx(10.0) and diffs.loc[0.5, "comparison"] == "gamma=1.0 minus gamma=0.5"
    assert diffs.loc[0.5, "exceeds seed noise"] == True  # noqa: E712  10 points, sd 0.1 over 3 pairs
    assert diffs.loc[2.0, "exceeds seed noise"] == False  # noqa: E712  0.33 points, sd 0.76
    assert width_differences(runs[runs.surrogate_width != 1.0]).empty  # no reference run: nothing to pair with
    # two comparisons (1 - 0.5, 1 - 2): the Bonferroni interval (each at 97.5 %) is wider than the plain 95 % one
    assert (diffs["comparisons"] == 2).all()
    assert (diffs["ci95_bonferroni_low"] < diffs["ci95_low"]).all() and (diffs["ci95_bonferroni_high"] > diffs["ci95_high"]).all()
    assert diffs.loc[2.0, "ci95_bonferroni_high"] - diffs.loc[2.0, "diff_mean"] == pytest.approx(
        6.2053 * diffs.loc[2.0, "diff_std"] / math.sqrt(3), abs=1e-3)


def test_width_verdict_reads_the_corrected_intervals() -> None:
    from dta_lib.studies import width_verdicts

    # gamma 1 - 2 per seed: 1.0, 1.3, 2.0 (1.43 +- 0.51): the plain 95 % interval excludes 0, the corrected one not
    runs = _width_runs({0.5: [77.5, 78.0, 78.9], 1.0: [78.0, 78.3, 79.0], 2.0: [77.0, 77.0, 77.0]})  # 1 - 0.5: a tie
    diffs = width_differences(runs).set_index("surrogate_width")
    assert diffs.loc[2.0, "exceeds seed noise"] == True and diffs.loc[2.0, "exceeds seed noise (Bonferroni)"] == False  # noqa: E712
    tie, two = width_verdicts(pd.DataFrame(columns=["surrogate width gamma"]), diffs.reset_index())
    assert tie.startswith("gamma=1.0 minus gamma=0.5: ") and "includes 0: no difference shown" in tie
    assert two.startswith("gamma=1.0 minus gamma=2.0: +1.43 points (mean of 3 per-seed differences; 95% t-interval")
    assert two.endswith("excludes 0 alone, but corrected for the 2 comparisons (Bonferroni) it is [-0.41, +3.27] and "
                        "includes 0: no difference shown across the 2 comparisons.") and "better" not in two
    # a large gap survives the correction
    runs.loc[runs.surrogate_width == 2.0, "best_test_acc"] = [70.0, 70.2, 70.5]
    last = width_verdicts(pd.DataFrame(columns=["surrogate width gamma"]), width_differences(runs))[-1]
    assert last.startswith("gamma=1.0 minus gamma=2.0: +8.20 points") and last.endswith("and still excludes 0: gamma=1.0 better.")


def test_diagnose_widths_applies_the_rule() -> None:
    from dta_lib.studies import diagnose_widths, width_verdicts

    ratio = pd.DataFrame([{"surrogate_width": w, "seed": 0, "epoch": e, "ratio": r}
                          for w, rs in {0.5: [1.0, 0.05], 1.0: [1.0, 0.5], 2.0: [1.0, 20.0], 4.0: [1.0, 1.0]}.items()
                          for e, r in enumerate(rs, start=1)])
    runs = _width_runs({0.5: [60.0], 1.0: [60.0], 2.0: [60.0], 4.0: [14.0]})  # final acc 59 / 59 / 59 / 13
    summary = diagnose_widths(ratio, runs).set_index("surrogate width gamma")
    assert summary["diagnosis"].to_dict() == {0.5: "vanishing", 1.0: "healthy", 2.0: "exploding", 4.0: "not learning"}
    assert summary.loc[0.5, "ratio vs gamma=1"] == pytest.approx(0.1)
    lines = width_verdicts(summary.reset_index(), pd.DataFrame())
    assert lines[0].startswith("gamma = 0.5: stem/fc gradient ratio 1 -> 0.05 over training (falls)")
    assert lines[-1] == "No paired differences against gamma = 1: no width is declared better or worse."
    one_seed = width_verdicts(summary.reset_index(), width_differences(runs))  # one seed: no interval, no verdict
    assert len(one_seed) == 7 and all("cannot be estimated, so this says nothing" in v for v in one_seed[4:])


def test_dvs_table_and_verdicts() -> None:
    from dta_lib.studies import OVERFIT_GAP, dvs_table, dvs_verdicts, paired_comparison

    rows = [{"attention": a, "seed": s, "best_test_acc": b, "final_test_acc": b, "clean_train_acc": b + g,
             "train_test_gap": g, "final_train_acc": b}
            for a, bs, g in (("none", [40.0, 42.0], 2.0), ("dta", [45.0, 47.5], 12.0)) for s, b in enumerate(bs)]
    runs = pd.DataFrame(rows)
    table = dvs_table(runs, ["none", "dta"])
    assert list(table["attention"]) == ["none", "dta"] and list(table["seeds"]) == [2, 2]
    assert list(table["paper CIFAR10-DVS top-1 (%)"]) == [80.4, 81.3]
    assert list(table[f"gap > {OVERFIT_GAP:g} points"]) == [False, True]
    lines = dvs_verdicts(runs, paired_comparison(runs, "attention", "dta"), ["none", "dta"])
    assert lines[0] == ("dta - none (best_test_acc): +5.25 points (mean of 2 per-seed differences; 95% t-interval "
                        "[+2.07, +8.43] (mean +- 12.71 x std error 0.25)): the interval excludes 0, dta higher.")
    assert lines[1] == "Paper, CIFAR10-DVS: +0.9 points (81.3 vs 80.4) at full scale."
    assert lines[2:] == ["none: train/test gap 2.0 points -> below the summary's 10-point overfitting signature.",
                         "dta: train/test gap 12.0 points -> above the summary's 10-point overfitting signature."]
    assert "train acc (augmented, running) (%)" in table.columns  # the running accuracy is never called a gap
    no_gap = runs.assign(train_test_gap=math.nan, clean_train_acc=math.nan)
    assert dvs_verdicts(no_gap, paired_comparison(no_gap, "attention", "dta"), ["none", "dta"])[2].startswith(
        "none: no train/test gap (no clean training accuracy")


def test_firing_rates_and_energy_per_layer_follow_the_forward_order() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dta_lib import viz
    from dta_lib.studies import energy_per_layer, firing_rates_by_model

    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    recs = {label: profile(ms_resnet18(num_classes=4, time_steps=2, attention=a, in_channels=1, width=0.0625), x)
            for label, a in (("baseline", "none"), ("DTA", "dta"))}
    rates, per_t, order = firing_rates_by_model(recs)
    assert order[: len(recs["DTA"].firing_rates())] == list(recs["DTA"].firing_rates()["name"])
    assert set(rates["model"]) == {"baseline", "DTA"} and sorted(per_t["t"].unique()) == [1, 2]  # t = 1..T
    tables = {k: r.energy_table() for k, r in recs.items()}
    per_layer, layers = energy_per_layer(tables)
    assert per_layer["energy (nJ)"].sum() == pytest.approx(sum(t["energy_pj"].sum() for t in tables.values()) / 1e3)
    assert set(per_layer["kind"]) <= {"AC (spike-fed)", "MAC (real-fed)", "mixed"} and set(layers) == set(per_layer["name"])
    with pytest.raises(ValueError, match="reference model 'DTA'"):
        firing_rates_by_model({"baseline": recs["baseline"]})
    for fig in (viz.plot_firing_rates(rates, per_t, order, "t"), viz.plot_energy_per_layer(per_layer, layers, "t")):
        assert len(fig.axes) >= 2
        plt.close(fig)


def test_time_order_control_reorders_only_the_time_axis(tmp_path: Path) -> None:
    from dta_lib.train import train
    from dta_lib.studies import TIME_ORDERS, time_order_control
    from dta_lib.checkpoint import read_metrics

    cfg = make_config("synthetic-dvs", "smoke", epochs=1, subset=64, test_subset=64, batch_size=16, width=0.0625,
                      threads=1, progress=False, precision="fp32")
    train(cfg, out=tmp_path / "run")
    acc = time_order_control(tmp_path / "run")
    assert tuple(acc) == TIME_ORDERS and all(0.0 <= a <= 100.0 for a in acc.values())
    assert acc["original"] == read_metrics(tmp_path / "run")[-1]["test_acc"]  # in order: the recorded accuracy
    assert acc == time_order_control(tmp_path / "run")  # the shuffles are seeded
    static = make_config("synthetic", "smoke", epochs=1, subset=32, test_subset=32, batch_size=16, width=0.0625,
                         threads=1, progress=False)
    train(static, out=tmp_path / "static")
    with pytest.raises(ValueError, match="needs event data"):
        time_order_control(tmp_path / "static")


def test_time_order_table_caches_in_the_run_folder_and_names_a_run_it_cannot_evaluate(tmp_path: Path) -> None:
    from dta_lib.train import train
    from dta_lib.studies import TIME_ORDER_FILE, time_order_table

    cfg = make_config("synthetic-dvs", "smoke", epochs=1, subset=32, test_subset=32, batch_size=16, width=0.0625,
                      threads=1, progress=False, precision="fp32")
    train(cfg, out=tmp_path / "run")
    runs = pd.DataFrame({"run": [str(tmp_path / "run")], "attention": ["dta"]})
    first = time_order_table(runs)
    assert (first["drop_reversed"] == first["original"] - first["reversed"]).all()
    (tmp_path / "run" / "best.pt").unlink()  # a committed run without its checkpoint: the cache answers
    assert time_order_table(runs).equals(first)
    (tmp_path / "run" / TIME_ORDER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no time_order.json and no best.pt"):
        time_order_table(runs)


def test_time_order_verdicts_read_the_drops_with_intervals() -> None:
    from dta_lib.studies import time_order_verdicts

    orders = pd.DataFrame({"attention": ["none"] * 3 + ["dta"] * 3, "seed": [0, 1, 2] * 2,
                           "drop_shuffled": [5.0, 6.0, 7.0, 9.0, 10.5, 11.0], "drop_reversed": [0.1, -0.2, 0.05] * 2})
    orders = orders.assign(original=80.0, shuffled=80.0 - orders.drop_shuffled, reversed=80.0 - orders.drop_reversed)
    lines = time_order_verdicts(orders)
    assert len(lines) == 6
    assert any(l.startswith("none, original minus shuffled frames: +6.00") and "uses the order" in l for l in lines)
    assert any(l.startswith("DTA's drop minus none's (shuffled): +4.17") and "relies on the order more" in l for l in lines)
    assert any(l.startswith("dta, original minus reversed frames") and "no difference shown" in l for l in lines)
    assert any(l.startswith("DTA's drop minus none's (reversed): +0.00") and "no difference shown" in l for l in lines)
