"""Datasets and augmentation (see docs/data.md): :mod:`.registry` (what a model needs to know about each dataset,
root lookup), :mod:`.datasets` (``build_datasets(name, ...) -> (train, test)``, one entry point), one module per
family (:mod:`.fashion`, :mod:`.cifar`, :mod:`.imagenet`, :mod:`.events` for CIFAR10-DVS through tonic,
:mod:`.emulator` for emulated events), :mod:`.augment` (CutMix / MixUp, the event augmentation) and :mod:`.common`.
Event data needs the ``[dvs]`` extra (tonic); nothing here imports it until an event dataset is built."""
