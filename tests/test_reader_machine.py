"""A reader's machine, not this project's: no Debian data, no fcntl, only the library's own dependencies.

1. Fashion-MNIST only where torchvision's download puts it (``<cache>/data/FashionMNIST/raw``), Debian's copy hidden:
   every entry point finds it (the notebooks' lookups, ``python -m dta_lib train`` with no data flags, and
   ``python -m dta_lib.reproduce`` through notebook 05), and with no data at all the reproduce preflight says so
   before anything runs or is written.
2. ``fcntl`` unimportable (as on Windows): the engine imports, trains, and still refuses a second run on a folder.
3. Packaging: one version; ``environment.yml`` without CUDA pins; static training loads no optional dependency.
"""
from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
OPTIONAL = {"tonic", "aedat", "pandas", "seaborn"}

needs_debian = pytest.mark.skipif(not all((DEBIAN / f"{f}.gz").is_file() for f in FILES),
                                  reason="builds the download cache from Debian's dataset-fashion-mnist")


def _hide_debian(site: Path) -> None:
    """Every Python started with ``site`` on PYTHONPATH (CLI, papermill, notebook kernels) sees no Debian copy."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent("""\
        import pathlib
        import dta_lib.data.fashion as _fashion
        _fashion.DEBIAN_FASHION_MNIST = pathlib.Path("/nonexistent/fashion-mnist")
    """))


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """A reader's environment: Debian's copy hidden (here and in children), a fresh cache, no $DTA_DATA_ROOT."""
    import dta_lib.data.fashion as fashion

    site = tmp_path / "site"
    _hide_debian(site)
    monkeypatch.setattr(fashion, "DEBIAN_FASHION_MNIST", Path("/nonexistent/fashion-mnist"))
    monkeypatch.delenv("DTA_DATA_ROOT", raising=False)
    monkeypatch.setenv("DTA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path / "reports"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OMP_NUM_THREADS="1")
    return tmp_path, env


def _place_like_torchvision(cache: Path) -> Path:
    """Fashion-MNIST where ``torchvision.datasets.FashionMNIST(root, download=True)`` leaves it: ``.gz`` and raw."""
    raw = cache / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(DEBIAN / f"{name}.gz", raw / f"{name}.gz")
        with gzip.open(DEBIAN / f"{name}.gz", "rb") as fin, open(raw / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return raw


@needs_debian
@pytest.mark.slow
@pytest.mark.process
def test_every_entry_point_finds_data_where_torchvision_downloaded_it(reader):
    from dta_lib.data.fashion import find_fashion_mnist, load_fashion_mnist_samples
    from dta_lib.data.registry import download_root

    tmp, env = reader
    _place_like_torchvision(tmp / "cache")
    assert download_root() == tmp / "cache" / "data"
    # the notebooks' lookups (01-04, 13), without download permission
    assert find_fashion_mnist() == tmp / "cache" / "data"
    images, labels = load_fashion_mnist_samples(2)
    assert images.shape == (2, 1, 28, 28) and labels.tolist() == [9, 2]  # the first two test images: boot, pullover

    # the CLI with no data flags; the same process reports which optional dependencies it loaded
    code = ("import sys; from dta_lib.__main__ import main; rc = main(sys.argv[1:]); "
            f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(OPTIONAL)!r}))); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "train", "--dataset", "fashion-mnist", "--preset", "smoke",
                        "--subset", "64", "--test-subset", "32", "--epochs", "1", "--width", "0.0625", "--threads", "1",
                        "--no-progress", "--out", str(tmp / "run")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp / "run" / "run.json").read_text())["status"] == "completed"
    assert "LOADED []" in r.stdout  # static-image training loads none of tonic, aedat, pandas, seaborn

    # make reproduce's path through notebook 05 at the smoke preset (its preflight included)
    out = tmp / "reports" / "notebooks" / "smoke"
    r = subprocess.run([sys.executable, "-m", "dta_lib.reproduce", "--preset", "smoke", "--notebooks", "05"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "data found: fashion-mnist" in r.stdout and (out / "05_train.ipynb").is_file()
    assert "without encryption" not in r.stderr and "does not end in" not in r.stderr  # no start-up noise
    assert not list(out.glob(".*partial*"))


@pytest.mark.process
def test_no_data_and_no_download_fails_in_the_preflight_naming_the_fix(reader):
    tmp, env = reader
    r = subprocess.run([sys.executable, "-m", "dta_lib.reproduce", "--preset", "smoke", "--notebooks", "01", "05"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: fashion-mnist: no data found at ")
    assert "DOWNLOAD=1" in lines[0] and str(tmp / "cache" / "data") in lines[0]  # where it looked, and the fix
    assert not (tmp / "reports").exists()  # nothing written


@pytest.mark.process
def test_reproduce_refuses_a_bad_selection_or_dataset_before_writing(reader):
    tmp, env = reader
    for args, expected in ((["--notebooks", "99"], "no notebook matches ['99']"),
                           (["--dataset", "nope", "--notebooks", "05"], "unknown dataset 'nope'")):
        r = subprocess.run([sys.executable, "-m", "dta_lib.reproduce", "--preset", "smoke", *args], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and expected in r.stderr, r.stderr
    assert not (tmp / "reports").exists()


@pytest.mark.process
def test_the_engine_works_without_fcntl(tmp_path):
    """As on Windows: ``fcntl`` cannot be imported; filelock falls back, and the lock still holds."""
    code = textwrap.dedent("""\
        import sys, warnings
        sys.modules["fcntl"] = None
        warnings.simplefilter("ignore")
        import dta_lib.train
        from dta_lib.train import make_config, train
        from dta_lib.checkpoint import RunLock, RunLockedError
        cfg = make_config("synthetic", "smoke", subset=64, test_subset=32, epochs=1, batch_size=16, width=0.0625,
                          threads=1, precision="fp32", progress=False)
        out = sys.argv[1]
        train(cfg, out=out + "/a")
        lock = RunLock(out + "/b").acquire()
        try:
            train(cfg, out=out + "/b")
        except RunLockedError as e:
            print("REFUSED", e)
        lock.release()
        train(cfg, out=out + "/b")  # free again once released
        print("DONE")
    """)
    (tmp_path / "b").mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"REFUSED run folder {tmp_path / 'b'} is in use by pid " in r.stdout and "DONE" in r.stdout
    assert (tmp_path / "a" / "last.pt").is_file() and (tmp_path / "b" / "last.pt").is_file()


@pytest.mark.process
def test_one_version_and_no_optional_import():
    import dta_lib

    assert dta_lib.__version__ == importlib.metadata.version("dta_lib")
    r = subprocess.run([sys.executable, "-c", "import sys, dta_lib, dta_lib.train, dta_lib.data; "
                        "print(sorted({m.split('.')[0] for m in sys.modules}))"],
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not OPTIONAL & set(eval(r.stdout))  # noqa: S307 - our own printed list


def test_environment_yml_is_platform_neutral():
    text = (ROOT / "environment.yml").read_text()
    reqs = [ln.strip()[2:] for ln in text.splitlines() if ln.strip().startswith("- ") and "- -" not in ln]
    assert "torch>=2.6" in reqs and not [r for r in reqs if r.lower().startswith(("nvidia-", "cuda-", "triton"))]
    # the exact versions come as pip constraints: they pin the CUDA runtime only where torch's wheel requires it
    assert "      - -c constraints.txt\n" in text and "foolbox>=3.3.4" in reqs


def test_every_notebook_opens_in_colab_from_the_repository_in_pyproject():
    import re

    repo = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    slug = repo.removeprefix("https://github.com/")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in "".join(cells[0]["source"])
        tags = [c.get("metadata", {}).get("tags", []) for c in cells]
        colab = cells[tags.index(["parameters"]) + 1]  # right after the parameters cell, before any import
        source = "".join(colab["source"])
        assert source.count("google.colab") == 1 and repo in source and colab["outputs"] == []


def test_mps_is_accepted_in_fp32_and_refused_clearly_where_absent(monkeypatch):
    import torch

    from dta_lib.train import make_config
    from dta_lib.train import resolve_device, resolve_precision

    cfg = make_config("synthetic", "smoke", device="mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no Apple-silicon GPU"):
        resolve_device(cfg)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device(cfg) == torch.device("mps")
    assert resolve_precision(cfg.replace(precision="auto"), torch.device("mps")) is None  # fp32
    with pytest.raises(ValueError, match="train in fp32"):
        resolve_precision(cfg.replace(precision="bf16"), torch.device("mps"))
