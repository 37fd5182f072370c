"""The benchmark machinery (smoke sizes; speed is never asserted here)."""
from __future__ import annotations

import json

import pytest
import torch

from dta_lib import bench


def test_peak_added_bytes_sees_a_known_allocation():
    def alloc():
        a = torch.ones(1 << 20)  # 4 MiB
        b = a * 2  # +4 MiB while a is alive
        return float(b[0])

    peak = bench.peak_added_bytes(alloc, torch.device("cpu"))
    assert 8 << 20 <= peak < 16 << 20


def test_race_interleaves_and_validates():
    calls = []
    times = bench.race({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 2, torch.device("cpu"))
    assert calls == ["a", "b"] * 3 and all(len(v) == 2 for v in times.values())
    with pytest.raises(ValueError, match="repeats"):
        bench.race({"a": lambda: None}, 0, torch.device("cpu"))


def test_quick_run_writes_json_and_figure(tmp_path):
    res = bench.run_bench(quick=True, repeats=1, out_dir=tmp_path, precisions=("fp32",), lif_time_steps=(3,), tag="t")
    data = json.loads((tmp_path / "bench_t.json").read_text())
    assert (tmp_path / "bench_t.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    assert data["meta"]["quick"] and data["meta"]["torch"] == torch.__version__ and data["meta"]["threads"] >= 1
    lif = {r["impl"]: r for r in data["lif"]}
    assert set(lif) == {"release", "dta_lib"} and lif["dta_lib"]["spikes_identical"]
    assert lif["dta_lib"]["median_s"] > 0 and lif["release"]["speedup_vs_release"] == 1.0
    train = {r["impl"]: r for r in data["train"]}
    assert set(train) == {"loop", "dta_lib"}  # smoke width: the baseline is the loop backend
    assert train["dta_lib"]["max_abs_logit_diff_fp32"] < 1e-4
    assert train["dta_lib"]["peak_added_bytes"] > 0 and train["loop"]["images_per_s"] > 0
    assert "LIF" in bench.summary(res)


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        bench.bench_lif((2,), (1, 2), precisions=("fp8",), repeats=1)
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
