"""What the engine trains on: dataset metadata for the model, the built-in synthetic sets, and the
``(train, test)`` pair a :class:`~dta_lib.engine.config.TrainConfig` names; the model it builds."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..data.registry import MODEL_FIELDS, DatasetInfo, dataset_info
from ..models import MSResNet, ms_resnet18, ms_resnet34
from .config import SYNTHETIC_DATASETS, TrainConfig

__all__ = ["DataInfo", "model_fields", "synthetic_datasets", "get_data_info", "build_data", "build_model", "infer_info"]


#: dataset metadata: the same type as :class:`dta_lib.data.DatasetInfo` (one definition)
DataInfo = DatasetInfo


def model_fields(info: DatasetInfo) -> dict[str, Any]:
    """The fields of ``info`` a model is built from (what a checkpoint records as ``data_info``)."""
    return {k: getattr(info, k) for k in MODEL_FIELDS}



_SYNTH = dict(num_classes=4, image_size=16, n_train=512, n_test=256)


def synthetic_datasets(
    name: str = "synthetic", time_steps: int = 4, n_train: int = _SYNTH["n_train"], n_test: int = _SYNTH["n_test"],
    seed: int = 0,
) -> tuple[TensorDataset, TensorDataset]:
    """Small learnable in-memory datasets for tests and CI (no files, no downloads).

    ``synthetic``: 1x16x16 images, 4 classes, each a fixed random prototype plus noise.
    ``synthetic-dvs``: ``[T, 2, 16, 16]`` 0/1 event frames whose firing probability
    follows a per-class pattern. Fixed by ``seed`` (not the training seed).
    """
    if name not in SYNTHETIC_DATASETS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {SYNTHETIC_DATASETS}")
    g = torch.Generator().manual_seed(seed)
    k, s = _SYNTH["num_classes"], _SYNTH["image_size"]

    def make(n: int) -> TensorDataset:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        if name == "synthetic":
            x = protos[y] + 0.8 * torch.randn(n, 1, s, s, generator=g)
        else:
            p = protos[y].unsqueeze(1).expand(n, time_steps, 2, s, s)
            x = (torch.rand(n, time_steps, 2, s, s, generator=g) < p).float()
        return TensorDataset(x, y)

    if name == "synthetic":
        protos = torch.randn(k, 1, s, s, generator=g)
    else:
        protos = 0.05 + 0.5 * torch.rand(k, 2, s, s, generator=g)
    return make(n_train), make(n_test)


def get_data_info(name: str) -> DataInfo:
    """Dataset metadata: built in for the synthetic sets (identity normalisation), else ``dta_lib.data.dataset_info``."""
    if name in SYNTHETIC_DATASETS:
        channels = 1 if name == "synthetic" else 2
        return DataInfo(name, _SYNTH["num_classes"], channels, _SYNTH["image_size"], 4, name != "synthetic",
                        (0.0,) * channels, (1.0,) * channels)
    return dataset_info(name)


def _first(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples (synthetic sets are already shuffled and class-balanced)."""
    return ds if n is None or n >= len(ds) else Subset(ds, range(n))  # type: ignore[arg-type]


def build_data(cfg: TrainConfig, train: bool = True) -> tuple[Dataset | None, Dataset, DataInfo]:
    """``(train_ds, test_ds, info)`` for ``cfg``, with ``subset`` / ``test_subset`` applied
    (class-balanced, seed-independent: every seed and variant sees the same images).

    ``train=False`` drops the training set (returns ``None`` for it)."""
    info = get_data_info(cfg.dataset)
    if cfg.dataset in SYNTHETIC_DATASETS:
        train_ds, test_ds = synthetic_datasets(cfg.dataset, cfg.time_steps)
        train_ds, test_ds = _first(train_ds, cfg.subset), _first(test_ds, cfg.test_subset)
    else:
        from ..data import build_datasets

        train_ds, test_ds = build_datasets(
            cfg.dataset, root=cfg.data_root, time_steps=cfg.time_steps if info.is_event else None,
            download=cfg.download, train_transform=cfg.augment, subset=cfg.subset, test_subset=cfg.test_subset,
        )
    return (train_ds if train else None), test_ds, info


def build_model(cfg: TrainConfig, info: DataInfo) -> MSResNet:
    """MS-ResNet-18 (or -34 for ImageNet) with ``cfg.attention`` after the stem."""
    builder = ms_resnet34 if cfg.arch == "ms_resnet34" else ms_resnet18
    return builder(
        num_classes=info.num_classes, time_steps=cfg.time_steps, attention=cfg.attention,
        in_channels=info.in_channels, width=cfg.width, surrogate=cfg.surrogate,
        surrogate_width=cfg.surrogate_width,
    )



def infer_info(cfg: TrainConfig, ds: Dataset) -> DataInfo:
    """DataInfo for user-supplied datasets: shape from a sample, classes from the labels."""
    x, _ = ds[0]
    if isinstance(ds, TensorDataset):
        labels = ds.tensors[1].tolist()
    elif hasattr(ds, "targets"):
        labels = [int(t) for t in ds.targets]  # type: ignore[attr-defined]
    else:
        labels = [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]
    event = x.dim() == 4
    channels = int(x.shape[-3])
    return DataInfo("custom", max(labels) + 1, channels, int(x.shape[-1]), cfg.time_steps, event, (0.0,) * channels,
                    (1.0,) * channels)

