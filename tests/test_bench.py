"""The benchmark machinery (smoke sizes; speed is never asserted here)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

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


def test_quick_run_writes_json_and_figure(tmp_path, capsys):
    assert bench.main(["--quick", "--repeats", "1", "--device", "cpu", "--precision", "fp32", "--lif-T", "3",
                       "--out", str(tmp_path), "--tag", "t"]) == 0
    data = json.loads((tmp_path / "bench_t.json").read_text())
    assert (tmp_path / "bench_t.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    assert data["meta"]["quick"] and data["meta"]["torch"] == torch.__version__ and data["meta"]["threads"] >= 1
    lif = {r["impl"]: r for r in data["lif"]}
    # the compiled release loop is always an opponent; spikingjelly joins when it is installed (never required)
    assert {"release", "release+compile", "dta_lib"} <= set(lif) <= {"release", "release+compile", "dta_lib",
                                                                      "spikingjelly", "spikingjelly+compile"}
    # the library's kernel computes the release's function exactly; a compiled peer is checked, not trusted (under
    # ATEN_CPU_CAPABILITY=avx2, CI's second pass, torch 2.14's inductor returns NaN spikes for the release loop)
    assert lif["dta_lib"]["spikes_identical"] and lif["release"]["spikes_identical"]
    assert all(r["spikes_identical"] == (r["spike_mismatches"] == 0) for r in lif.values())
    assert lif["dta_lib"]["median_s"] > 0 and lif["release"]["speedup_vs_release"] == 1.0
    assert lif["release+compile"]["speedup_vs_compiled_release"] == 1.0
    assert set(data) == {"meta", "lif"} and capsys.readouterr().out.strip() == bench.summary(data)
    assert "LIF" in bench.summary(data)


def test_recorded_files_with_training_rows_still_load_and_render(tmp_path):
    """The fp32 files of reports/bench/ hold rows of the paper-width step race that was removed: their LIF part
    renders."""
    res = bench.load_result(Path(__file__).resolve().parent.parent / "reports/bench/bench_cpu_fp32_2threads.json")
    assert res["train"] and bench.summary(res).splitlines()[0].startswith("LIF   dta_lib")
    bench.plot(res, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_bad_arguments(capsys):
    with pytest.raises(ValueError, match="precision"):
        bench.bench_lif((2,), (1, 2), precisions=("fp8",), repeats=1)
    for argv, says in ((["--repeats", "0"], "must be >= 1, got 0"),
                       (["--epoch", "--device", "cuda"], "--epoch races the CPU study size; got --device cuda")):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(says)


def test_step_cost_grows_with_time_steps():
    from dta_lib.train import make_config

    threads = torch.get_num_threads()
    cost = {t: bench.step_cost(make_config("synthetic", "smoke", time_steps=t, threads=1, batch_size=16))
            for t in (2, 8)}
    assert cost[8]["step_cpu_s"] > cost[2]["step_cpu_s"] > 0 and cost[2]["time_steps"] == 2
    assert cost[8]["step_mib"] > 2 * cost[2]["step_mib"] > 0  # BPTT keeps every step's activations
    # the allocator's peak repeats to within about 1 %, and the caller's thread count is left as it was
    again = bench.step_cost(make_config("synthetic", "smoke", time_steps=2, threads=1, batch_size=16))
    assert again["step_mib"] == pytest.approx(cost[2]["step_mib"], rel=0.02) and torch.get_num_threads() == threads


def test_conv_step_runs_every_convolution_call_once():
    from dta_lib.models.ms_resnet import ms_resnet18

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    run, calls = bench.conv_step(net, torch.randn(2, 3, 8, 8))
    run()
    assert calls == 2 and all(p.grad is None for p in net.parameters())  # grads are returned, never accumulated
    # ms_resnet18: stem once (static image), 2 Conv1d in T-XA, 5 Conv2d in T-NA, 16 in the 8 blocks, 3 shortcuts
    m = ms_resnet18(10, 2, "dta", width=1 / 16)
    assert bench.conv_step(m, torch.randn(2, 3, 8, 8))[1] == 1 + 2 + 5 + 16 + 3


def test_conv_step_replays_each_convolution_in_the_precision_the_model_ran_it():
    from dta_lib.models.ms_resnet import ms_resnet18

    m = ms_resnet18(10, 2, "dta", width=1 / 16)
    run, _ = bench.conv_step(m, torch.randn(2, 3, 8, 8), "bf16")
    seen: dict[str, torch.dtype] = {}

    def note(name: str, _mod: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        seen.setdefault(name, out.dtype)

    hooks = [mod.register_forward_hook(functools.partial(note, name))
             for name, mod in m.named_modules() if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d))]
    run()
    for h in hooks:
        h.remove()
    fp32 = {k for k, v in seen.items() if v == torch.float32}  # LTCA's depthwise convs: fp32 under CPU autocast
    assert fp32 == {"dta.tna.ltca.depthwise", "dta.tna.ltca.dilated"} and seen["stem_conv"] == torch.bfloat16


def test_step_profile_counts_a_compiled_graph_as_one_whatever_its_hash_spells():
    def step() -> None:  # a compiled graph's event: a random hash that here spells "sgd" and "conv"
        with torch.profiler.record_function("## Call CompiledFxGraph fsgdconvab ##"):
            torch.ones(256, 256).sum()

    out = bench.step_profile(step, steps=1)
    assert out["compiled graph"] > 0 and out["optimizer"] == out["convolution"] == 0


def test_default_precisions_follow_native_bf16(monkeypatch, tmp_path):
    from dta_lib import train as precision

    raced = []
    monkeypatch.setattr(bench, "bench_lif", lambda t, shape, precisions, *a: raced.append(list(precisions)) or [])
    for native in (False, True):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
        bench.main(["--device", "cpu", "--out", str(tmp_path)])
    assert raced == [["fp32"], ["fp32", "bf16"]]


def test_relative_out_dir_holds_both_files(tmp_path, monkeypatch):
    """A relative ``out_dir`` is the working folder's, for the figure as for the JSON (not the output root's)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path / "elsewhere"))
    bench.main(["--quick", "--repeats", "1", "--device", "cpu", "--precision", "fp32", "--lif-T", "2", "--out", "rel"])
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["bench_cpu.json", "bench_cpu.png"]
    assert not (tmp_path / "elsewhere").exists()


