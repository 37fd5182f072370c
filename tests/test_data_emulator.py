"""Event-camera emulator on real images (foolbox's Fashion-MNIST / CIFAR-10 PNGs): event stream invariants,
determinism, cache, the emulated datasets, and bad input."""
from __future__ import annotations

import importlib.util
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dta_lib.data.events import EVENT_DTYPE
from dta_lib.data.emulator import EmulatorConfig, emulate, emulate_cached, saccade_path
from dta_lib.data.datasets import build_datasets
from dta_lib.data.emulator import to_tonic


def foolbox_pngs(prefix: str) -> list[Path]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox 3.3.4 not installed (it comes with the [test] extra: pip install -e '.[test]')")
    files = sorted((Path(list(spec.submodule_search_locations)[0]) / "data").glob(f"{prefix}_*.png"))
    assert len(files) == 20
    return files


@pytest.fixture(scope="module")
def fashion() -> tuple[np.ndarray, list[int]]:
    files = foolbox_pngs("fashionMNIST")
    return np.stack([np.asarray(Image.open(f).convert("L")) for f in files]), [int(f.stem.split("_")[-1]) for f in files]


def write_fashion_tree(root: Path, images: np.ndarray, labels: list[int]) -> None:
    """IDX files (torchvision's ``FashionMNIST/raw`` layout) holding the real images for both splits."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    n = len(images)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            b"".join(v.to_bytes(4, "big") for v in (2051, n, 28, 28)) + images.astype(np.uint8).tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            b"".join(v.to_bytes(4, "big") for v in (2049, n)) + bytes(labels))


def test_events_of_a_real_image(fashion: tuple[np.ndarray, list[int]]) -> None:
    cfg = EmulatorConfig()
    stored, offsets = emulate(fashion[0][:1], cfg)
    ev = to_tonic(stored[offsets[0]:offsets[1]])
    assert ev.dtype == EVENT_DTYPE and ev.dtype.names == ("t", "x", "y", "p")
    assert len(ev) > 500
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() <= 3 * cfg.saccade_us
    assert ev["x"].max() < 34 and ev["y"].max() < 34
    assert 0.3 < ev["p"].mean() < 0.7  # both polarities
    # events sit on edges of the picture: pixels without spatial contrast (the black border far away) are silent
    assert not np.any((ev["x"] == 0) | (ev["y"] == 0))


def test_closed_saccade_loop_balances_polarities(fashion: tuple[np.ndarray, list[int]]) -> None:
    """The path returns to its start, so every pixel's log intensity does too: ON and OFF counts must match."""
    stored, offsets = emulate(fashion[0][:4], EmulatorConfig())
    path = saccade_path(EmulatorConfig())
    assert torch.equal(path[0], path[-1])
    image = np.repeat(np.arange(4), np.diff(offsets))
    key = (image * 64 + stored["x"].astype(np.int64)) * 64 + stored["y"]
    on = np.bincount(key[stored["p"] == 1], minlength=4 * 64 * 64)
    off = np.bincount(key[stored["p"] == 0], minlength=4 * 64 * 64)
    assert on.sum() > 1000 and np.array_equal(on, off)


def test_blank_and_flat_images() -> None:
    stored, offsets = emulate(torch.zeros(2, 10, 10))
    assert len(stored) == 0 and offsets.tolist() == [0, 0, 0]
    stored, _ = emulate(torch.full((1, 10, 10), 0.8))
    border = (stored["x"] <= 5) | (stored["x"] >= 10) | (stored["y"] <= 5) | (stored["y"] >= 10)
    assert len(stored) > 0 and border.all()  # only the frame of the flat patch moves


