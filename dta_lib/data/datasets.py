"""``build_datasets(name, ...) -> (train, test)``: one entry point for the paper's datasets and the
offline Fashion-MNIST family (see docs/data.md)."""
from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .augment import EventAugment
from .cifar import build_cifar
from .fashion import build_fashion_mnist
from .imagenet import build_imagenet
from .registry import DATASETS, check_time_steps, dataset_info

if TYPE_CHECKING:  # event data needs the [dvs] extra (tonic): imported where it is built
    from .emulator import EmulatedEvents, EmulatorConfig

#: emulated event dataset -> the static dataset its images come from
EMULATION_SOURCE = {"fashion-mnist-dvs": "fashion-mnist", "cifar10-emulated-dvs": "cifar10"}


def build_emulated(source: str, time_steps: int, root: str | os.PathLike | None = None,
                   download: bool = False, train_transform: bool = True, subset: int | None = None,
                   test_subset: Any = "same", frame_size: int | None = None,
                   emulator: EmulatorConfig | None = None, cache: str | os.PathLike | None | bool = None,
                   progress: bool = True) -> tuple[EmulatedEvents, EmulatedEvents]:
    """Emulated event frames of ``source`` (``fashion-mnist`` or ``cifar10``): the (subset of the) static
    images go through :mod:`~dta_lib.data.emulator`, then are framed like ``cifar10-dvs`` (``time_steps`` as
    :func:`build_datasets` checked it)."""
    from .emulator import EmulatedEvents

    name = {v: k for k, v in EMULATION_SOURCE.items()}[source]
    frame_size = dataset_info(name).image_size if frame_size is None else frame_size
    kw = dict(train_transform=False, subset=subset, test_subset=test_subset)
    train, test = (build_fashion_mnist(root, download, **kw) if source == "fashion-mnist"
                   else build_cifar("cifar10", root, download, **kw))
    out = []
    for split, tf in ((train, EventAugment() if train_transform else None), (test, None)):
        # the un-augmented uint8 images, targets and classes of the torchvision dataset (or its subset)
        base, idx = (split.dataset, split.indices) if hasattr(split, "indices") else (split, None)
        images, targets = torch.as_tensor(np.asarray(base.data)), [int(t) for t in base.targets]
        if idx is not None:
            images, targets = images[torch.as_tensor(idx)], [targets[i] for i in idx]
        classes = list(getattr(base, "classes", []) or []) or None
        out.append(EmulatedEvents(images, targets, time_steps, emulator, frame_size, tf, cache, classes, progress))
    return out[0], out[1]


_COMMON = "train_transform subset test_subset "
#: name -> (builder, the options it takes besides root / download / time_steps)
_BUILDERS: dict[str, tuple[Any, set[str]]] = {name: (fn, set((_COMMON + opts).split())) for name, fn, opts in [
    ("cifar10", lambda **kw: build_cifar("cifar10", **kw), "verify_md5"),
    ("cifar100", lambda **kw: build_cifar("cifar100", **kw), "verify_md5"),
    ("imagenet", build_imagenet, "image_size"),
    ("cifar10-dvs", lambda **kw: import_module(".events", __package__).build_cifar10_dvs(**kw),
     "frame_size sensor_size cache"),
    ("fashion-mnist", build_fashion_mnist, "image_size"),
    ("fashion-mnist-dvs", lambda **kw: build_emulated("fashion-mnist", **kw), "frame_size emulator cache progress"),
    ("cifar10-emulated-dvs", lambda **kw: build_emulated("cifar10", **kw), "frame_size emulator cache progress"),
]}
assert set(_BUILDERS) == set(DATASETS)


def build_datasets(name: str, root: str | os.PathLike | None = None, time_steps: int | None = None,
                   download: bool = False, **options: Any) -> tuple[Any, Any]:
    """``(train, test)`` torch Datasets of ``(tensor, int)`` for ``name``: normalised ``[C,H,W]`` floats, or for event
    data ``[T,2,H,W]`` event counts (``time_steps`` frames, default :attr:`DatasetInfo.default_time_steps`).
    Options per dataset: ``_BUILDERS`` (meanings in docs/data.md); an unknown one raises ``ValueError``."""
    info = dataset_info(name)
    builder, valid = _BUILDERS[name]
    if unknown := sorted(set(options) - valid):
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; valid choices: {sorted(valid)}")
    steps = check_time_steps(name, time_steps)
    return builder(**options, root=root, download=download, **({"time_steps": steps} if info.is_event else {}))
