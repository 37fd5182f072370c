"""Loader throughput: images/s of each loader next to the images/s of a CPU training step, in one process.

``python -m dta_lib.data.throughput [--batches 10] [--workers 0] [--out reports/data_throughput.csv]``
measures every dataset whose data is reachable offline: Fashion-MNIST (Debian), its emulated events, and
small trees built in a temp folder from the real files the tests use (foolbox's CIFAR-10/100 and ImageNet
images, repeated to fill the batches; the real AEDAT4 recording laid out as CIFAR10-DVS), first read
(frames computed) and cached. The model side is one SGD step of the CPU-preset MS-ResNet-18 per batch.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..paths import CHECKOUT
from .registry import dataset_info

__all__ = ["loader_throughput", "train_step_throughput", "emulator_throughput", "demo_roots", "measure_all"]



def loader_throughput(dataset: Dataset, batch_size: int = 64, batches: int = 10, num_workers: int = 0,
                      seed: int = 0) -> float:
    """Samples/s of a shuffled ``DataLoader`` over ``batches`` full batches (after one warm-up batch)."""
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, generator=g,
                        drop_last=True, persistent_workers=False)
    it = iter(loader)
    next(it)
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        n += len(x)
    return n / (time.perf_counter() - start)


def train_step_throughput(name: str, batch_size: int = 64, steps: int = 3, time_steps: int | None = None,
                          width: float = 0.25, attention: str = "dta", image_size: int | None = None) -> float:
    """Samples/s of forward + backward + SGD step of ``ms_resnet18`` (``width``) on random input of ``name``'s shape."""
    from ..models import ms_resnet18

    info = dataset_info(name)
    t = time_steps or info.default_time_steps
    size = image_size or info.image_size
    model = ms_resnet18(info.num_classes, t, attention, info.in_channels, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    shape = (batch_size, t, info.in_channels, size, size) if info.is_event else (batch_size, info.in_channels, size, size)
    x, y = torch.rand(shape), torch.randint(info.num_classes, (batch_size,))

    def step() -> None:
        inp = x if info.is_event else x.unsqueeze(1).expand(-1, t, -1, -1, -1)
        loss = torch.nn.functional.cross_entropy(model(inp).mean(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def emulator_throughput(n: int = 2000) -> float:
    """Images/s of :func:`~dta_lib.data.emulator.emulate` (default config, no cache) on ``n`` real
    Fashion-MNIST test images (NaN when the data is absent)."""
    from .datasets import build_datasets
    from .emulator import emulate

    try:
        _, test = build_datasets("fashion-mnist", train_transform=False)
    except FileNotFoundError:
        return float("nan")
    images = test.data[:n]
    start = time.perf_counter()
    emulate(images)
    return len(images) / (time.perf_counter() - start)


def _foolbox() -> Path | None:
    spec = importlib.util.find_spec("foolbox")
    return Path(list(spec.submodule_search_locations)[0]) / "data" if spec and spec.submodule_search_locations else None


def demo_roots(tmp: Path, copies: int = 50) -> dict[str, Path]:
    """Roots built from real files shipped here: CIFAR-10/100 and ImageNet (foolbox images repeated
    ``copies`` times) and a CIFAR10-DVS tree of the real AEDAT4 recording (symlinks)."""
    from PIL import Image

    roots: dict[str, Path] = {}
    fb = _foolbox()
    if fb is not None:
        for name, prefix, folder in (("cifar10", "cifar10", "cifar-10-batches-py"), ("cifar100", "cifar100", "cifar-100-python")):
            files = sorted(fb.glob(f"{prefix}_*.png"))
            flat = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).transpose(0, 3, 1, 2).reshape(len(files), -1)
            flat = np.tile(flat, (copies, 1))
            labels = [int(f.stem.split("_")[-1]) for f in files] * copies
            out = tmp / name / folder
            out.mkdir(parents=True)
            key = "labels" if name == "cifar10" else "fine_labels"
            names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" else ["train", "test"]
            for n in names:
                with open(out / n, "wb") as f:
                    pickle.dump({"data": flat, key: labels}, f)
            with open(out / ("batches.meta" if name == "cifar10" else "meta"), "wb") as f:
                pickle.dump({"label_names" if name == "cifar10" else "fine_label_names": [str(i) for i in range(100)]}, f)
            roots[name] = tmp / name
        for split in ("train", "val"):
            for f in sorted(fb.glob("imagenet_*.jpg")):
                d = tmp / "imagenet" / split / f"n{int(f.stem.split('_')[-1]):08d}"
                d.mkdir(parents=True, exist_ok=True)
                for c in range(max(1, copies // 10)):
                    shutil.copy(f, d / f"{c}_{f.name}")
        roots["imagenet"] = tmp / "imagenet"
    aedat = CHECKOUT / "tests" / "data" / "test_data.aedat4" if CHECKOUT is not None else None
    if aedat is not None and aedat.is_file():
        for cls in ("airplane", "automobile"):
            d = tmp / "dvs" / "CIFAR10DVS" / cls
            d.mkdir(parents=True)
            for i in range(copies):
                shutil.copy(aedat, d / f"{cls}_{i}.aedat4") if i == 0 else os.symlink(d / f"{cls}_0.aedat4", d / f"{cls}_{i}.aedat4")
        roots["cifar10-dvs"] = tmp / "dvs"
    return roots


def _cases(tmp: Path, subset: int) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    from .datasets import build_datasets

    roots = demo_roots(tmp)
    yield "fashion-mnist", "Debian, 60,000 real", lambda: build_datasets("fashion-mnist")[0]
    yield "fashion-mnist-dvs", f"Debian, emulated subset {subset}", lambda: build_datasets(
        "fashion-mnist-dvs", subset=subset, progress=False)[0]
    for name in ("cifar10", "cifar100", "imagenet"):
        if name in roots:
            yield name, "foolbox images, repeated", lambda name=name: build_datasets(name, root=roots[name])[0]
    if "cifar10-dvs" in roots:
        kw = dict(root=roots["cifar10-dvs"], sensor_size=(346, 260, 2), cache=tmp / "frames")
        yield "cifar10-dvs", "real AEDAT4 (346x260), first read", lambda: build_datasets("cifar10-dvs", **kw)[0]
        yield "cifar10-dvs", "real AEDAT4, cached frames", lambda: build_datasets("cifar10-dvs", **kw)[0]


def measure_all(batches: int = 10, batch_size: int = 64, num_workers: int = 0, subset: int = 2000) -> pd.DataFrame:
    """One row per loader: loader images/s, CPU train-step images/s (same process), and their ratio."""
    rows = []
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, make in _cases(Path(tmp), subset):
            try:
                ds = make()
            except (FileNotFoundError, ValueError) as err:
                rows.append({"dataset": name, "source": source, "loader_img_s": float("nan"), "note": str(err)[:80]})
                continue
            rate = loader_throughput(ds, batch_size, batches, num_workers)
            rows.append({"dataset": name, "source": source, "loader_img_s": rate, "note": ""})
            print(f"[throughput] {name} ({source}): {rate:.0f} img/s", flush=True)
        steps = {}
        for n in sorted({r["dataset"] for r in rows}):
            steps[n] = train_step_throughput(n, batch_size=min(batch_size, 8), steps=2,
                                             image_size=64 if n == "imagenet" else None)
            print(f"[throughput] train step {n}: {steps[n]:.0f} img/s", flush=True)
    df = pd.DataFrame(rows)
    df.attrs["emulator_img_s"] = emulator_throughput(subset)
    print(f"[throughput] emulator (Fashion-MNIST test images, {subset}, uncached): {df.attrs['emulator_img_s']:.0f} img/s",
          flush=True)
    df["train_step_img_s"] = df["dataset"].map(steps)
    df["loader_share_of_epoch"] = df["train_step_img_s"] / (df["loader_img_s"] + df["train_step_img_s"])
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dta_lib.data.throughput", description=__doc__)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (each runs torch single-threaded)")
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--out", default=None, help="CSV path (written atomically)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    df = measure_all(args.batches, args.batch_size, args.workers, args.subset)
    print(df.to_markdown(index=False, floatfmt=".3g") if importlib.util.find_spec("tabulate") else df.to_string())
    if args.out:
        from .registry import atomic_write
        atomic_write(Path(args.out), lambda tmp: df.to_csv(tmp, index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
