"""Event data on the real AEDAT4 recording (tests/data/test_data.aedat4, DAVIS346, MIT): tonic reading,
framing to [T,2,H,W], a tiny CIFAR10-DVS tree proving the sorted 9:1 split, the frame cache, bad input."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

from dta_lib.data.events import EVENT_DTYPE, events_to_frames, read_events, split_per_class
from dta_lib.data.datasets import build_datasets
from dta_lib.data.events import CIFAR10DVS_CLASSES

AEDAT = Path(__file__).resolve().parent / "data" / "test_data.aedat4"
DAVIS = (346, 260, 2)


@pytest.fixture(scope="module")
def events() -> np.ndarray:
    return read_events(AEDAT, DAVIS)


def test_read_real_recording(events: np.ndarray) -> None:
    raw = tonic.io.read_aedat4(str(AEDAT))
    assert events.dtype == EVENT_DTYPE and len(events) == len(raw) == 78_830
    np.testing.assert_array_equal(events["x"], raw["x"])
    np.testing.assert_array_equal(events["t"], raw["t"])
    assert np.all(np.diff(events["t"].astype(np.int64)) >= 0)
    assert set(np.unique(events["p"])) == {False, True}


def test_frames_by_event_count(events: np.ndarray) -> None:
    frames = events_to_frames(events, DAVIS, time_steps=10)
    assert frames.shape == (10, 2, 260, 346) and frames.dtype == torch.float32
    per_frame = frames.sum(dim=(1, 2, 3))
    assert torch.all(per_frame == len(events) // 10)  # equal event count per frame (tonic n_event_bins)
    on = frames[:, 1].sum().item()
    assert on == pytest.approx(events["p"][: len(events) // 10 * 10].sum())
    resized = events_to_frames(events, DAVIS, time_steps=10, frame_size=48)
    assert resized.shape == (10, 2, 48, 48) and resized.min() >= 0 and resized.sum() > 0


def test_few_events_are_not_dropped() -> None:
    ev = np.zeros(3, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = [1, 2, 3], [0, 1, 2], [0, 0, 1], [True, False, True]
    frames = events_to_frames(ev, (4, 2, 2), time_steps=6)
    assert frames.shape == (6, 2, 2, 4) and frames.sum() == 3
    assert frames[0, 1, 0, 0] == 1 and frames[2, 0, 0, 1] == 1 and frames[4, 1, 1, 2] == 1
    assert events_to_frames(ev[:0], (4, 2, 2), time_steps=6).sum() == 0


def make_tree(root: Path, per_class: dict[str, list[str]]) -> Path:
    """A CIFAR10-DVS-shaped tree; no AEDAT4 writer exists, so every file is a symlink to the real recording."""
    for cls, names in per_class.items():
        folder = root / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for name in names:
            os.symlink(AEDAT, folder / name)
    return root


def test_tiny_tree_sorted_split(tmp_path: Path) -> None:
    # 10 files per class, created in shuffled order; lexicographic sort puts _10 before _2
    names = [f"cifar10_airplane_{i}.aedat4" for i in (7, 3, 10, 0, 5, 2, 9, 1, 8, 4)]
    autos = [f"auto_{i:02d}.aedat4" for i in range(19, -1, -1)]  # 20 files -> 18 / 2
    root = make_tree(tmp_path, {"airplane": names, "automobile": autos})
    train, test = build_datasets("cifar10-dvs", root=root, time_steps=4, train_transform=False,
                                 sensor_size=DAVIS, cache=tmp_path / "cache")
    expected_air = sorted(names)
    assert [f.name for f in train.files][:9] == expected_air[:9]
    assert [f.name for f in test.files] == [expected_air[9], "auto_18.aedat4", "auto_19.aedat4"]
    assert expected_air[9] == "cifar10_airplane_9.aedat4"  # plain sort: ..._8 < ..._9 and _10 < _2
    assert [f.name for f in train.files][9:] == [f"auto_{i:02d}.aedat4" for i in range(18)]
    assert train.targets == [0] * 9 + [1] * 18 and test.targets == [0, 1, 1]
    x, y = test[0]
    assert x.shape == (4, 2, 48, 48) and y == 0
    direct = events_to_frames(read_events(AEDAT, DAVIS), DAVIS, 4, 48)
    torch.testing.assert_close(x, direct)


def test_split_per_class_helper() -> None:
    files = [f"f{i}" for i in range(30)]
    targets = [i % 3 for i in range(30)]
    train, test = split_per_class(files, targets)
    assert len(train) == 27 and len(test) == 3 and not set(train) & set(test)
    assert [targets[i] for i in test] == [0, 1, 2]
    # the release's rule is ceil(0.9 n) per class: 11 files -> 10 train / 1 test (floor would give 9 / 2)
    train, test = split_per_class([f"g{i:02d}" for i in range(11)], [0] * 11)
    assert len(train) == 10 and test == [10]
    train, test = split_per_class([f"h{i:04d}" for i in range(1000)], [0] * 1000)
    assert (len(train), len(test)) == (900, 100)


def test_frame_cache_keyed_by_parameters(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"bird": [f"b{i}.aedat4" for i in range(10)]})
    cache = tmp_path / "cache"
    kw = dict(root=root, train_transform=False, sensor_size=DAVIS, cache=cache)
    _, test4 = build_datasets("cifar10-dvs", time_steps=4, **kw)
    _, test6 = build_datasets("cifar10-dvs", time_steps=6, **kw)
    _, test6s = build_datasets("cifar10-dvs", time_steps=6, frame_size=32, **kw)
    paths = {test4.cache_path(0), test6.cache_path(0), test6s.cache_path(0)}
    assert len(paths) == 3  # same file, same index, different parameters -> different entries
    a = test6[0][0]
    assert test6.cache_path(0).is_file() and not test4.cache_path(0).is_file()
    assert test6s[0][0].shape == (6, 2, 32, 32)
    assert torch.equal(test6[0][0], a)  # read back from the cache
    assert not list(cache.rglob("*.tmp"))
    # the key follows the file (resolved path, size, mtime), not the index: train[0] is b0.aedat4, a symlink to
    # the same recording as test[0] (b9) -> shared entry; after replacing b0 by a real copy -> a new entry
    train, _ = build_datasets("cifar10-dvs", time_steps=6, **kw)
    assert train.cache_path(0) == test6.cache_path(0)
    b0 = root / "CIFAR10DVS" / "bird" / "b0.aedat4"
    b0.unlink()
    shutil.copy(AEDAT, b0)
    assert train.cache_path(0) != test6.cache_path(0)


def test_train_split_is_augmented(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"ship": [f"s{i}.aedat4" for i in range(10)]})
    train, _ = build_datasets("cifar10-dvs", root=root, time_steps=4, sensor_size=DAVIS, cache=tmp_path / "c")
    plain = train.frames(0)
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        x, y = train[0]
        assert x.shape == (4, 2, 48, 48) and y == CIFAR10DVS_CLASSES["ship"]
        changed += int(not torch.equal(x, plain))
    assert changed >= 3  # flip p=0.5 and 5 of 6 ops change the frames


def test_corrupt_event_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "CIFAR10DVS" / "cat"
    folder.mkdir(parents=True)
    for i in range(9):
        os.symlink(AEDAT, folder / f"c{i}.aedat4")
    (folder / "c9.aedat4").write_bytes(AEDAT.read_bytes()[:200_000])
    _, test = build_datasets("cifar10-dvs", root=tmp_path, train_transform=False, sensor_size=DAVIS, cache=False)
    with pytest.raises(ValueError, match="c9.aedat4"):
        test[0]


def test_events_outside_sensor_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="128x128"):
        read_events(AEDAT, (128, 128, 2))


def test_unknown_class_folder(tmp_path: Path) -> None:
    make_tree(tmp_path, {"spaceship": ["a.aedat4"]})
    with pytest.raises(ValueError, match="airplane"):
        build_datasets("cifar10-dvs", root=tmp_path)


def test_class_list_matches_tonic() -> None:
    assert list(CIFAR10DVS_CLASSES) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                        "ship", "truck"]
