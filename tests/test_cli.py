"""``python -m dta_lib``: help, bad input (clear error, nothing written) and SIGKILL + --resume."""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dta_lib.__main__ import build_parser, main
from dta_lib.checkpoint import CheckpointError, load_checkpoint
from dta_lib.train import evaluate

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"seconds", "images_per_s"}
TINY = ["--dataset", "synthetic", "--preset", "smoke", "--subset", "96", "--test-subset", "64", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dta_lib", *args]


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ---------------------------------------------------------------------------- help
def test_help_documents_every_option(capsys):
    parsers = _subcommand_parsers()
    assert set(parsers) == {"train"}  # the tools: python -m dta_lib.bench, ...; evaluate: dta_lib.train.evaluate
    for name in ("train",):
        for action in parsers[name]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for action in parsers[name]._actions:
            for opt in action.option_strings:
                assert opt in text
    for opt in ("--dataset", "--preset", "--attention", "--time-steps", "--seed", "--out", "--resume", "--epochs",
                "--surrogate-width", "--width", "--batch-size", "--lr", "--precision", "--compile",
                "--channels-last", "--subset", "--workers", "--record-grad-norms", "--sync-bn"):
        assert opt in {o for a in parsers["train"]._actions for o in a.option_strings}


def test_module_entry_point_help_runs():
    r = subprocess.run(_cli("--help"), capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0 and re.findall(r"^    (\w+) ", r.stdout, re.M) == ["train"]  # the subcommands


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, match",
    [
        (["--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--attention", "xa"], "invalid choice: 'xa'"),
        (["--time-steps", "four"], "invalid int value: 'four'"),
        (["--preset", "tiny"], "invalid choice: 'tiny'"),
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
    ],
)
def test_argparse_rejects_bad_values(tmp_path, capsys, args, match):
    argv = ["train", *TINY, "--out", str(tmp_path / "r")]
    argv = argv + args  # later options win
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["--time-steps", "0"], "time_steps must be an integer >= 1, got 0"),
        (["--epochs", "-2"], "epochs must be an integer >= 1, got -2"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--surrogate-width", "0"], "surrogate_width must be > 0"),
        (["--width", "-1"], "width must be > 0"),
        (["--subset", "0"], "subset must be an integer >= 1"),
        (["--workers", "-1"], "workers must be an integer >= 0"),
        (["--label-smoothing", "1.5"], "label_smoothing must be < 1"),
        (["--resume"], "cannot resume: .*last.pt does not exist"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "tpu"], "(CUDA is not available|device must be)"),
    ],
)
def test_bad_values_exit_2_with_clear_message_and_write_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "r"
    rc = main(["train", *TINY, "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ")
    assert re.search(match, err), err
    assert not out.exists()


def test_out_is_a_file_or_missing(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("mine")
    assert main(["train", *TINY, "--out", str(f)]) == 2
    assert "is not a folder" in capsys.readouterr().err and f.read_text() == "mine"
    for args, match in (([], "one of the arguments --out --no-save is required"),
                        (["--out", str(tmp_path / "x"), "--no-save"], "not allowed with argument --out")):
        with pytest.raises(SystemExit) as e:
            main(["train", *TINY, *args])
        assert e.value.code == 2 and match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_evaluate_bad_checkpoints(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        evaluate(missing)
    trunc = tmp_path / "trunc.pt"
    torch.save({"format": "dta_lib-checkpoint", "w": torch.zeros(1000)}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        evaluate(trunc)
    # a run on 1-channel synthetic images cannot be evaluated on 2-channel event frames
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    with pytest.raises(ValueError, match="last.pt was trained on 'synthetic'.*in_channels"):
        evaluate(out / "last.pt", dataset="synthetic-dvs")
    rec = evaluate(out / "last.pt", progress=False)
    assert rec["test_acc"] == pytest.approx(_metrics(out)[-1]["test_acc"]) and rec["epoch"] == 1


def test_resume_with_changed_options_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    before = (out / "metrics.jsonl").read_bytes()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--resume", "--attention", "none"]) == 2
    assert "attention: checkpoint 'dta' vs now 'none'" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == before


# ---------------------------------------------------------------------------- a run killed mid-training resumes to the same result
@pytest.mark.slow
@pytest.mark.process
def test_sigkill_after_first_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    args = [*TINY, "--subset", "128", "--epochs", "3", "--seed", "7"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    r = subprocess.run(_cli("train", *args, "--out", str(ref)), capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr

    proc = subprocess.Popen(_cli("train", *args, "--out", str(cut)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if load_checkpoint(cut / "last.pt")["epoch"] >= 1:
                    break
            except (FileNotFoundError, CheckpointError):
                pass
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = load_checkpoint(cut / "last.pt")["epoch"]
    assert 1 <= done < 3
    assert json.loads((cut / "run.json").read_text())["status"] == "running"

    r = subprocess.run(_cli("train", *args, "--out", str(cut), "--resume"), capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert _metrics(cut) == _metrics(ref)
    assert len(_metrics(cut)) == 3
    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(cut / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    meta = json.loads((cut / "run.json").read_text())
    assert meta["status"] == "completed" and meta["resumed_from_epoch"] == done
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]


def test_every_config_field_is_a_train_option_and_a_new_field_needs_no_other_edit(monkeypatch, capsys):
    """The options of ``python -m dta_lib train`` are generated from TrainConfig's fields (declared once): a field
    added to TrainConfig (here a subclass put in its place) is an option and reaches the config with no other edit."""
    import dataclasses
    import types

    import dta_lib.train
    from dta_lib.train import TrainConfig, _f

    text = build_parser().parse_args(["train", "--dataset", "synthetic", "--no-save"])  # parses with every default
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(vars(text))
    Extended = dataclasses.make_dataclass(
        "Extended", [("knob", "int", _f(3, "a new knob", "model")), ("fancy", "bool", _f(False, "a new switch"))],
        bases=(TrainConfig,))
    monkeypatch.setattr(dta_lib.train, "TrainConfig", Extended)
    got = []
    monkeypatch.setattr(dta_lib.train, "train", lambda cfg, **kw: got.append(cfg) or types.SimpleNamespace(
        best_acc=0.0, best_epoch=0, final_acc=0.0, epochs=cfg.epochs, wall_seconds=0.0, out=None))
    help_ = _subcommand_parsers()["train"].format_help()
    assert "--knob" in help_ and "a new knob" in help_ and "--fancy" in help_
    assert main(["train", "--dataset", "synthetic", "--no-save", "--knob", "5", "--fancy", "-T", "6",
                 "--nondeterministic", "--no-augment"]) == 0
    capsys.readouterr()
    [cfg] = got
    assert isinstance(cfg, Extended) and cfg.knob == 5 and cfg.fancy is True and cfg.time_steps == 6
    assert cfg.deterministic is False and cfg.augment is False
    # every option left unset is the preset's, else the recipe's: the config make_config builds from the same choices
    expected = dta_lib.train.make_config("synthetic", "cpu", knob=5, fancy=True, time_steps=6, deterministic=False,
                                         augment=False)
    assert dataclasses.asdict(cfg) == dataclasses.asdict(expected) and cfg.epochs == 3  # the recipe's, not the default


def test_arch_and_momentum_flags_reach_the_config(tmp_path):
    assert main(["train", *TINY, "--epochs", "1", "--momentum", "0.5", "--arch", "ms_resnet18",
                 "--out", str(tmp_path / "r")]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["momentum"] == 0.5 and cfg["arch"] == "ms_resnet18"
