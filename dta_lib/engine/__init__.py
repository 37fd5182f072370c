"""The training engine: configuration (:mod:`.config`), data and model for a run (:mod:`.build`), device and
precision (:mod:`.device`), loaders, the :class:`Trainer` (:mod:`.trainer`), evaluation (:mod:`.evaluate`),
checkpoints (:mod:`.checkpoint`, :mod:`.state`), the run folder (:mod:`.runfolder`: lock, metrics, repair),
provenance (:mod:`.provenance`) and DDP (:mod:`.distributed`)."""
from __future__ import annotations

from .build import DataInfo, build_data, build_model, get_data_info, synthetic_datasets
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import PRESETS, RECIPES, TrainConfig, make_config
from .device import (
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from .evaluation import evaluate, evaluate_model, load_model
from .provenance import run_metadata
from .runfolder import METRICS_FILE, read_metrics
from .results import NonFiniteLossError, TrainResult
from .trainer import Trainer, train

__all__ = [
    "TrainConfig", "make_config", "RECIPES", "PRESETS", "DataInfo", "TrainResult", "NonFiniteLossError", "Trainer",
    "train", "evaluate", "evaluate_model", "load_model", "run_metadata", "build_model", "build_data",
    "get_data_info", "synthetic_datasets", "seed_everything", "resolve_device", "resolve_precision",
    "cpu_has_native_bf16", "read_metrics", "METRICS_FILE", "CheckpointError", "load_checkpoint", "save_checkpoint",
]
