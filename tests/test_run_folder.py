"""Runs that cannot be silently lost or left stale: kills at every write point, locks, CRCs, bad input.

The fault-injection test kills a training process (SIGKILL) during each of its atomic writes in turn
(a wrapped ``dta_lib.atomic._publish``), resumes the folder, and checks that it ends exactly like an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import train_until

from dta_lib import atomic
from dta_lib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dta_lib.train import make_config
from dta_lib.runs import NO_TRAIN_ENV, REUSE_SINCE_ENV, run_dir, run_one
from dta_lib.checkpoint import HOLDER_FILE, LOCK_FILE, RunLock, RunLockedError, read_metrics
from dta_lib.train import evaluate, load_model, train

pytestmark = [pytest.mark.process, pytest.mark.usefixtures("one_thread")]  # CI's second (other instruction set) pass skips these: no kernel numerics here

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"seconds", "images_per_s"}
# seed 1 learns in epoch 3 after a flat epoch 2: one epoch writes no best.pt, and the last epoch is the best
TINY_KW = dict(subset=128, test_subset=64, epochs=3, batch_size=16, width=0.0625, progress=False, threads=1,
               precision="fp32", seed=1)
TINY_CLI = ["--dataset", "synthetic", "--preset", "smoke", "--subset", "128", "--test-subset", "64", "--epochs", "3",
            "--batch-size", "16", "--width", "0.0625", "--threads", "1", "--precision", "fp32", "--seed", "1",
            "--no-progress"]




def tiny(**kw):
    return make_config("synthetic", "smoke", **{**TINY_KW, **kw})


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if k not in extra:
            env.pop(k, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dta_lib", *args]


def _metrics(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(out)]


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_checkpoint(a), load_checkpoint(b)
    return x["epoch"] == y["epoch"] and all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def _copy_run(ref: Path, cut: Path) -> Path:
    """A byte copy of the run folder ``ref`` at ``cut``."""
    cut.mkdir()
    for p in ref.iterdir():
        (cut / p.name).write_bytes(p.read_bytes())
    return cut


def _assert_like_reference(cut: Path, ref: Path) -> None:
    assert _metrics(cut) == _metrics(ref)
    assert _same_weights(cut / "last.pt", ref / "last.pt")
    assert _same_weights(cut / "best.pt", ref / "best.pt")
    assert not [p.name for p in cut.iterdir() if p.name.endswith(".tmp")], "temp files left behind"
    assert not (cut / LOCK_FILE).exists()
    meta = json.loads((cut / "run.json").read_text())
    assert meta["status"] == "completed" and meta["best_epoch"] == json.loads((ref / "run.json").read_text())["best_epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run and the number of atomic writes it makes."""
    out = tmp_path_factory.mktemp("ref") / "run"
    published = []
    with pytest.MonkeyPatch.context() as mp:  # count the writes, kill none
        publish = atomic._publish
        mp.setattr(atomic, "_publish", lambda tmp, path: (published.append(path), publish(tmp, path)))
        train(tiny(), out=out)
    return out, len(published)


