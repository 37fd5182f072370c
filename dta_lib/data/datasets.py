"""``build_datasets(name, ...) -> (train, test)``: one entry point for the paper's datasets and the
offline Fashion-MNIST family (see docs/data.md)."""
from __future__ import annotations

import os
from collections.abc import Callable
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

__all__ = ["build_datasets", "build_emulated", "EMULATION_SOURCE"]

#: emulated event dataset -> the static dataset its images come from
EMULATION_SOURCE = {"fashion-mnist-dvs": "fashion-mnist", "cifar10-emulated-dvs": "cifar10"}


def _raw_images(dataset: Any) -> tuple[torch.Tensor, list[int], list[str] | None]:
    """Un-augmented uint8 images, targets and classes of a torchvision dataset or its subset."""
    base, indices = (dataset.dataset, dataset.indices) if hasattr(dataset, "indices") else (dataset, None)
    images = torch.as_tensor(np.asarray(base.data))
    targets = [int(t) for t in base.targets]
    if indices is not None:
        images = images[torch.as_tensor(indices)]
        targets = [targets[i] for i in indices]
    return images, targets, list(getattr(base, "classes", []) or []) or None


def build_emulated(source: str, time_steps: int | None = None, root: str | os.PathLike | None = None,
                   download: bool = False, train_transform: bool = True, subset: int | None = None,
                   test_subset: Any = "same", frame_size: int | None = None,
                   emulator: EmulatorConfig | None = None, cache: str | os.PathLike | None | bool = None,
                   progress: bool = True) -> tuple[EmulatedEvents, EmulatedEvents]:
    """Emulated event frames of ``source`` (``fashion-mnist`` or ``cifar10``): the (subset of the) static
    images go through :mod:`~dta_lib.data.emulator`, then are framed like ``cifar10-dvs``."""
    from .emulator import EmulatedEvents

    name = {v: k for k, v in EMULATION_SOURCE.items()}.get(source)
    if name is None:
        raise ValueError(f"emulation source {source!r}: valid choices ['fashion-mnist', 'cifar10']")
    steps = check_time_steps(name, time_steps)
    info = dataset_info(name)
    if frame_size is None:
        frame_size = info.image_size
    if source == "fashion-mnist":
        train, test = build_fashion_mnist(root, download, train_transform=False, subset=subset, test_subset=test_subset)
    else:
        train, test = build_cifar("cifar10", root, download, train_transform=False, subset=subset, test_subset=test_subset)
    out = []
    for split, tf in ((train, EventAugment() if train_transform else None), (test, None)):
        images, targets, classes = _raw_images(split)
        out.append(EmulatedEvents(images, targets, steps, emulator, frame_size, tf, cache, classes, progress))
    return out[0], out[1]


def _build_cifar10_dvs(**kw: Any) -> tuple[Any, Any]:
    from .events import build_cifar10_dvs

    return build_cifar10_dvs(**kw)


def _builders() -> dict[str, Callable[..., tuple[Any, Any]]]:
    return {
        "cifar10": lambda **kw: build_cifar("cifar10", **kw),
        "cifar100": lambda **kw: build_cifar("cifar100", **kw),
        "imagenet": build_imagenet,
        "cifar10-dvs": _build_cifar10_dvs,
        "fashion-mnist": build_fashion_mnist,
        "fashion-mnist-dvs": lambda **kw: build_emulated("fashion-mnist", **kw),
        "cifar10-emulated-dvs": lambda **kw: build_emulated("cifar10", **kw),
    }


_OPTIONS: dict[str, set[str]] = {
    "cifar10": {"train_transform", "subset", "test_subset", "verify_md5"},
    "cifar100": {"train_transform", "subset", "test_subset", "verify_md5"},
    "imagenet": {"train_transform", "subset", "test_subset", "image_size"},
    "cifar10-dvs": {"train_transform", "subset", "test_subset", "frame_size", "sensor_size", "cache"},
    "fashion-mnist": {"train_transform", "subset", "test_subset", "image_size"},
    "fashion-mnist-dvs": {"train_transform", "subset", "test_subset", "frame_size", "emulator", "cache", "progress"},
    "cifar10-emulated-dvs": {"train_transform", "subset", "test_subset", "frame_size", "emulator", "cache", "progress"},
}


def build_datasets(name: str, root: str | os.PathLike | None = None, time_steps: int | None = None,
                   download: bool = False, **options: Any) -> tuple[Any, Any]:
    """``(train, test)`` torch Datasets of ``(tensor, int)`` for ``name`` (see :data:`DATASETS`).

    Static datasets yield normalised ``[C,H,W]`` floats; event datasets ``[T,2,H,W]`` float event counts
    (``time_steps`` frames; default :attr:`DatasetInfo.default_time_steps`). Root lookup: ``root``, then
    ``$DTA_DATA_ROOT``, then offline locations. Options: ``train_transform`` (augment the train split,
    default True), ``subset`` (per-class balanced first-N subset, see
    :func:`~dta_lib.data.common.balanced_subset`; ``test_subset`` defaults to the same N), and per dataset
    ``image_size`` (fashion-mnist, imagenet), ``frame_size`` / ``sensor_size`` / ``cache`` (event data),
    ``emulator`` (an :class:`EmulatorConfig`), ``verify_md5`` (CIFAR).
    """
    info = dataset_info(name)
    unknown = sorted(set(options) - _OPTIONS[name])
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; valid choices: {sorted(_OPTIONS[name])}")
    steps = check_time_steps(name, time_steps)
    kwargs = dict(options, root=root, download=download)
    if info.is_event:
        kwargs["time_steps"] = steps
    return _builders()[name](**kwargs)


assert set(_OPTIONS) == set(DATASETS)
