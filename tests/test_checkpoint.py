"""dta_lib.checkpoint: atomic writes, weights_only loading, crafted / truncated files, RNG state."""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from dta_lib.checkpoint import (
    CheckpointError,
    atomic_write_text,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state(**kw) -> dict:
    """The keys the training loop writes (placeholder values; draws no random numbers)."""
    state = {"epoch": 1, "model": {"weight": torch.arange(6.0).reshape(2, 3)}, "config": {"dataset": "synthetic"},
             "rng": [capture_rng_state()], "optimizer": {}, "scheduler": {}, "scaler": {}, "best_acc": 0.0,
             "best_epoch": 1, "history": [], "data_info": {}, "world_size": 1, "autocast_dtype": "fp32",
             "wall_seconds": 0.0}
    return {**state, **kw}


class _Payload:
    """Unpickling this runs ``os.system(cmd)``: the classic malicious checkpoint."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_round_trip_and_no_temp_files(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "last.pt", state)
    ck = load_checkpoint(path)
    assert ck["format"] == "dta_lib-checkpoint" and ck["epoch"] == 1
    assert torch.equal(ck["model"]["weight"], state["model"]["weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    g = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = capture_rng_state(g)
    save_checkpoint(tmp_path / "c.pt", _state(rng=[state]))
    expect = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    # scramble every stream, then restore from the file
    random.seed(99), np.random.seed(99), torch.manual_seed(99), g.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0], g)
    got = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g).item())
    assert got == expect


@pytest.mark.parametrize("container", ["raw-pickle", "torch-zip"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_is_refused_and_runs_no_code(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "dta_lib-checkpoint", "x": _Payload(f"touch {marker}")}
    if container == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    # control: the payload is real (an unsafe load would run it)
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(f"touch {control}")))
    assert control.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists(), "loading a crafted checkpoint executed code"


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _state())
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt") as e:
        load_checkpoint(bad)
    assert "truncated or corrupt" in str(e.value)


def test_empty_and_garbage_files_are_refused(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(256))
    for name in ("empty.pt", "garbage.pt"):
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)


def test_foreign_content_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain_state_dict.pt")
    with pytest.raises(CheckpointError, match="plain_state_dict.pt.*not a dta_lib training checkpoint"):
        load_checkpoint(tmp_path / "plain_state_dict.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="list.pt"):
        load_checkpoint(tmp_path / "list.pt")


def test_missing_keys_and_wrong_version_are_refused(tmp_path):
    torch.save({"format": "dta_lib-checkpoint", "version": 1}, tmp_path / "nokeys.pt")
    with pytest.raises(CheckpointError, match="nokeys.pt.*misses keys"):
        load_checkpoint(tmp_path / "nokeys.pt")
    save_checkpoint(tmp_path / "v.pt", _state())
    ck = torch.load(tmp_path / "v.pt", weights_only=True)
    ck["version"] = 99
    torch.save(ck, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="v99.pt.*version"):
        load_checkpoint(tmp_path / "v99.pt")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state())
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # temp file removed


def test_atomic_write_text_permissions(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}\n")
    assert (tmp_path / "a.json").read_text() == "{}\n"
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert mode & 0o044, f"file is private ({oct(mode)}): temp-file permissions leaked"
