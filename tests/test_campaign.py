"""The study campaign (parallel one-thread workers) trains the very runs the notebooks read."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from dta_lib.train import make_config
from dta_lib import campaign
from dta_lib.runs import run_dir
from dta_lib.runs import STUDIES, Study
from dta_lib.paths import CHECKOUT
from dta_lib.reproduce import STUDY_PLAN


def test_jobs_are_seed_major():
    study = STUDIES["ablation"]
    js = campaign.jobs(study, "cpu", [0, 1])
    assert [s for _, s in js] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [v["attention"] for v, _ in js[:4]] == ["none", "txa", "tna", "dta"]


def test_registry_seeds_and_variants_per_preset():
    assert campaign.jobs(STUDIES["ablation"], "study-10k") == [({"attention": a}, s) for s in range(5)
                                                              for a in ("none", "txa", "tna", "dta")]
    assert STUDIES["train"].expected("cpu") == ["attention=dta,time_steps=4-s0"]
    assert STUDIES["train"].expected("study") == ["attention=dta,time_steps=4-s0", "attention=none,time_steps=4-s0"]
    assert STUDIES["dvs"].seeds_for("cpu") == [0, 1] and STUDIES["dvs"].seeds_for("paper") == [0, 1, 2]


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_studies_match_their_notebooks(name):
    """Each study's name and variant keys appear in its notebook's study call; 05-09 read it from the registry."""
    study = STUDIES[name]
    if CHECKOUT is None:
        pytest.skip("needs the repository's notebooks")
    nb = nbformat.read(CHECKOUT / "notebooks" / f"{study.notebook}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    own = {"precision": r"precision_study\(", "energy": r"trained_run\("}.get(name, rf'(run_study|run_one)\(\s*"{name}"')
    assert re.search(own, code), f"{study.notebook} has no {name!r} study call"
    if study.notebook[:2] in ("05", "06", "07", "08", "09"):
        assert f'STUDIES["{name}"]' in code, f"{study.notebook} does not read its seeds from the registry"
    for key in study.variants[0]:
        assert f'"{key}"' in code
    for key in study.common:
        assert f"{key}=" in code or f'"{key}"' in code


def test_run_jobs_trains_reuses_and_validates(tmp_path, monkeypatch):
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setitem(STUDIES, "tiny", Study("tiny", "synthetic", ({"attention": "none"},), {"*": (0,)}))
    out = campaign.run_jobs("tiny", "smoke", [0], workers=1, threads=1, epochs=1, subset=32, test_subset=32)
    assert len(out) == 1 and out[0][2].startswith("best ")
    cfg = make_config("synthetic", "smoke", seed=0, attention="none", epochs=1, subset=32, test_subset=32)
    path = run_dir("tiny", cfg, {"attention": "none"})
    assert json.loads((path / "run.json").read_text())["status"] == "completed"
    mtime = (path / "metrics.jsonl").stat().st_mtime_ns
    campaign.run_jobs("tiny", "smoke", [0], workers=1, threads=1, epochs=1, subset=32, test_subset=32)
    assert (path / "metrics.jsonl").stat().st_mtime_ns == mtime  # reused, not retrained
    with pytest.raises(ValueError, match="unknown study"):
        campaign.run_jobs("nope", "smoke", [0])
    with pytest.raises(ValueError, match="workers"):
        campaign.run_jobs("tiny", "smoke", [0], workers=0)


def test_the_command_line_names_bad_input_in_one_line(capsys):
    assert campaign.main(["ablation", "--preset", "smoke", "--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: need workers >= 1 and threads >= 1, got workers=0, threads=1\n"


def test_study_plan_names_presets_that_exist():
    from dta_lib.train import PRESETS

    assert {p["PRESET"] for p in STUDY_PLAN.values()} <= set(PRESETS)
    assert STUDY_PLAN["05"]["PRESET"] == "study" and STUDY_PLAN["06"]["PRESET"] == "study-10k"
    assert STUDY_PLAN["12"]["PRESET"] == "study"  # 12 analyses 05's full-data models
    assert STUDY_PLAN["09"]["PRESET"] == "study-10k" and STUDY_PLAN["07"]["PRESET"] == "study-10k"
    assert STUDY_PLAN["08"]["PRESET"] == "study-10k"  # the DVS study: emulated events, 10,000 training streams


def test_default_reproduce_renders_the_study_from_committed_runs_without_training(tmp_path, monkeypatch):
    import os

    from dta_lib import reproduce
    from dta_lib.runs import NO_TRAIN_ENV, REUSE_SINCE_ENV

    calls = []
    monkeypatch.setattr(reproduce, "_execute",
                        lambda nb, out, wanted: calls.append((nb.name[:2], out.name, wanted, os.environ.get(NO_TRAIN_ENV))))
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv(REUSE_SINCE_ENV, "")  # main() sets both for its kernels; monkeypatch restores them
    assert reproduce.main(["--notebooks", "05", "07", "12", "--out", str(tmp_path / "nb" / "cpu")]) == 0
    cpu = [c for c in calls if c[1] == "cpu"]
    study = [c for c in calls if c[1] == "study"]
    assert [c[0] for c in cpu] == ["05", "07", "12"] and all(c[2]["PRESET"] == "cpu" and c[3] is None for c in cpu)
    assert [c[0] for c in study] == ["05", "07", "12"]  # only the chosen notebooks of STUDY_PLAN, at their study presets
    assert all(c[2]["PRESET"] == STUDY_PLAN[c[0]]["PRESET"] and c[2]["REUSE"] is True and c[3] == "1" for c in study)
    assert NO_TRAIN_ENV not in os.environ
    calls.clear()
    assert reproduce.main(["--notebooks", "05", "--no-study-render", "--out", str(tmp_path / "nb" / "cpu")]) == 0
    assert [c[1] for c in calls] == ["cpu"]
