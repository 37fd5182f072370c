"""Fashion-MNIST through torchvision, found offline in Debian's ``dataset-fashion-mnist``.

torchvision's ``FashionMNIST`` reads ``<root>/FashionMNIST/raw/*-ubyte``. A root holding the
Debian layout (the four ``*-ubyte.gz`` files directly, as in ``/usr/share/datasets/fashion-mnist``)
is gunzipped once into ``<cache_dir>/fashion-mnist/FashionMNIST/raw/`` (each file written to a
temp name then ``os.replace``d); nothing is written next to the source files.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

from torchvision import datasets
from torchvision.datasets.mnist import read_image_file, read_label_file

from .common import balanced_subset, image_transform
from .registry import atomic_write, cache_dir, cache_key, dataset_info, resolve_root

__all__ = ["DEBIAN_FASHION_MNIST", "FILES", "build_fashion_mnist", "materialise_debian"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _has_torchvision_layout(root: Path) -> bool:
    return all((_raw(root) / f).is_file() for f in FILES)


def _has_debian_layout(root: Path) -> bool:
    return all((root / f"{f}.gz").is_file() for f in FILES)


def _present(root: Path) -> bool:
    return _has_torchvision_layout(root) or _has_debian_layout(root)


def materialise_debian(source: Path, target_root: Path | None = None) -> Path:
    """Gunzip the Debian ``*.gz`` files into ``<target_root>/FashionMNIST/raw`` (atomic); return the root."""
    if target_root is None:
        stamp = {f: (source / f"{f}.gz").stat().st_size for f in FILES}
        target_root = cache_dir() / "fashion-mnist" / cache_key(source=str(source.resolve()), sizes=stamp)
    root = target_root
    for name in FILES:
        out = _raw(root) / name
        if out.is_file():
            continue
        src = source / f"{name}.gz"

        def write(tmp: Path, src: Path = src) -> None:
            try:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as err:
                raise ValueError(f"corrupt or truncated Fashion-MNIST file {src}: {err}") from err
        atomic_write(out, write)
    return root


def _check_files(raw: Path) -> None:
    """Read each raw file once; a truncated/corrupt one raises ``ValueError`` naming it."""
    for name in FILES:
        path = raw / name
        try:
            (read_image_file if "images" in name else read_label_file)(str(path))
        except (RuntimeError, ValueError, AssertionError, OSError) as err:
            raise ValueError(f"corrupt or truncated Fashion-MNIST file {path}: {err}") from err


def build_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False, train_transform: bool = True,
                        subset: int | None = None, test_subset: Any = "same", image_size: int = 28) -> tuple[Any, Any]:
    """Fashion-MNIST train (60,000) / test (10,000) as normalised ``[1, image_size, image_size]`` tensors.

    Train augmentation: random crop with ``image_size // 14`` padding and horizontal flip.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r}: expected an int >= 8 (native 28)")
    layout = "<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, or the four *.gz files directly in <root>"
    path = resolve_root("fashion-mnist", root, _present, download, layout, offline=(DEBIAN_FASHION_MNIST,))
    if not _has_torchvision_layout(path) and _has_debian_layout(path):
        path = materialise_debian(path)
    info = dataset_info("fashion-mnist")
    resize = None if image_size == 28 else image_size
    train_tf = image_transform(info.mean, info.std, train=train_transform, crop=image_size,
                               padding=max(1, image_size // 14), resize=resize)
    test_tf = image_transform(info.mean, info.std, train=False, resize=resize)
    try:
        train = datasets.FashionMNIST(str(path), train=True, transform=train_tf, download=download)
        test = datasets.FashionMNIST(str(path), train=False, transform=test_tf, download=download)
    except (RuntimeError, ValueError, AssertionError):
        _check_files(_raw(path))
        raise
    return (balanced_subset(train, subset, info.num_classes),
            balanced_subset(test, subset if test_subset == "same" else test_subset, info.num_classes))
