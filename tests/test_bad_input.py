"""Bad input never becomes a silent result: each case a careful user tried, kept fixed (the bad ones first)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dta_lib.train import make_config
from dta_lib.studies import load_study_runs
from dta_lib.runs import STUDIES

ROOT = Path(__file__).resolve().parent.parent
CPU_RUNS = ROOT / "reports" / "runs" / "cpu"
ABLATION = Path("ablation") / "fashion-mnist"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@pytest.fixture
def cpu_runs(tmp_path) -> Path:
    """A copy of the committed cpu runs (without checkpoints) to break."""
    dst = tmp_path / "runs" / "cpu"
    shutil.copytree(CPU_RUNS, dst, ignore=shutil.ignore_patterns("*.pt"))
    return dst


# ---------------------------------------------------------------------------- bad: the report's runs
def test_the_report_loads_exactly_the_registered_runs(cpu_runs):
    runs = load_study_runs(cpu_runs)
    assert len(runs) == 32 and (runs.groupby("study").size().to_dict() == {
        "ablation": 12, "dvs": 4, "energy": 2, "precision": 6, "surrogate_width": 3, "time_steps": 4, "train": 1})


def test_a_run_without_metrics_is_named_not_dropped(cpu_runs):
    (cpu_runs / ABLATION / "attention=dta-s1" / "metrics.jsonl").unlink()
    with pytest.raises(ValueError, match=r"attention=dta-s1: unreadable .*no metrics.jsonl.*campaign ablation --preset cpu"):
        load_study_runs(cpu_runs)
    shutil.rmtree(cpu_runs / ABLATION / "attention=dta-s1")
    with pytest.raises(ValueError, match=r"attention=dta-s1: missing \(the ablation study records 12 runs at preset cpu\)"):
        load_study_runs(cpu_runs)


def test_a_copied_run_is_named_not_averaged(cpu_runs):
    shutil.copytree(cpu_runs / ABLATION / "attention=dta-s0", cpu_runs / ABLATION / "attention=dta-s0 copy")
    with pytest.raises(ValueError, match=r"attention=dta-s0 copy: not a run the ablation study records"):
        load_study_runs(cpu_runs)
    shutil.rmtree(cpu_runs / ABLATION / "attention=dta-s0 copy")
    (cpu_runs / ABLATION / ".ipynb_checkpoints").mkdir()  # hidden folders are not runs
    energy = cpu_runs / "energy" / "fashion-mnist" / "attention=dta-s0"
    shutil.rmtree(energy)  # energy runs stand in only for models no other study recorded: partial is fine
    assert len(load_study_runs(cpu_runs)) == 31
    shutil.copytree(cpu_runs / "time_steps" / "fashion-mnist" / "attention=dta,time_steps=4-s0",
                    tmp := cpu_runs.parent / "study-10k" / "time_steps" / "fashion-mnist" / "attention=dta,time_steps=4-s0")
    with pytest.raises(ValueError, match=r"time_steps=4-s0: its config.json is .* of preset 'cpu'"):  # from another preset
        load_study_runs(tmp.parent.parent.parent, "study-10k", registry={"time_steps": STUDIES["time_steps"].__class__(
            "time_steps", "fashion-mnist", ({"attention": "dta", "time_steps": 4},), {"*": (0,)})})


def test_a_run_whose_config_is_not_its_folder_name_is_named(cpu_runs):
    run = cpu_runs / ABLATION / "attention=dta-s2"
    shutil.rmtree(run)
    shutil.copytree(cpu_runs / ABLATION / "attention=dta-s0", run)  # seed 0's run under seed 2's name
    with pytest.raises(ValueError, match=r"attention=dta-s2: its config.json is attention=dta-s0 of preset 'cpu'"):
        load_study_runs(cpu_runs)


def test_an_unfinished_run_is_named(cpu_runs):
    meta = cpu_runs / ABLATION / "attention=none-s0" / "run.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "status": "running"}))
    with pytest.raises(ValueError, match=r"attention=none-s0: not finished \(run.json status 'running'\)"):
        load_study_runs(cpu_runs)


@pytest.mark.slow
@pytest.mark.process
def test_notebook_10_fails_naming_a_missing_run(cpu_runs, tmp_path):
    import papermill as pm

    (cpu_runs / ABLATION / "attention=dta-s1" / "metrics.jsonl").unlink()
    env = {"DTA_OUTPUT_DIR": str(tmp_path)}  # the report reads runs/cpu under the output root first
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with pytest.raises(pm.PapermillExecutionError, match=r"attention=dta-s1: unreadable"):
            pm.execute_notebook(str(ROOT / "notebooks" / "10_report.ipynb"), str(tmp_path / "10.ipynb"),
                                cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert not list((tmp_path / "tables").glob("10_*")) if (tmp_path / "tables").exists() else True


# ---------------------------------------------------------------------------- bad: seeds
def test_seeds_the_generators_would_reduce_are_refused():
    make_config("synthetic", "smoke", seed=2**32 - 1)
    with pytest.raises(ValueError, match=r"seed must be an integer in 0..4294967295 .*got 4294967296"):
        make_config("synthetic", "smoke", seed=2**32)
    r = subprocess.run([sys.executable, "-m", "dta_lib", "train", "--dataset", "synthetic", "--preset", "smoke",
                        "--seed", "4294967296", "--out", "/nonexistent/never-created"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: seed must be an integer in 0..4294967295")


# ---------------------------------------------------------------------------- bad: NaN inputs
def test_evaluation_counts_nonfinite_samples(one_thread):
    from dta_lib import ms_resnet18
    from dta_lib.train import evaluate_model

    torch.manual_seed(0)
    model = ms_resnet18(num_classes=10, time_steps=2, in_channels=1, width=0.0625).eval()
    x = torch.rand(8, 1, 16, 16)
    x[1, 0, 3, 3] = float("nan")
    x[5] = float("inf")
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    with pytest.warns(UserWarning, match=r"2 of 8 test samples have NaN or inf"):
        rec = evaluate_model(model, loader, torch.device("cpu"))
    assert rec["nonfinite_samples"] == 2 and rec["test_samples"] == 8
    clean = DataLoader(TensorDataset(torch.rand(4, 1, 16, 16), torch.zeros(4, dtype=torch.long)), batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "nonfinite_samples" not in evaluate_model(model, clean, torch.device("cpu"))


# ---------------------------------------------------------------------------- poor cases: one clear line each
def test_a_data_root_without_the_dataset_is_named(tmp_path, monkeypatch):
    from dta_lib.data.fashion import DEBIAN_FASHION_MNIST, find_fashion_mnist

    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist as the fallback")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")  # only a test file: not the dataset
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path))
    with pytest.warns(UserWarning, match=rf"\$DTA_DATA_ROOT='{tmp_path}' does not hold fashion-mnist .*; using "):
        assert find_fashion_mnist() == DEBIAN_FASHION_MNIST


def _emulated(tmp_path: Path):
    from dta_lib.data.emulator import EmulatorConfig, emulate_cached

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 12, 12), dtype=np.uint8))
    return lambda: emulate_cached(images, EmulatorConfig(), cache=tmp_path, progress=False)


def test_a_corrupt_emulator_cache_is_named_and_rebuilt(tmp_path):
    build = _emulated(tmp_path)
    events, offsets = build()
    (ev_path,) = tmp_path.glob("*.events.npy")
    ev_path.write_bytes(ev_path.read_bytes()[: ev_path.stat().st_size // 2])  # a torn copy
    with pytest.warns(UserWarning, match=rf"emulator cache {ev_path} is corrupt .*; rebuilding it"):
        again, again_offsets = build()
    assert np.array_equal(np.asarray(again), np.asarray(events)) and np.array_equal(again_offsets, offsets)
    (off_path,) = tmp_path.glob("*.offsets.npy")
    np.save(off_path, offsets[:-1])  # offsets of another image count
    with pytest.warns(UserWarning, match=r"does not index 3 images"):
        build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build()  # rebuilt: read back silently


def test_temp_files_of_interrupted_cache_writes_are_removed(tmp_path):
    build = _emulated(tmp_path)
    build()
    events = next(tmp_path.glob("*.events.npy"))
    key = events.name.split(".")[0]
    events.unlink()  # a write that a kill interrupted: the entry is incomplete and its temp file is left
    stale = tmp_path / f".{key}.events.npy.abc123.tmp"
    stale.write_bytes(b"x" * 100)
    build()
    assert not stale.exists() and events.is_file()


def test_notebook_parameters_of_the_wrong_type_are_named():
    from dta_lib.nbsetup import check_parameters

    nb = ROOT / "notebooks" / "06_ablation.ipynb"
    for value in (12, "abc", [0, "x"]):
        with pytest.raises(ValueError, match=r"parameter SEEDS=.*: expected None or a list of int"):
            check_parameters(nb, {"SEEDS": value})
    check_parameters(nb, {"SEEDS": None, "VARIANTS": ["dta"], "REUSE": False, "THREADS": 2})
    with pytest.raises(ValueError, match=r"parameter THREADS=True \(bool\): expected a int"):
        check_parameters(nb, {"THREADS": True})


@pytest.mark.process
def test_reproduce_refuses_an_output_root_that_is_a_file(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("")
    r = subprocess.run([sys.executable, "-m", "dta_lib.reproduce", "--preset", "smoke", "--notebooks", "10"],
                       env={**_env(), "DTA_OUTPUT_DIR": str(target)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and f"error: the reports folder ($DTA_OUTPUT_DIR) {target} is a file" in r.stderr


def test_a_torn_metrics_line_is_named_not_blamed_on_the_config(tmp_path, monkeypatch):
    from dta_lib.runs import run_dir, run_one

    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path))
    kw = dict(epochs=1, subset=32, test_subset=32, batch_size=16, width=0.0625, threads=1, precision="fp32",
              progress=False)
    run_one("tiny", "synthetic", "smoke", {"attention": "none"}, 0, **kw)
    out = run_dir("tiny", make_config("synthetic", "smoke", seed=0, attention="none", **kw), {"attention": "none"})
    (out / "last.pt").unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "te')  # a write cut by a kill
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON record .*has no last.pt to rebuild"):
        run_one("tiny", "synthetic", "smoke", {"attention": "none"}, 0, **{**kw, "epochs": 2})


def test_an_interrupted_run_without_a_folder_does_not_speak_of_resume(tmp_path):
    code = ("import os, signal, sys, dta_lib.train as tr\n"
            "def stop(*a, **k): os.kill(os.getpid(), signal.SIGTERM)\n"
            "tr.train = stop\n"
            "from dta_lib.__main__ import main\n"
            "sys.exit(main(['train', '--dataset', 'synthetic', '--preset', 'smoke', '--no-save']))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "error: interrupted (SIGINT/SIGTERM)"


def test_half_precision_input_to_a_float_model_is_named():
    from dta_lib import ms_resnet18

    model = ms_resnet18(num_classes=10, time_steps=2, in_channels=1, width=0.0625).eval()
    with pytest.raises(ValueError, match=r"input dtype torch.float16 does not match the model's torch.float32"):
        model(torch.rand(1, 1, 16, 16, dtype=torch.float16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(1, 1, 16, 16))  # autocast: the model casts for itself


def test_train_help_says_what_auto_precision_does_on_a_cpu():
    r = subprocess.run([sys.executable, "-m", "dta_lib", "train", "--help"], env=_env(), capture_output=True,
                       text=True, timeout=300)
    text = " ".join(r.stdout.split())
    assert "bf16 autocast where it has bf16 instructions (AVX512-BF16 or AMX), else fp32" in text
