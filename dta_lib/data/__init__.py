"""Datasets and augmentation for the DTA companion (see docs/data.md).

``build_datasets(name, root=None, time_steps=None, download=False, **options) -> (train, test)`` for
cifar10, cifar100, imagenet, cifar10-dvs, fashion-mnist, fashion-mnist-dvs, cifar10-emulated-dvs;
:class:`BatchMix` + :func:`soft_cross_entropy` for per-batch CutMix / MixUp with soft labels;
:class:`EventAugment` for the CIFAR10-DVS TrivialAugment-style op; :mod:`.emulator` for event emulation.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .augment import EVENT_OPS, BatchMix, EventAugment, soft_cross_entropy
from .datasets import build_datasets, build_emulated
from .registry import DATASETS, DatasetInfo, cache_dir, dataset_info

# event data needs the [dvs] extra (tonic, aedat): imported on first use, so static data never loads it
_LAZY = {**dict.fromkeys(("EmulatedEvents", "EmulatorConfig", "emulate", "emulate_cached", "saccade_path"), ".emulator"),
         **dict.fromkeys(("EVENT_DTYPE", "FramedEvents", "events_to_frames", "read_events", "split_per_class"), ".events")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "build_datasets", "build_emulated", "DATASETS", "DatasetInfo", "dataset_info", "cache_dir",
    "BatchMix", "soft_cross_entropy", "EventAugment", "EVENT_OPS",
    "EmulatorConfig", "EmulatedEvents", "emulate", "emulate_cached", "saccade_path",
    "EVENT_DTYPE", "FramedEvents", "events_to_frames", "read_events", "split_per_class",
]