# ---------------------------------------------------------------------------- fault injection
_KILLER = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from dta_lib import atomic
    from dta_lib.train import make_config
    from dta_lib.train import train
    kw, base, points = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    result = {}
    publish = atomic._publish
    for n in points:  # one forked child per write point: it SIGKILLs itself during its n-th atomic write
        pid = os.fork()
        if pid == 0:
            writes = [0]

            def killing(tmp, path):  # the temp file is complete, not yet published: as a real kill would leave it
                writes[0] += 1
                if writes[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                publish(tmp, path)

            atomic._publish = killing
            train(make_config("synthetic", "smoke", **kw), out=os.path.join(base, f"cut{n}"))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        result[n] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_a_kill_at_every_write_point_resumes_to_the_uninterrupted_run(tmp_path, reference):
    ref, writes = reference
    # config, run.json, per epoch last.pt (+ best.pt when it improved) + metrics, final run.json
    history = read_metrics(ref)
    improved = sum(1 for i, r in enumerate(history) if i == 0 or r["test_acc"] > max(h["test_acc"] for h in history[:i]))
    assert 0 < improved < 3 and writes == 2 + 3 * 2 + improved + 1
    points = list(range(1, writes + 1))
    r = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(TINY_KW), str(tmp_path), json.dumps(points)],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    signals = {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    assert signals == {n: signal.SIGKILL for n in points}, "every child must die by SIGKILL at its write point"
    for n in points:
        cut = tmp_path / f"cut{n}"
        assert cut.is_dir()
        assert [p for p in cut.iterdir() if p.name.endswith(".tmp")], f"kill {n}: the killed write left no temp file"
        res = train(tiny(), out=cut, resume=True)  # what `--resume` does
        _assert_like_reference(cut, ref)
        assert res.best_epoch == json.loads((ref / "run.json").read_text())["best_epoch"]


def test_resume_repairs_best_and_metrics_from_last_pt(tmp_path, reference):
    """The reported bad case: killed after last.pt of the final epoch, before best.pt / metrics.jsonl."""
    ref, _ = reference
    cut = tmp_path / "run"
    cut.mkdir()
    for name in ("config.json", "run.json", "last.pt"):
        (cut / name).write_bytes((ref / name).read_bytes())
    # a stale best.pt from epoch 1 and a metrics file missing its last line
    first = load_checkpoint(ref / "last.pt")
    first["epoch"], first["history"] = 1, first["history"][:1]
    save_checkpoint(cut / "best.pt", first)
    (cut / "metrics.jsonl").write_text("".join(ref.joinpath("metrics.jsonl").read_text().splitlines(True)[:2]))
    state = load_checkpoint(cut / "last.pt")
    assert state["best_epoch"] == state["epoch"] == 3  # the case of the report: the final epoch is the best
    res = train(tiny(), out=cut, resume=True)
    assert res.best_epoch == 3
    _assert_like_reference(cut, ref)
    assert any("best.pt rebuilt" in x for x in json.loads((cut / "run.json").read_text())["repaired_on_resume"])


def test_torn_metrics_are_named_and_rebuilt_on_resume(tmp_path, reference):
    ref, _ = reference
    cut = _copy_run(ref, tmp_path / "run")
    text = (cut / "metrics.jsonl").read_text()
    (cut / "metrics.jsonl").write_text(text[: len(text) - 40])  # torn last line
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 3: not a JSON record"):
        read_metrics(cut)
    train(tiny(), out=cut, resume=True)
    _assert_like_reference(cut, ref)


def test_temp_files_of_killed_writes_are_removed_on_start_and_resume(tmp_path, reference):
    ref, _ = reference
    cut = _copy_run(ref, tmp_path / "run")
    (cut / ".last.pt.abc123.tmp").write_bytes(b"half")
    train(tiny(), out=cut, resume=True)
    assert not (cut / ".last.pt.abc123.tmp").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".config.json.x.tmp").write_text("{")
    train(tiny(epochs=1), out=fresh)
    assert not (fresh / ".config.json.x.tmp").exists()


# ---------------------------------------------------------------------------- the lock
def test_a_second_run_on_a_locked_folder_fails_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = RunLock(out).acquire()
    try:
        with pytest.raises(RunLockedError, match=rf"run folder {out} is in use by pid {os.getpid()} on "):
            train(tiny(epochs=1), out=out)
        r = subprocess.run(_cli("train", *TINY_CLI, "--out", str(out)), capture_output=True, text=True, env=_env(),
                           timeout=300)
        assert r.returncode == 2 and f"is in use by pid {os.getpid()}" in r.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, HOLDER_FILE]  # the refused runs wrote nothing
    finally:
        lock.release()
    assert not (out / LOCK_FILE).exists() and not (out / HOLDER_FILE).exists()
    train(tiny(epochs=1), out=out)  # free again
    assert (out / "last.pt").is_file() and not (out / LOCK_FILE).exists()


