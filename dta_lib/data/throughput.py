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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..paths import CHECKOUT
from .datasets import build_datasets
from .registry import dataset_info


def loader_throughput(dataset: Dataset, batch_size: int = 64, batches: int = 10, num_workers: int = 0,
                      seed: int = 0) -> float:
    """Samples/s of a shuffled ``DataLoader`` over ``batches`` full batches (after one warm-up batch)."""
    it = iter(DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=True,
                         generator=torch.Generator().manual_seed(seed)))
    next(it)
    n, start = 0, time.perf_counter()
    for _, (x, _) in zip(range(batches), it):
        n += len(x)
    return n / (time.perf_counter() - start)


def train_step_throughput(name: str, batch_size: int = 64, steps: int = 3, time_steps: int | None = None,
                          width: float = 0.25, attention: str = "dta", image_size: int | None = None) -> float:
    """Samples/s of forward + backward + SGD step of ``ms_resnet18`` (``width``) on random input of ``name``'s shape."""
    from ..models.ms_resnet import ms_resnet18

    info = dataset_info(name)
    t, size = time_steps or info.default_time_steps, image_size or info.image_size
    model = ms_resnet18(info.num_classes, t, attention, info.in_channels, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(batch_size, *((t,) if info.is_event else ()), info.in_channels, size, size)
    inp, y = x if info.is_event else x.unsqueeze(1).expand(-1, t, -1, -1, -1), torch.randint(info.num_classes, (batch_size,))
    start = time.perf_counter()
    for i in range(steps + 1):  # the first step warms up
        if i == 1:
            start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(inp).mean(1), y).backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - start)


def demo_roots(tmp: Path, copies: int = 50) -> dict[str, Path]:
    """Roots built from real files shipped here: CIFAR-10/100 and ImageNet (foolbox images repeated
    ``copies`` times) and a CIFAR10-DVS tree of the real AEDAT4 recording (symlinks)."""
    from PIL import Image

    roots: dict[str, Path] = {}
    spec = importlib.util.find_spec("foolbox")
    if spec and spec.submodule_search_locations:
        fb = Path(list(spec.submodule_search_locations)[0]) / "data"
        for name, folder, key, batches, (meta, meta_key) in (
                ("cifar10", "cifar-10-batches-py", "labels", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                 ("batches.meta", "label_names")),
                ("cifar100", "cifar-100-python", "fine_labels", ["train", "test"], ("meta", "fine_label_names"))):
            files = sorted(fb.glob(f"{name}_*.png"))
            flat = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).transpose(0, 3, 1, 2)
            batch = {"data": np.tile(flat.reshape(len(files), -1), (copies, 1)),
                     key: [int(f.stem.split("_")[-1]) for f in files] * copies}
            (tmp / name / folder).mkdir(parents=True)
            for n, obj in [(b, batch) for b in batches] + [(meta, {meta_key: [str(i) for i in range(100)]})]:
                (tmp / name / folder / n).write_bytes(pickle.dumps(obj))
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
            shutil.copy(aedat, d / f"{cls}_0.aedat4")
            for i in range(1, copies):
                os.symlink(d / f"{cls}_0.aedat4", d / f"{cls}_{i}.aedat4")
        roots["cifar10-dvs"] = tmp / "dvs"
    return roots


def measure_all(batches: int = 10, batch_size: int = 64, num_workers: int = 0, subset: int = 2000) -> pd.DataFrame:
    """One row per loader: loader images/s, CPU train-step images/s (same process), and their ratio."""
    from .emulator import emulate

    rows = []
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        roots = demo_roots(Path(tmp))
        dvs = dict(root=roots.get("cifar10-dvs"), sensor_size=(346, 260, 2), cache=Path(tmp) / "frames")
        cases = [("fashion-mnist", "Debian, 60,000 real", {}),
                 ("fashion-mnist-dvs", f"Debian, emulated subset {subset}", dict(subset=subset, progress=False))]
        cases += [(n, "foolbox images, repeated", dict(root=roots[n])) for n in ("cifar10", "cifar100", "imagenet")
                  if n in roots]
        if "cifar10-dvs" in roots:
            cases += [("cifar10-dvs", "real AEDAT4 (346x260), first read", dvs),
                      ("cifar10-dvs", "real AEDAT4, cached frames", dvs)]
        for name, source, kw in cases:
            try:
                ds = build_datasets(name, **kw)[0]
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
    try:  # the emulator on real Fashion-MNIST test images, uncached (NaN when the data is absent)
        images = build_datasets("fashion-mnist", train_transform=False)[1].data[:subset]
        start = time.perf_counter()
        emulate(images)
        df.attrs["emulator_img_s"] = len(images) / (time.perf_counter() - start)
    except FileNotFoundError:
        df.attrs["emulator_img_s"] = float("nan")
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
        from ..atomic import atomic_write
        atomic_write(Path(args.out), lambda tmp: df.to_csv(tmp, index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
