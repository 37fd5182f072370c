"""Study helpers of notebooks 05/06/07/10: ablation tables, noise verdicts, report over run folders,
live curves and the per-T memory measurement."""
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dta_lib import runs, studies, viz  # noqa: E402
from dta_lib.studies import PAPER_ABLATION_GAP
from dta_lib.runs import AUGMENTED_TRAIN_LABEL, Study, load_run  # noqa: E402

#: the registry of the synthetic run folders below (the report loads exactly what its registry lists)
REGISTRY = {
    "ablation": Study("ablation", "fashion-mnist", ({"attention": "dta"}, {"attention": "txa"}), {"*": (0, 1, 2)}),
    "time_steps": Study("time_steps", "fashion-mnist", tuple({"attention": "dta", "time_steps": t} for t in (4, 6)),
                        {"*": (0,)}),
    "dvs": Study("dvs", "fashion-mnist-dvs", ({"attention": "none"},), {"*": (0,)}),
    "precision": Study("precision", "fashion-mnist", ({"precision": "fp32"}, {"precision": "bf16"}), {"*": (0, 1)}),
}


def make_run(root, study, dataset, variant, seed, accs, status="completed", **config):
    """A run folder as the training engine writes it: config.json, metrics.jsonl, run.json."""
    path = root / study / dataset / f"{variant}-s{seed}"
    path.mkdir(parents=True)
    cfg = {"dataset": dataset, "preset": "cpu", "seed": seed, "attention": "dta", "time_steps": 4, **config}
    (path / "config.json").write_text(json.dumps(cfg))
    lines = [json.dumps({"epoch": i + 1, "test_acc": a, "train_acc": a + 5, "train_loss": 1.0, "seconds": 10.0})
             for i, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    meta = {"status": status, "wall_seconds": 33.0, "hardware": {"cpu": "TestCPU", "torch_threads": 1,
                                                                 "git_commit": "abcdef1234567", "device": "cpu"}}
    (path / "run.json").write_text(json.dumps(meta))
    return path


def ablation_frame(gap=1.0, noise=(0.1, -0.1, 0.0)):
    rows = []
    for s, n in enumerate(noise):
        base = 60.0 + 3 * s  # seeds differ a lot; pairing removes it
        rows += [
            {"attention": "dta", "seed": s, "best_test_acc": base + gap + n, "final_test_acc": base + gap},
            {"attention": "txa", "seed": s, "best_test_acc": base, "final_test_acc": base},
            {"attention": "none", "seed": s, "best_test_acc": base + gap + 2 * n - 0.05 * s, "final_test_acc": base},
        ]
    return pd.DataFrame(rows)


def test_ablation_summary_and_paired_differences():
    df = ablation_frame()
    summ = studies.ablation_summary(df)
    assert list(summ["attention"]) == ["none", "txa", "dta"]  # paper order
    dta = summ[summ.attention == "dta"].iloc[0]
    assert dta.seeds == 3 and dta.best_test_acc_mean == pytest.approx(64.0)
    paired = studies.ablation_paired(df)
    txa = paired[paired.attention == "txa"].iloc[0]
    assert txa.diff_mean == pytest.approx(1.0) and txa.n_pairs == 3
    assert txa["paper CIFAR10 (points)"] == f"{PAPER_ABLATION_GAP[0]}-{PAPER_ABLATION_GAP[1]}"
    assert bool(txa.exceeds_noise)  # 1 point against +-0.1 noise: real
    none = paired[paired.attention == "none"].iloc[0]
    assert not bool(none.exceeds_noise) and none["paper CIFAR10 (points)"] == "not reported"
    verdicts = list(paired["verdict"])
    assert any("T-XA only" in v and "interval excludes 0" in v and "DTA better" in v for v in verdicts)
    assert any("none" in v and "interval includes 0" in v for v in verdicts)
    assert txa.ci95_low > 0 and none.ci95_low < 0 < none.ci95_high


def test_noise_verdict_with_one_seed_says_nothing():
    paired = studies.ablation_paired(ablation_frame(noise=(0.1,)))
    assert not paired["exceeds_noise"].any()
    assert all("cannot be estimated" in v for v in paired["verdict"])
    labels = [t.get_text() for t in viz.plot_ablation(ablation_frame(noise=(0.1,))).axes[1].get_legend().get_texts()]
    assert labels.count("one seed: no interval") == 1, labels


def test_a_variant_without_a_common_seed_is_no_comparison():
    df = ablation_frame()
    df.loc[df.attention == "none", "seed"] += 100  # no seed shared with dta
    paired = studies.paired_comparison(df, "attention", "dta")
    assert list(paired["attention"]) == ["txa"] and (paired["comparisons"] == 1).all()


def test_ablation_bad_input():
    with pytest.raises(ValueError, match="lacks columns"):
        studies.ablation_summary(pd.DataFrame({"seed": [0]}))
    with pytest.raises(ValueError, match="no 'dta' runs"):
        studies.ablation_paired(ablation_frame()[lambda d: d.attention != "dta"])


def test_report_over_run_folders(tmp_path):
    for s, (d, n) in enumerate([(62.0, 58.0), (64.0, 61.0), (60.0, 57.5)]):
        make_run(tmp_path, "ablation", "fashion-mnist", "attention=dta", s, [50.0, d], attention="dta")
        make_run(tmp_path, "ablation", "fashion-mnist", "attention=txa", s, [50.0, n], attention="txa")
    for t, a in [(4, 55.0), (6, 57.0)]:
        make_run(tmp_path, "time_steps", "fashion-mnist", f"attention=dta,time_steps={t}", 0, [a], time_steps=t)
    make_run(tmp_path, "dvs", "fashion-mnist-dvs", "attention=none", 0, [40.0], attention="none", time_steps=10)
    runs = studies.load_study_runs(tmp_path, "cpu", registry=REGISTRY)
    assert len(runs) == 9 and set(runs.study) == {"ablation", "time_steps", "dvs"}
    unfinished = make_run(tmp_path, "ablation", "fashion-mnist", "attention=txa", 3, [99.0], status="running",
                          attention="txa")
    with pytest.raises(ValueError, match="attention=txa-s3: not a run the ablation study records"):
        studies.load_study_runs(tmp_path, "cpu", registry=REGISTRY)  # named, never silently left out or averaged in
    import shutil

    shutil.rmtree(unfinished)

    gaps = studies.paper_gaps(runs)
    abl = gaps[gaps.study == "ablation"].iloc[0]
    assert abl.ours_mean == pytest.approx((4 + 3 + 2.5) / 3) and bool(abl.exceeds_noise) and abl.n_pairs == 3
    ts = gaps[gaps.study == "time_steps"].iloc[0]
    assert ts.ours_mean == pytest.approx(2.0) and ts.paper_low == pytest.approx(81.16 - 79.94)
    assert ts.exceeds_noise == "n/a"  # one seed: no verdict
    assert "dvs" not in set(gaps.study)  # no DTA run on DVS: no comparison

    summ = studies.study_summary(runs, "ablation")
    assert list(summ.attention) == ["dta", "txa"] and summ.iloc[0].seeds == "0,1,2"
    assert summ.iloc[0].best_test_acc == "62.00 +- 2.00"
    ts_summ = studies.study_summary(runs, "time_steps")
    assert list(ts_summ.time_steps) == [4, 6]
    with pytest.raises(ValueError, match="no runs of study 'missing'"):
        studies.study_summary(runs, "missing")
    for s, (a, b) in enumerate([(58.0, 59.0), (60.0, 60.5)]):  # a precision study: one row per precision
        make_run(tmp_path, "precision", "fashion-mnist", "precision=fp32", s, [a], precision="fp32")
        make_run(tmp_path, "precision", "fashion-mnist", "precision=bf16", s, [b], precision="bf16")
    p_summ = studies.study_summary(studies.load_study_runs(tmp_path, "cpu", registry=REGISTRY), "precision")
    assert list(p_summ.precision) == ["bf16", "fp32"] and list(p_summ.seeds) == ["0,1", "0,1"]

    # one train/test gap everywhere (notebook 08 and notebook 10): clean train accuracy of the final checkpoint minus
    # final test accuracy. Without it the report shows no gap, only the augmented running accuracy under its label
    # (train_acc 45 > test 40 here, so the old "final train minus final test" would have read as a 5-point gap).
    dvs_summ = studies.study_summary(runs, "dvs")
    assert "train_test_gap" not in dvs_summ.columns
    assert dvs_summ.iloc[0][AUGMENTED_TRAIN_LABEL] == "45.00"
    assert "train_test_gap" not in studies.study_summary(runs, "ablation").columns
    dvs_run = tmp_path / "dvs" / "fashion-mnist-dvs" / "attention=none-s0"
    (dvs_run / "clean_train.json").write_text(json.dumps({"clean_train_acc": 41.5, "checkpoint": "last.pt"}))
    report = studies.study_summary(studies.load_study_runs(tmp_path, "cpu", registry=REGISTRY), "dvs").iloc[0]
    nb08 = studies.dvs_table(studies.train_test_gaps(pd.DataFrame([load_run(dvs_run)])))
    assert report["train_test_gap"] == nb08.iloc[0]["train/test gap (points)"] == "1.50"

    line = studies.describe_runs(runs[runs.study == "ablation"])  # the report's provenance row of a study
    assert "seeds 0,1,2" in line and "6 run(s)" in line and "TestCPU" in line and line.endswith("git abcdef1234")
    assert f"total training wall time {6 * 33 / 60:.1f} min" in line

    for fig in (viz.plot_paper_gaps(gaps), viz.plot_ablation(runs[runs.study == "ablation"]),
                viz.plot_study(runs, "dvs")):
        assert len(fig.axes) >= 1
    assert studies.load_study_runs(tmp_path / "nothing").empty


def test_time_step_table():
    runs = pd.DataFrame({"time_steps": [2, 4, 4], "seed": [0, 0, 1], "best_test_acc": [50.0, 54.0, 56.0],
                         "train_seconds": [30.0, 60.0, 66.0], "epochs": [3, 3, 3]})
    mem = pd.DataFrame({"time_steps": [2, 4], "step_mib": [10.0, 20.0]})
    t = studies.time_step_table(runs, mem)
    assert list(t.time_steps) == [2, 4] and t.iloc[1].best_test_acc_mean == 55.0
    assert t.iloc[1].seconds_per_epoch == pytest.approx(21.0) and math.isnan(t.iloc[0].best_test_acc_std)
    assert list(t.step_mib) == [10.0, 20.0]
    assert len(viz.plot_time_steps(t).axes) == 3
    mem["step_cpu_s"] = [0.1, 0.2]
    assert len(viz.plot_time_steps(studies.time_step_table(runs, mem)).axes) == 4


def test_run_one_calls_back_per_epoch_and_matches_the_run(tmp_path):
    seen = []
    row = runs.run_one("live", "synthetic", "smoke", {"attention": "dta"}, 0, on_epoch=lambda h: seen.append(len(h)),
                        root=tmp_path, epochs=2, threads=1, progress=False)
    assert row["epochs"] == 2 and seen == [1, 2, 2]  # after each epoch, then the whole history once more
    hist = runs.read_history(row["run"])
    assert list(hist.epoch) == [1, 2] and hist.test_acc.iloc[-1] == row["final_test_acc"]
    # reused: one call back with the whole history, no training
    again = []
    runs.run_one("live", "synthetic", "smoke", {"attention": "dta"}, 0, on_epoch=again.append, root=tmp_path,
                  epochs=2, threads=1, progress=False)
    assert len(again) == 1 and len(again[0]) == 2
    with pytest.raises(ValueError, match="time_steps"):  # a bad config fails before anything starts
        runs.run_one("live", "synthetic", "smoke", {"time_steps": 0}, 0, root=tmp_path)


def test_strip_plots_are_deterministic_and_leave_numpy_rng_alone(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    for s, a in enumerate([58.0, 60.0, 61.0]):
        make_run(tmp_path, "ablation", "fashion-mnist", "attention=dta", s, [a], attention="dta")
    runs = studies.load_study_runs(tmp_path, "cpu", registry={"ablation": Study(
        "ablation", "fashion-mnist", ({"attention": "dta"},), {"*": (0, 1, 2)})})

    def points(fig):
        return np.concatenate([c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())])

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = points(viz.plot_study(runs, "ablation")), points(viz.plot_study(runs, "ablation"))
    assert np.array_equal(a, b) and np.ptp(a[:, 0]) > 0  # jittered, and the same jitter each time
    assert np.array_equal(np.random.get_state()[1], before)
    c, d = points(viz.plot_ablation(runs)), points(viz.plot_ablation(runs))
    assert np.array_equal(c, d)


def test_ablation_figure_is_paired_and_its_legend_sits_clear_of_the_panels():
    df = ablation_frame(noise=(0.4, -0.3, 0.0))
    fig = viz.plot_ablation(df, title="t")
    left, right = fig.axes
    # left: one line per seed through its three variants (seeds are paired across the attention variants)
    assert len([line for line in left.lines if line.get_linestyle() == "-" and len(line.get_xdata()) == 3]) == 3
    # right: per comparison (DTA - none, DTA - T-XA) the mean difference and 95 % t-interval of ablation_paired
    paired = studies.ablation_paired(df).set_index("attention")
    bars = [c for c in right.containers if c.has_yerr]
    assert len(bars) == 2
    for a, c in zip(["none", "txa"], bars):
        (x, lo), (_, hi) = c.lines[2][0].get_segments()[0]
        assert c.lines[0].get_ydata()[0] == pytest.approx(paired.loc[a, "diff_mean"])
        assert (lo, hi) == pytest.approx((paired.loc[a, "ci95_low"], paired.loc[a, "ci95_high"]))
    # the paper's CIFAR10 gap (T-XA / T-NA only vs DTA) as a band, for T-XA only here
    from matplotlib.collections import PolyCollection

    bands = [p.get_paths()[0].vertices[:, 1] for p in right.collections if isinstance(p, PolyCollection)]
    assert [(b.min(), b.max()) for b in bands] == [PAPER_ABLATION_GAP]
    # one legend, right of the panels, every glyph inside its frame
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = right.get_legend()
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    for handle in legend.legend_handles:
        h = handle.get_window_extent(renderer)
        assert box.x0 <= h.x0 and h.x1 <= box.x1 and box.y0 <= h.y0 and h.y1 <= box.y1


def test_time_step_costs_backbone_linear_in_t_and_tna_superlinear():
    from dta_lib.studies import time_step_costs

    none = time_step_costs("fashion-mnist", 0.0625, [1, 2, 4], attention="none").set_index("time_steps")
    # no attention: every layer runs T times, so dense MACs are exactly linear in T and parameters do not depend on T
    assert none.loc[2, "dense_macs"] == 2 * none.loc[1, "dense_macs"] and none.loc[4, "dense_macs"] == 4 * none.loc[1, "dense_macs"]
    assert none["parameters"].nunique() == 1 and (none["dta_parameters"] == 0).all() and (none["dta_macs"] == 0).all()
    dta = time_step_costs("fashion-mnist", 0.0625, [1, 2, 4]).set_index("time_steps")
    # the backbone is the same network: everything outside the DTA block matches the no-attention model
    assert ((dta["parameters"] - dta["dta_parameters"]) == none["parameters"]).all()
    assert ((dta["dense_macs"] - dta["dta_macs"]) == none["dense_macs"]).all()
    # T-NA's 1x1 convs on D = T*C channels: the block grows faster than T
    assert dta.loc[4, "dta_parameters"] > 2 * dta.loc[2, "dta_parameters"] > 2 * dta.loc[1, "dta_parameters"]
    assert dta.loc[4, "dta_macs"] > 2 * dta.loc[2, "dta_macs"]
    with pytest.raises(ValueError, match="time_steps"):
        time_step_costs("fashion-mnist", 0.0625, [0])


def test_interrupting_a_live_run_leaves_no_thread_no_lock_and_resumes_exactly(tmp_path):
    """The stop button of notebook 05's cell: KeyboardInterrupt from the callback, as from the kernel."""
    import threading

    from dta_lib.checkpoint import load_checkpoint
    from dta_lib.checkpoint import RunLock

    kw = dict(epochs=3, subset=64, test_subset=32, batch_size=16, width=0.0625, threads=1, precision="fp32",
              progress=False)
    before = set(threading.enumerate())

    def stop_after_first(history):
        if len(history) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.run_one("live", "synthetic", "smoke", {"attention": "dta"}, 0, on_epoch=stop_after_first,
                      root=tmp_path / "a", **kw)
    assert set(threading.enumerate()) <= before  # nothing left training in the background
    out = tmp_path / "a" / "smoke" / "live" / "synthetic" / "attention=dta-s0"
    RunLock(out).acquire().release()  # the lock is free
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    seen = []
    resumed = runs.run_one("live", "synthetic", "smoke", {"attention": "dta"}, 0,
                            on_epoch=lambda h: seen.append(len(h)), root=tmp_path / "a", **kw)
    assert seen == [2, 3, 3]  # resumed at epoch 2
    whole = runs.run_one("live", "synthetic", "smoke", {"attention": "dta"}, 0, root=tmp_path / "b", **kw)
    drop = ("seconds", "images_per_s")
    strip = lambda h: h.drop(columns=[c for c in drop if c in h]).to_dict("records")  # noqa: E731
    assert strip(runs.read_history(resumed["run"])) == strip(runs.read_history(whole["run"]))
    a, b = load_checkpoint(Path(resumed["run"]) / "last.pt"), load_checkpoint(Path(whole["run"]) / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
