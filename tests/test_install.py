"""An installed (not editable) ``dta_lib`` writes only where it is asked: never under its own install.

``pip install .`` into a fresh venv (the dependencies come from this interpreter's site-packages through a ``.pth``
file, since this machine has no package index to install them from), then, from another folder and without
``$DTA_OUTPUT_DIR``: train a synthetic run, ``python -m dta_lib.bench --quick``, save a figure. Every output must land
under ``./reports`` (or the run's ``--out``) and no file may appear under the venv.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _source_copy(dst: Path) -> Path:
    """What ``pip install .`` reads, copied, so the build writes nothing into the checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "dta_lib", dst / "dta_lib", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return dst


def test_installed_package_writes_nothing_under_its_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DTA_OUTPUT_DIR", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg", DTA_CACHE_DIR=str(tmp_path / "cache"),
               PIP_NO_CACHE_DIR="1")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, symlinks=True)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True, env=env).strip())
    # this interpreter's packages (torch, pandas, ...) without its editable dta_lib: a .pth line adds a folder to
    # sys.path but does not run the .pth files inside it (the editable finder)
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_dta_test_deps.pth").write_text("\n".join(sorted(parents)) + "\n")
    # the venv's own old setuptools (no bdist_wheel without the wheel package) would shadow this interpreter's
    for old in [*site.glob("setuptools*"), *site.glob("_distutils_hack"), *site.glob("distutils-precedence.pth")]:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    src = _source_copy(tmp_path / "src")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--no-cache-dir", str(src)], check=True, capture_output=True, text=True, env=env)
    where = subprocess.check_output([py, "-c", "import dta_lib; print(dta_lib.__file__)"], text=True,
                                    cwd=tmp_path, env=env).strip()
    assert Path(where).is_relative_to(site), f"the fresh venv imports dta_lib from {where}, not from {site}"

    work = tmp_path / "work"
    work.mkdir()
    before = _files(env_dir)
    steps = [
        ["-m", "dta_lib", "train", "--dataset", "synthetic", "--preset", "smoke", "--subset", "32", "--test-subset",
         "32", "--epochs", "1", "--no-progress", "--out", "run"],
        ["-m", "dta_lib.bench", "--quick", "--repeats", "1", "--lif-T", "2"],
        ["-c", "import matplotlib.pyplot as plt; from dta_lib import viz; print(viz.save_figure(plt.figure(), 'f.png'))"],
    ]
    for args in steps:
        proc = subprocess.run([py, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    new = sorted(_files(env_dir) - before)
    assert not new, f"files appeared under the install: {new[:20]}"
    assert (work / "run" / "metrics.jsonl").is_file() and (work / "run" / "last.pt").is_file()
    assert (work / "reports" / "bench" / "bench_cpu.json").is_file()
    assert (work / "reports" / "figures" / "f.png").is_file()