def test_epoch_race_quick_writes_json_and_figure(tmp_path):
    bench.main(["--epoch", "--quick", "--repeats", "1", "--device", "cpu", "--precision", "fp32",
                "--out", str(tmp_path), "--tag", "t"])
    res = data = json.loads((tmp_path / "bench_epoch_t.json").read_text())
    assert (tmp_path / "bench_epoch_t.png").stat().st_size > 1000 and not list(tmp_path.glob(".*"))
    rows = {(r["impl"], r["precision"]): r for r in data["epoch"]}
    # the release always runs; only fp32 candidates were asked for, compiled ones included
    assert ("release", "fp32") in rows and {p for _, p in rows} == {"fp32"}
    assert ("dta_lib+channels_last+compile", "fp32") in rows and len(rows) == 9
    # the convolutions-only floor is raced with them; every row carries the cap it implies
    floor = rows[(bench.CONV_FLOOR, "fp32")]
    assert floor["peak_added_bytes_per_step"] is None and floor["conv_share"] == 1.0
    best = min(r["median_s"] for (i, _), r in rows.items() if i.startswith("release"))
    assert all(r["speedup_cap_vs_best_release_same_precision"] == best / floor["median_s"] for r in rows.values())
    assert ("release+channels_last+compile", "fp32") in rows  # the tuned release is an opponent too
    assert rows[("release", "fp32")]["speedup_vs_release_fp32"] == 1.0
    # the fastest release set-up is the yardstick of its precision: exactly 1.0 for it, <= 1.0 for the other releases
    release_best = [r["speedup_vs_best_release_same_precision"] for (i, _), r in rows.items() if i.startswith("release")]
    assert max(release_best) == 1.0
    assert all(r["peak_added_bytes_per_step"] > 0 for (i, _), r in rows.items() if i != bench.CONV_FLOOR)
    assert all(r["images"] == 16 and r["median_s"] > 0 and len(r["times_s"]) == 1 for r in rows.values())
    assert rows[("dta_lib", "fp32")]["max_abs_logit_diff_fp32"] < 1e-4  # same weights, same function
    assert "release fp32" in bench.epoch_summary(res) and "the convolutions alone take" in bench.epoch_summary(res)
    # the fastest set-up of each side is profiled: its step's time split into groups, convolutions among them
    profiled = [r for r in rows.values() if r.get("profile")]
    assert sorted(r["impl"].split("+")[0] for r in profiled) == ["dta_lib", "release"]
    for r in profiled:
        assert r["median_s"] == min(o["median_s"] for o in rows.values() if o["impl"].split("+")[0] == r["impl"].split("+")[0])
        assert set(r["profile"]) == {g for g, _ in bench.PROFILE_GROUPS} | {"other"}
        assert r["profile"]["convolution"] > 0 and all(v >= 0 for v in r["profile"].values())
    assert "profile of one step, " in bench.epoch_summary(res)
    with pytest.raises(ValueError, match="images >= batch"):
        bench.bench_epoch(images=4, batch=8)
