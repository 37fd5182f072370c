"""dta_lib.distributed: torchrun environment, digests, sharding, and a 2-process gloo DDP run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dta_lib import ms_resnet18
from dta_lib.checkpoint import load_checkpoint
from dta_lib.distributed import DistInfo, detect, gather_objects, param_digest

ROOT = Path(__file__).resolve().parent.parent


def test_detect_single_process(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert detect() == DistInfo(0, 1, 0, False) and detect().is_main


def test_detect_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = detect()
    assert (info.rank, info.world_size, info.local_rank, info.enabled, info.is_main) == (1, 2, 1, True, False)


@pytest.mark.parametrize("rank, world, match", [("x", "2", "RANK must be an integer"), ("2", "2", "inconsistent")])
def test_detect_rejects_bad_environment(monkeypatch, rank, world, match):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ValueError, match=match):
        detect()


def test_param_digest_detects_a_one_bit_change():
    torch.manual_seed(0)
    a = ms_resnet18(4, 2, "dta", 1, 0.0625)
    torch.manual_seed(0)
    b = ms_resnet18(4, 2, "dta", 1, 0.0625)
    assert param_digest(a) == param_digest(b) == gather_objects(param_digest(a), DistInfo())[0]
    with torch.no_grad():
        w = b.fc.weight.view(-1)
        w[0] = torch.nextafter(w[0], torch.tensor(1.0))
    assert param_digest(a) != param_digest(b)


@pytest.mark.slow
@pytest.mark.process
def test_two_process_gloo_ddp_smoke_run(tmp_path):
    """torchrun, 2 CPU processes (gloo); identical parameters on both ranks; rank 0 writes."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = Path(shutil.which("torchrun") or "torchrun")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "dta_lib", "train", "--dataset", "synthetic",
           "--preset", "smoke", "--subset", "128", "--test-subset", "64", "--epochs", "2", "--no-progress",
           "--record-grad-norms", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # only rank 0 prints the result and writes files
    assert len([line for line in r.stdout.splitlines() if line.startswith('{"best_acc"')]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["hardware"]["world_size"] == 2 and meta["status"] == "completed"
    digests = meta["param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] and meta["ranks_in_sync"] is True
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # metrics are reduced over both ranks: each rank trains on half of the 128 images and tests half of the 64
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["train_samples"] == 128 and r["test_samples"] == 64 for r in rows)
    ck = load_checkpoint(out / "last.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    # the written weights are the synchronised ones
    from dta_lib.train import load_model

    model, _ = load_model(out / "last.pt")
    assert param_digest(model) == digests[0]
    # its last.pt resumed by one process: refused, naming both world sizes (not a silently different run)
    one = subprocess.run([sys.executable, "-m", "dta_lib", *cmd[cmd.index("train"):], "--resume"], capture_output=True,
                         text=True, env=env, timeout=300, cwd=tmp_path)
    assert one.returncode == 2 and "trained by 2 process(es) and this run has 1" in one.stderr, one.stderr