def test_deterministic_and_chunk_invariant(fashion: tuple[np.ndarray, list[int]]) -> None:
    images = fashion[0][:6]
    a = emulate(images, chunk=6)
    b = emulate(images, chunk=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    single = emulate(images[3:4])
    np.testing.assert_array_equal(single[0], a[0][a[1][3]:a[1][4]])


def test_threshold_controls_event_count(fashion: tuple[np.ndarray, list[int]]) -> None:
    img = fashion[0][:2]
    low = emulate(img, EmulatorConfig(contrast_threshold=0.15))[1][-1]
    mid = emulate(img, EmulatorConfig(contrast_threshold=0.3))[1][-1]
    high = emulate(img, EmulatorConfig(contrast_threshold=0.6))[1][-1]
    assert low > mid > high > 0


def test_cache_keyed_by_images_and_parameters(tmp_path: Path, fashion: tuple[np.ndarray, list[int]]) -> None:
    images = fashion[0][:3]
    first = emulate_cached(images, EmulatorConfig(), tmp_path, progress=False)
    files = sorted(tmp_path.glob("*.npy"))  # plus the entry's lock file
    assert len(files) == 2 and not list(tmp_path.glob(".*tmp"))
    again = emulate_cached(images, EmulatorConfig(), tmp_path, progress=False)
    assert isinstance(again[0], np.memmap)
    np.testing.assert_array_equal(first[0], again[0])
    emulate_cached(images, EmulatorConfig(seed=1), tmp_path, progress=False)
    emulate_cached(images[:2], EmulatorConfig(), tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 6


def test_fashion_mnist_dvs_dataset(tmp_path: Path, fashion: tuple[np.ndarray, list[int]]) -> None:
    images, labels = fashion
    write_fashion_tree(tmp_path / "data", images, labels)
    train, test = build_datasets("fashion-mnist-dvs", root=tmp_path / "data", time_steps=5,
                                 cache=tmp_path / "cache", progress=False)
    assert len(train) == len(test) == 20
    x, y = test[2]
    assert x.shape == (5, 2, 34, 34) and y == labels[2]
    ev = test.events(2)
    assert x.sum() == len(ev) // 5 * 5  # equal-count framing, remainder dropped as in tonic
    assert x[:, 1].sum() > 0 and x[:, 0].sum() > 0
    # train frames go through EventAugment; shape is kept
    torch.manual_seed(0)
    assert train[2][0].shape == (5, 2, 34, 34)
    sub, _ = build_datasets("fashion-mnist-dvs", root=tmp_path / "data", time_steps=5, subset=10,
                            cache=tmp_path / "cache", progress=False)
    assert len(sub) == 10


def test_cifar10_emulated_dvs_dataset(tmp_path: Path) -> None:
    files = foolbox_pngs("cifar10")
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    labels = [int(f.stem.split("_")[-1]) for f in files]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    flat = images.transpose(0, 3, 1, 2).reshape(20, -1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": flat, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    _, test = build_datasets("cifar10-emulated-dvs", root=tmp_path, time_steps=4, train_transform=False,
                             cache=tmp_path / "cache", progress=False, subset=5)
    x, y = test[0]
    assert x.shape == (4, 2, 48, 48) and x.sum() > 0
    assert test.sensor_size == (38, 38, 2)
    # balanced subset of 5: one per class 0..4; classes 2 and 4 are absent among the 20 images, so the first
    # unused indices top it up -> indices [0, 1, 2, 3, 6]
    assert labels[:7] == [3, 8, 8, 0, 6, 6, 1]
    assert test.targets == [3, 8, 8, 0, 1] and y == 3


@pytest.mark.parametrize("images,match", [
    (torch.rand(2, 28, 28) * 2, r"\[0, 1\]"),
    (torch.full((1, 8, 8), float("nan")), r"finite"),
    (torch.zeros(2, 4, 8, 8), "shape"),
    (torch.zeros(0, 8, 8), "shape"),
    (torch.zeros(1, 8, 8, dtype=torch.int32), "dtype"),
    (torch.zeros(8, 8)[None, None, None], "shape"),
])
def test_emulator_bad_images(images: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        emulate(images)


@pytest.mark.parametrize("field,value", [("contrast_threshold", 0.0), ("log_eps", -1.0), ("amplitude", -2.0),
                                         ("margin", 1), ("steps_per_saccade", 0), ("threshold_sigma", -0.1),
                                         ("saccade_us", 10**12)])
def test_emulator_bad_config(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        replace(EmulatorConfig(), **{field: value})
