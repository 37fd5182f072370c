"""Report helpers: run loading, mean +- std, paired differences, atomic tables."""
import json
import math

import pandas as pd
import pytest

from dta_lib.studies import (bonferroni_interval, exceeds_noise, format_mean_std, min_detectable_effect, paired_comparison,
                             t_critical, t_interval)
from dta_lib.runs import load_run, write_table


def test_bonferroni_interval_widens_the_t_interval_by_the_number_of_comparisons():
    # d = 1, 2, 3: mean 2, sd 1, n = 3. Two comparisons: each at 97.5 %, t_{0.9875, 2} = 6.2053 (tables) vs 4.3027
    lo, hi = bonferroni_interval(2.0, 1.0, 3, comparisons=2)
    assert lo == pytest.approx(2.0 - 6.2053 / math.sqrt(3), abs=1e-3) and hi == pytest.approx(2.0 + 6.2053 / math.sqrt(3), abs=1e-3)
    plain_lo, plain_hi = t_interval(2.0, 1.0, 3)
    assert lo < plain_lo and hi > plain_hi  # wider: plain [-0.48, 4.48] excludes nothing here, corrected [-1.58, 5.58]
    assert bonferroni_interval(2.0, 1.0, 3, comparisons=1) == pytest.approx((plain_lo, plain_hi))
    # the case of notebook 09 at study-10k (gamma 1 - 2: 1.32 +- 0.40 over 3 seeds): 95 % excludes 0, corrected not
    assert t_interval(1.32, 0.4045, 3)[0] > 0 and bonferroni_interval(1.32, 0.4045, 3, 2)[0] < 0
    assert all(math.isnan(v) for v in bonferroni_interval(1.0, math.nan, 1, 2))  # one pair: no interval
    with pytest.raises(ValueError, match="comparisons"):
        bonferroni_interval(2.0, 1.0, 3, comparisons=0)


def make_run(path, attention, seed, accs, train_accs=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"attention": attention, "seed": seed, "dataset": "cifar10",
                                                  "time_steps": 6}))
    lines = [json.dumps({"epoch": i + 1, "test_acc": a, "train_acc": (train_accs or accs)[i], "train_loss": 1.0,
                         "seconds": 2.0}) for i, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_load_and_pair(tmp_path):
    make_run(tmp_path / "a0", "dta", 0, [50.0, 60.0, 58.0], [55.0, 70.0, 80.0])
    make_run(tmp_path / "a1", "dta", 1, [52.0, 62.0])
    make_run(tmp_path / "b0", "none", 0, [49.0, 57.0])
    make_run(tmp_path / "b1", "none", 1, [50.0, 59.0])
    df = pd.DataFrame([load_run(tmp_path / name) for name in ("a0", "a1", "b0", "b1")])
    assert len(df) == 4
    row = df[df.run.str.endswith("a0")].iloc[0]
    assert row.best_test_acc == 60.0 and row.final_test_acc == 58.0 and row.epochs == 3
    assert row.train_seconds == 6.0 and row.final_train_acc == 80.0
    # the augmented running train accuracy (80) is not a train accuracy: no gap without the clean one
    assert math.isnan(row.clean_train_acc) and math.isnan(row.train_test_gap)
    (tmp_path / "a0" / "clean_train.json").write_text(json.dumps({"clean_train_acc": 63.5, "checkpoint": "last.pt"}))
    row = load_run(tmp_path / "a0")
    assert row["clean_train_acc"] == 63.5 and row["train_test_gap"] == pytest.approx(63.5 - 58.0)
    d = paired_comparison(df, "attention", "dta").iloc[0]
    assert d.attention == "none" and d.diff_mean == 3.0 and d.diff_std == 0.0 and d.n_pairs == 2
    assert d.verdict.startswith("dta - none (best_test_acc): +3.00 points (mean of 2 per-seed differences")
    assert exceeds_noise(3.0, 0.5, 3) and not exceeds_noise(0.3, 1.0, 3)
    assert exceeds_noise(5.0, math.nan, 1) is None and exceeds_noise(5.0, 1.0, 1) is None  # one seed: n/a
    # n = 3: "2 standard errors" would call 1.0 +- 0.8 a difference (2 x 0.46 = 0.92 < 1); the t interval does not
    assert 2 * 0.8 / math.sqrt(3) < 1.0 and exceeds_noise(1.0, 0.8, 3) is False
    assert t_critical(3) == pytest.approx(4.303, abs=1e-3) and t_critical(5) == pytest.approx(2.776, abs=1e-3)
    lo, hi = t_interval(1.0, 0.8, 3)
    assert lo == pytest.approx(1.0 - 4.303 * 0.8 / math.sqrt(3), abs=1e-3) and hi == pytest.approx(2.0 - lo)
    # 80 % power at 95 %: (t_0.975 + t_0.8) std / sqrt(n); with std 1 and n = 5 about 1.76 points
    assert min_detectable_effect(1.0, 5) == pytest.approx((2.776 + 0.941) / math.sqrt(5), abs=2e-3)
    with pytest.raises(ValueError, match="at least 2 paired differences"):
        t_critical(1)
    assert format_mean_std(91.234, 0.456) == "91.23 +- 0.46" and format_mean_std(1.0, math.nan) == "1.00"


def test_paper_results_and_tables(tmp_path):
    from dta_lib.studies import PAPER_RESULTS

    t = PAPER_RESULTS
    assert t[(t.dataset == "cifar10") & (t.attention == "dta")].iloc[0].paper_top1 == 96.73
    csv, md = write_table(t, tmp_path / "out" / "table", caption="Paper vs ours")
    assert csv.read_text().startswith("dataset,") and md.read_text().startswith("Paper vs ours")
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_bad_run_folders(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="metrics.jsonl is empty"):
        load_run(tmp_path / "r")


def test_mean_std_table_orders_rows_and_counts_seeds():
    from dta_lib.studies import mean_std_table, paired_comparison

    df = pd.DataFrame({"attention": ["dta", "dta", "none", "none", "txa"], "seed": [0, 1, 0, 1, 0],
                       "best_test_acc": [60.0, 62.0, 50.0, 54.0, 55.0]})
    t = mean_std_table(df, "attention", {"best (%)": "best_test_acc"}, order=["none", "txa", "dta"])
    assert list(t.index) == ["none", "txa", "dta"] and list(t["seeds"]) == [2, 1, 2]
    assert t.loc["dta", "best (%)"] == "61.00 +- 1.41" and t.loc["txa", "best (%)"] == "55.00"  # one seed: no std
    with pytest.raises(ValueError, match="lacks columns"):
        mean_std_table(df, "attention", {"x": "final_test_acc"})
    v = paired_comparison(df, "attention", "dta").set_index("attention")
    assert v.loc["none", "diff_mean"] == pytest.approx(9.0) and v.loc["txa", "exceeds seed noise"] is None
    assert "cannot be estimated" in v.loc["txa", "verdict"] and (v["comparisons"] == 2).all()
    assert paired_comparison(df[df.attention == "dta"], "attention", "dta").empty  # nothing to compare with


def test_a_confidence_level_outside_0_1_is_refused():
    from dta_lib.studies import exceeds_noise, t_interval

    for call in (lambda: exceeds_noise(1.0, 0.1, 3, level=95), lambda: t_interval(1.0, 0.1, 3, level=1.5)):
        with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
            call()