def test_two_runs_started_together_do_not_mix_their_files(tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(_cli("train", *TINY_CLI, "--out", str(out), "--seed", str(s)), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes[0] == 0 and codes[1] == 2, results
    loser = next(err for c, err in results if c == 2)
    # refused by the lock while the winner runs, or, when the winner finished first, by its recorded config
    assert f"run folder {out} is in use by " in loser or "already holds a run" in loser, loser
    seed = json.loads((out / "config.json").read_text())["seed"]
    assert load_checkpoint(out / "last.pt")["config"]["seed"] == seed  # weights and config of the same run


def test_lock_does_not_outlive_a_killed_holder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dta_lib.checkpoint import RunLock; "
                               "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(out)],
                              env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            RunLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(out).acquire().release()  # the kernel dropped the dead process's lock


# ---------------------------------------------------------------------------- integrity and crafted files
def _flip_a_weight_byte(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    with open(path, "rb") as f:  # the local header's own lengths locate the data
        f.seek(info.header_offset + 26)
        n, m = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
    raw[info.header_offset + 30 + n + m + info.file_size // 2] ^= 0x04
    path.write_bytes(bytes(raw))


def test_a_bit_flipped_checkpoint_is_refused_naming_the_file(tmp_path, reference):
    ref, _ = reference
    bad = tmp_path / "last.pt"
    bad.write_bytes((ref / "last.pt").read_bytes())
    _flip_a_weight_byte(bad)
    assert torch.load(bad, weights_only=True)["epoch"] == 3  # torch alone would load it, with other weights
    with pytest.raises(CheckpointError, match=rf"checkpoint {bad} is corrupt: CRC check failed for .*data/"):
        load_checkpoint(bad)
    cut = _copy_run(ref, tmp_path / "run")
    _flip_a_weight_byte(cut / "last.pt")
    r = subprocess.run(_cli("train", *TINY_CLI, "--out", str(cut), "--resume"), capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 2 and f"{cut / 'last.pt'} is corrupt: CRC check failed" in r.stderr


@pytest.mark.parametrize("field, value, match", [
    ("epoch", "abc", r"field 'epoch' must be an integer >= 0, got 'abc'"),
    ("data_info", {"name": "x", "evil": 1}, r"field 'data_info' must have exactly the keys"),
    ("data_info.num_classes", 10**9, r"field 'data_info.num_classes' must be an integer in 1..1000000"),
    ("config.width", 1e6, r"field 'config' width=1000000.0, time_steps=4 give a model too large"),
    ("config.width", 200.0, r"field 'config' width=200.0, time_steps=4 give a model of .* GiB"),
    ("config.evil", 1, r"field 'config' is invalid: unknown TrainConfig fields \['evil'\]"),
])
def test_crafted_checkpoint_fields_are_refused_before_anything_is_built(tmp_path, reference, field, value, match,
                                                                      monkeypatch):
    ref, _ = reference
    state = load_checkpoint(ref / "last.pt")
    top, _, sub = field.partition(".")
    if sub:
        state[top] = dict(state[top], **{sub: value})
    else:
        state[top] = value
    cut = tmp_path / "run"
    cut.mkdir()
    save_checkpoint(cut / "last.pt", state)
    (cut / "config.json").write_bytes((ref / "config.json").read_bytes())
    import dta_lib.train as T

    built = []
    monkeypatch.setattr(T, "build_data", lambda *a, **k: built.append("data"))
    with pytest.raises(CheckpointError, match=rf"checkpoint {cut / 'last.pt'}: {match}"):
        train(tiny(), out=cut, resume=True)
    for fn in (load_model, evaluate):
        with pytest.raises(CheckpointError, match=match):
            fn(cut / "last.pt")
    assert not built


# ---------------------------------------------------------------------------- bad input and interruptions
@pytest.mark.parametrize("out", ["", "   "])
def test_empty_out_is_refused(tmp_path, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="expected a run folder path, not an empty string"):
        train(tiny(epochs=1), out=out)
    r = subprocess.run(_cli("train", *TINY_CLI, "--out", out), capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 2 and "expected a run folder path" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, match", [
    (["--lr", "1e300"], r"error: lr must be <= 100.0, got 1e\+300"),
    (["--device", "cuda:abc"], r"error: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'cuda:abc'"),
    (["--width", "400"], r"error: width=400.0, time_steps=4 give a model of .* parameters: .* GiB"),
    (["-T", "50000"], r"error: (width=0.0625, time_steps=50000 give a model|time_steps)"),
])
def test_bad_values_fail_in_one_line_and_leave_no_folder(tmp_path, args, match):
    out = tmp_path / "run"
    r = subprocess.run(_cli("train", *TINY_CLI, *args, "--out", str(out)), capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert re.search(match, r.stderr) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_download_without_network_fails_in_one_line_and_leaves_no_run_folder(tmp_path):
    dead = "http://127.0.0.1:9"  # a closed local port: no traffic leaves this machine
    env = _env(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="")
    out = tmp_path / "run"
    r = subprocess.run(_cli("train", "--dataset", "cifar10", "--preset", "smoke", "--download", "--data-root",
                            str(tmp_path / "data"), "--out", str(out)), capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error: download failed: "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "run folder keeps" not in r.stderr
    assert not out.exists()


def test_paper_preset_without_a_gpu_stops_at_once(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="days on a CPU, and no CUDA GPU is visible.*--device cpu"):
        train(make_config("fashion-mnist", "paper"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_sigint_marks_the_run_interrupted_and_resume_finishes_it(tmp_path, reference):
    ref, _ = reference
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", *TINY_CLI, "--epochs", "3", "--out", str(out)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not (out / "last.pt").is_file():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGINT arrived")
    assert proc.returncode == 130 and "error: interrupted" in err, err
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and "KeyboardInterrupt" in meta["error"]
    assert not (out / LOCK_FILE).exists()
    train(tiny(), out=out, resume=True)
    _assert_like_reference(out, ref)


def test_disk_full_fails_cleanly_and_the_run_resumes(tmp_path, reference):
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the checkpoint write fail with EFBIG, as a full disk fails with ENOSPC."""
    ref, _ = reference
    out = tmp_path / "run"
    limit = (ref / "last.pt").stat().st_size // 2

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run(_cli("train", *TINY_CLI, "--out", str(out)), capture_output=True, text=True, env=_env(),
                       timeout=300, preexec_fn=small_files)
    assert r.returncode == 1 and "error: File too large" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "failed" and "File too large" in meta["error"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name in (LOCK_FILE, HOLDER_FILE)]
    train(tiny(), out=out, resume=True)  # space again: the run starts over (it had no finished epoch)
    _assert_like_reference(out, ref)


def test_a_corrupt_event_file_leaves_no_run_folder(tmp_path):
    for cls in ("airplane", "automobile"):
        folder = tmp_path / "data" / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"{cls}_{i}.aedat4").write_bytes(b"not an aedat4 file" * 10)
    cfg = make_config("cifar10-dvs", "smoke", data_root=str(tmp_path / "data"), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"cannot read the first training sample of cifar10-dvs: corrupt or truncated "
                                         r"event file .*airplane_0.aedat4"):
        train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_data_root_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"\$DTA_DATA_ROOT='.*nope' does not exist"):
        train(make_config("fashion-mnist", "smoke", epochs=1, subset=10, test_subset=10), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_json_records_the_data_it_read(tmp_path):
    data = pytest.importorskip("dta_lib.data.datasets")
    try:
        data.build_datasets("fashion-mnist", subset=10, test_subset=10)
    except (FileNotFoundError, OSError) as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    train(make_config("fashion-mnist", "smoke", epochs=1, subset=32, test_subset=32, progress=False, threads=1),
          out=tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "run.json").read_text())["data"]["fashion-mnist"]
    assert Path(rec["root"]).is_dir() and rec["files"] >= 4 and len(rec["sha256"]) == 64 and rec["digest_of"] == "content"


# ---------------------------------------------------------------------------- studies never delete a resumable run
def test_run_one_resumes_an_interrupted_run_instead_of_deleting_it(tmp_path):
    kw = dict(TINY_KW)
    cfg = make_config("synthetic", "smoke", **kw)
    out = run_dir("s", cfg, {"attention": "dta"}, tmp_path)

    train_until(cfg, out, epoch=1)
    # even reuse=False (what `make reproduce` passes) continues the interrupted run rather than deleting it
    row = run_one("s", "synthetic", "smoke", {"attention": "dta"}, kw["seed"], root=tmp_path, reuse=False,
                  **{k: v for k, v in kw.items() if k != "seed"})
    assert row["epochs"] == 3
    meta = json.loads((out / "run.json").read_text())
    assert meta["resumed_from_epoch"] == 1 and meta["status"] == "completed"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_run_one_with_reuse_false_retrains_a_finished_run_and_then_replaces_it(tmp_path, monkeypatch):
    kw = {k: v for k, v in TINY_KW.items() if k != "seed"}
    run_one("s", "synthetic", "smoke", {}, 1, root=tmp_path, reuse=True, **kw)
    cfg = make_config("synthetic", "smoke", seed=1, **kw)
    out = run_dir("s", cfg, {}, tmp_path)
    first = json.loads((out / "run.json").read_text())["started"]
    time.sleep(1.1)
    monkeypatch.setenv(REUSE_SINCE_ENV, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    time.sleep(1.1)
    run_one("s", "synthetic", "smoke", {}, 1, root=tmp_path, reuse=False, **kw)
    second = json.loads((out / "run.json").read_text())["started"]
    assert second != first  # retrained ...
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # ... with no .retrain / .replaced left
    run_one("s", "synthetic", "smoke", {}, 1, root=tmp_path, reuse=False, **kw)
    assert json.loads((out / "run.json").read_text())["started"] == second  # finished since: reused


import re  # noqa: E402  (used by the parametrised CLI test above)


def test_no_train_env_refuses_to_train_but_reads_a_recorded_run(tmp_path, monkeypatch):
    kw = {k: v for k, v in TINY_KW.items() if k != "seed"}
    monkeypatch.delenv(REUSE_SINCE_ENV, raising=False)
    monkeypatch.setenv(NO_TRAIN_ENV, "1")
    with pytest.raises(RuntimeError, match=NO_TRAIN_ENV) as err:
        run_one("s", "synthetic", "smoke", {}, 2, root=tmp_path, reuse=True, **kw)
    assert "s/synthetic" in str(err.value) and not any(tmp_path.rglob("config.json"))  # nothing started
    monkeypatch.delenv(NO_TRAIN_ENV)
    first = run_one("s", "synthetic", "smoke", {}, 2, root=tmp_path, reuse=True, **kw)
    monkeypatch.setenv(NO_TRAIN_ENV, "1")
    assert run_one("s", "synthetic", "smoke", {}, 2, root=tmp_path, reuse=True, **kw)["best_test_acc"] == \
        first["best_test_acc"]
    with pytest.raises(RuntimeError, match=NO_TRAIN_ENV):  # retraining a finished run is training too
        run_one("s", "synthetic", "smoke", {}, 2, root=tmp_path, reuse=False, **kw)
