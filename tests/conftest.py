import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")
# tests and nbval write runs, tables and figures here (never the committed reports/), also without make (Windows)
os.environ.setdefault("DTA_OUTPUT_DIR", str(ROOT / "build" / "test-reports"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models are overhead-bound and one thread is deterministic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data_dir() -> Path:
    return DATA


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class StopAfterEpoch(Exception):
    """Raised by :func:`train_until` once the chosen epoch's files are written."""


def train_until(cfg, out, epoch: int = 1) -> None:
    """Train ``cfg`` into ``out`` and stop (as a crash would) right after epoch ``epoch`` has written its files."""
    from dta_lib.train import train

    def stop(history: list) -> None:  # called once the epoch's files are written
        if len(history) == epoch:
            raise StopAfterEpoch

    with pytest.raises(StopAfterEpoch):
        train(cfg, out=out, on_epoch=stop)
