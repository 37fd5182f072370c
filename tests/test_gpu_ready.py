"""GPU-ready without a GPU: the precision policy per compute capability, fp16 skipped steps, DDP world sizes,
and the GPU check without a GPU. The Triton fallbacks are in tests/test_snn_kernels.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dta_lib.train import make_config
from dta_lib.train import resolve_device, resolve_precision
from dta_lib.distributed import DistInfo

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("capability, expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_on_cuda_is_native_bf16_else_fp16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # emulation counts
    cuda = torch.device("cuda")
    assert resolve_precision(make_config("synthetic", "smoke", precision="auto"), cuda) == expected
    assert resolve_precision(make_config("synthetic", "smoke", precision="fp16"), cuda) == torch.float16
    bf16 = make_config("synthetic", "smoke", precision="bf16")
    if expected == torch.bfloat16:
        assert resolve_precision(bf16, cuda) == torch.bfloat16
    else:
        with pytest.raises(ValueError, match=rf"not native on this GPU \(compute capability {capability[0]}\.{capability[1]}"):
            resolve_precision(bf16, cuda)


def test_fp16_skips_non_finite_steps_and_stops_after_many_in_a_row():
    from dta_lib.train import NonFiniteLossError
    from dta_lib.train import CHECK_EVERY, MAX_SKIPPED_STEPS, count_skips

    scaler = SimpleNamespace(get_scale=lambda: 2.0**-10)
    inf, ok = torch.tensor(float("inf")), torch.tensor(1.0)
    skips, step = torch.zeros((), dtype=torch.int64), 0
    for _ in range(MAX_SKIPPED_STEPS - 1):  # skipped steps, as GradScaler intends
        step += 1
        skips = count_skips(skips, inf, scaler, DistInfo(), 1, step, False)
    step += 1
    skips = count_skips(skips, ok, scaler, DistInfo(), 1, step, False)  # one good step resets the count
    assert int(skips) == 0
    with pytest.raises(NonFiniteLossError, match=rf"NaN or inf in {MAX_SKIPPED_STEPS} consecutive steps"):
        for _ in range(MAX_SKIPPED_STEPS + CHECK_EVERY):
            step += 1
            skips = count_skips(skips, inf, scaler, DistInfo(), 1, step, False)


def test_a_fixed_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    info = DistInfo(enabled=True, rank=1, local_rank=1, world_size=2)
    with pytest.raises(ValueError, match=r"device='cuda:0' under torchrun would put all 2 processes on GPU 0"):
        resolve_device(make_config("synthetic", "smoke", device="cuda:0"), info)
    assert resolve_device(make_config("synthetic", "smoke", device="cuda"), info) == torch.device("cuda", 1)


def test_resuming_with_another_world_size_is_refused_naming_both(tmp_path, one_thread):
    from conftest import train_until

    from dta_lib.train import train
    from dta_lib.checkpoint import load_checkpoint, save_checkpoint

    cfg = make_config("synthetic", "smoke", subset=64, test_subset=32, epochs=2, batch_size=16, width=0.0625,
                      threads=1, precision="fp32", progress=False)
    train_until(cfg, tmp_path / "run", epoch=1)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    state.update(world_size=2, rng=[state["rng"][0], state["rng"][0]])  # as a 2-process run writes it
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\) and this run has 1; .*--nproc_per_node 2"):
        train(cfg, out=tmp_path / "run", resume=True)


def test_gpu_check_without_a_gpu_exits_2_with_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the check would run")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PY=sys.executable, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["gpu_check: no CUDA GPU visible to torch; nothing measured"]


def test_gpu_check_commands_are_valid_here(tmp_path):
    """The script's own command lines, read from it: the training options make a valid config in each precision, and
    the bench options run here with the device swapped for the CPU (at --quick sizes)."""
    import shlex

    from dta_lib import bench
    from dta_lib.__main__ import build_parser
    from dta_lib.train import make_config

    script = (ROOT / "scripts" / "gpu_check.sh").read_text().replace("\\\n", " ")
    lines = {m: next(ln for ln in script.splitlines() if f'"$PY" -m {m} ' in ln) for m in ("dta_lib", "dta_lib.bench")}
    args = {m: shlex.split(ln.split(f'"$PY" -m {m} ')[1].split(" ||")[0]) for m, ln in lines.items()}
    for precision in ("bf16", "fp16"):
        a = build_parser().parse_args([s.replace("$precision", precision) for s in args["dta_lib"]])
        overrides = {k: v for k, v in vars(a).items() if k not in ("command", "dataset", "preset", "_run", "out",
                                                                    "no_save", "resume", "lr_scale")}
        cfg = make_config(a.dataset, a.preset, **overrides)
        assert (a.command, cfg.device, cfg.precision, cfg.channels_last) == ("train", "cuda", precision, True)
    b = [s for s in args["dta_lib.bench"] if s not in ("--device", "cuda", "reports/bench")]
    assert bench.main([*b, str(tmp_path), "--device", "cpu", "--quick", "--repeats", "1", "--precision", "fp32"]) == 0
    assert (tmp_path / "bench_gpu_check.json").is_file()


def test_resuming_in_another_precision_is_refused_naming_both(tmp_path, one_thread, monkeypatch):
    from conftest import train_until

    import dta_lib.train as T
    from dta_lib.train import train

    cfg = make_config("synthetic", "smoke", subset=64, test_subset=32, epochs=2, batch_size=16, width=0.0625,
                      threads=1, precision="fp32", progress=False)
    train_until(cfg, tmp_path / "run", epoch=1)
    # as precision="auto" resolves on other hardware (an fp16 V100 run resumed on an A100, say)
    monkeypatch.setattr(T, "resolve_precision", lambda c, d: torch.bfloat16)
    with pytest.raises(ValueError, match=r"it trained in fp32 and this run would train in bfloat16"):
        train(cfg, out=tmp_path / "run", resume=True)
