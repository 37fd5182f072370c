"""Event-camera data (docs/data.md, "Event frames"): AEDAT4 reading, framing (tonic ``ToFrame``; channel 0 = OFF,
``p=0``; 1 = ON, ``p=1``), CIFAR10-DVS (sorted 9:1 split), frame cache."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tonic
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .augment import EventAugment
from .common import balanced_pair, single_threaded
from ..atomic import atomic_write
from ..paths import cache_dir
from .registry import cache_key, dataset_info, resolve_root

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])
CIFAR10DVS_CLASSES: dict[str, int] = dict(tonic.datasets.CIFAR10DVS.classes)
FRAME_CACHE_VERSION = 1


def read_events(path: str | os.PathLike, sensor_size: tuple[int, int, int] | None = None) -> np.ndarray:
    """Events of an AEDAT4 file (``tonic.io.read_aedat4``) as a ``(t, x, y, p)`` structured array; a corrupt file,
    or events outside ``sensor_size = (W, H, P)``, raise ``ValueError`` naming the file."""
    try:
        raw = tonic.io.read_aedat4(str(path))
    except Exception as err:  # noqa: BLE001 - the aedat decoder raises plain Exception/RuntimeError
        raise ValueError(f"corrupt or truncated event file {path}: {err}") from err
    events = raw.astype(EVENT_DTYPE)  # fields by position: tonic's (t, x, y, p) with its own dtypes
    if sensor_size is not None and len(events):
        (w, h, _), x, y = sensor_size, int(events["x"].max()), int(events["y"].max())
        if x >= w or y >= h:
            raise ValueError(f"event file {path} has events up to x={x}, y={y}; expected a sensor of {w}x{h} "
                             f"(sensor_size={sensor_size})")
    return events


def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], time_steps: int,
                     frame_size: int | None = None) -> torch.Tensor:
    """``[T, P, H, W]`` float counts: tonic ``ToFrame(n_event_bins=T)`` (``T`` bins of equal event count, the last
    ``len % T`` events dropped), then a bilinear antialiased resize to ``frame_size``; with fewer than ``T`` events
    (where tonic returns empty frames) event ``k`` of ``n`` goes to frame ``k*T//n``."""
    (w, h, p), n = sensor_size, len(events)
    if n >= time_steps:
        frames = torch.from_numpy(tonic.transforms.ToFrame(sensor_size=sensor_size, n_event_bins=time_steps)(events)
                                  .astype(np.float32))
    else:
        frames = torch.zeros(time_steps, p, h, w)
        if n:
            idx = (torch.arange(n) * time_steps // n, *(torch.as_tensor(events[f].astype(np.int64)) for f in "pyx"))
            frames.index_put_(idx, torch.ones(n), accumulate=True)
    if frame_size is not None and (h, w) != (frame_size, frame_size):
        frames = TF.resize(frames, [frame_size, frame_size], antialias=True)
    return frames


def split_per_class(files: Sequence[str | os.PathLike], targets: Sequence[int]) -> tuple[list[int], list[int]]:
    """Indices of the per-class split: each class's files in sorted file-name order (plain lexicographic
    ``sorted`` of the base name, so ``x_10`` sorts before ``x_2``), the first ``ceil(n * 0.9)`` train (as the
    release's ``split_to_train_test_set``: 900 / 100 of CIFAR10-DVS's 1,000 per class; 10 / 1 of 11)."""
    train, test = [], []
    for label in sorted(set(int(t) for t in targets)):
        idx = sorted((i for i, t in enumerate(targets) if int(t) == label),
                     key=lambda i: (Path(files[i]).name, str(files[i])))
        cut = -(-len(idx) * 9 // 10)  # ceil(0.9 n), in integers (no float rounding)
        train += idx[:cut]
        test += idx[cut:]
    return train, test


class EventFrames(Dataset):
    """Base of the event datasets: ``(frames(index) [T,2,H,W] transformed, label)``, framed on one thread."""

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with single_threaded():
            frames = self.frames(index)
            if self.transform is not None:
                frames = self.transform(frames)
        return frames, self.targets[index]


class FramedEvents(EventFrames):
    """``(frames [T,2,H,W], label)`` for a list of event files, with an on-disk frame cache (written atomically)
    keyed by the file's resolved path, size and mtime and every framing parameter, never the index alone."""

    def __init__(self, files: Sequence[str | os.PathLike], targets: Sequence[int], sensor_size: tuple[int, int, int],
                 time_steps: int, frame_size: int | None = None, transform: Callable | None = None,
                 cache: str | os.PathLike | None | bool = None, classes: Sequence[str] | None = None) -> None:
        self.files, self.targets = [Path(f) for f in files], [int(t) for t in targets]
        self.sensor_size, self.time_steps = tuple(int(s) for s in sensor_size), int(time_steps)
        self.frame_size, self.transform, self.classes = frame_size, transform, None if classes is None else list(classes)
        self.cache = None if cache is False else Path(cache) if cache not in (None, True) else cache_dir() / "frames"

    def cache_path(self, index: int) -> Path | None:
        """Where sample ``index``'s frames are cached (None without a cache)."""
        if self.cache is None:
            return None
        st = (path := self.files[index].resolve()).stat()
        key = cache_key(file=str(path), size=st.st_size, mtime_ns=st.st_mtime_ns, time_steps=self.time_steps,
                        sensor_size=self.sensor_size, frame_size=self.frame_size, slicing="n_event_bins",
                        version=FRAME_CACHE_VERSION)
        return self.cache / key[:2] / f"{key}.npy"

    def frames(self, index: int) -> torch.Tensor:
        cached = self.cache_path(index)
        if cached is not None and cached.is_file():
            return torch.from_numpy(np.load(cached))
        frames = events_to_frames(read_events(self.files[index], self.sensor_size), self.sensor_size,
                                  self.time_steps, self.frame_size)
        if cached is not None:
            atomic_write(cached, lambda tmp: np.save(open(tmp, "wb"), frames.numpy()))
        return frames


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's ``CIFAR10DVS`` (whose class name gives the folder) accepting an extracted tree of any size (in tonic's
    listing order: :func:`split_per_class` sorts)."""

    def _check_exists(self) -> bool:
        return _tree_present(Path(self.location_on_system)) or bool(super()._check_exists())


def _tree_present(folder: Path) -> bool:
    dirs = {p.parent for p in folder.rglob("*.aedat4")} if folder.is_dir() else set()
    if unknown := sorted(str(d) for d in dirs if d.name not in CIFAR10DVS_CLASSES):
        raise ValueError(f"CIFAR10-DVS folders {unknown} are not class names; valid choices: {list(CIFAR10DVS_CLASSES)}")
    return bool(dirs)


def build_cifar10_dvs(time_steps: int, root: str | os.PathLike | None = None, download: bool = False,
                      train_transform: bool = True, subset: int | None = None, test_subset: Any = "same",
                      frame_size: int = 48, sensor_size: tuple[int, int, int] = (128, 128, 2),
                      cache: str | os.PathLike | None | bool = None) -> tuple[Any, Any]:
    """CIFAR10-DVS: ``T`` event-count frames resized to 48x48, sorted per-class 9:1 split; train samples get
    a horizontal flip and one TrivialAugment-style op identical over all frames (:class:`EventAugment`);
    ``time_steps`` as :func:`~dta_lib.data.datasets.build_datasets` checked it."""
    path = resolve_root("cifar10-dvs", root, lambda r: _tree_present(r / "CIFAR10DVS"), download,
                        "<root>/CIFAR10DVS/<class>/*.aedat4 with class folders " + ", ".join(CIFAR10DVS_CLASSES))
    base = CIFAR10DVS(str(path))
    train_idx, test_idx = split_per_class(base.data, base.targets)

    def make(idx: list[int], tf: Callable | None) -> FramedEvents:
        return FramedEvents([base.data[i] for i in idx], [base.targets[i] for i in idx], sensor_size, time_steps,
                            frame_size, tf, cache, list(CIFAR10DVS_CLASSES))

    return balanced_pair(make(train_idx, EventAugment() if train_transform else None), make(test_idx, None), subset,
                         test_subset, dataset_info("cifar10-dvs").num_classes)
