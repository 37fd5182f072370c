"""Fashion-MNIST through torchvision (``<root>/FashionMNIST/raw/*-ubyte``), found offline in Debian's
``dataset-fashion-mnist``: a root holding the four ``*-ubyte.gz`` files directly is gunzipped once (atomically)
into ``<cache_dir>/fashion-mnist/<key>/FashionMNIST/raw/``; nothing is written next to the source files."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.mnist import read_image_file, read_label_file

from .common import balanced_pair, image_transform
from ..atomic import atomic_write
from ..paths import cache_dir
from .registry import cache_key, dataset_info, resolve_root

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_LAYOUT = ("<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, or the four *.gz files directly "
           "in <root>")


def _raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _has_torchvision_layout(root: Path) -> bool:
    return all((_raw(root) / f).is_file() for f in FILES)


def _has_debian_layout(root: Path) -> bool:
    return all((root / f"{f}.gz").is_file() for f in FILES)


def _corrupt(path: Path, err: Exception) -> ValueError:
    return ValueError(f"corrupt or truncated Fashion-MNIST file {path}: {err}")


def materialise_debian(source: Path) -> Path:
    """Gunzip the Debian ``*.gz`` files (atomically) into the root ``<cache_dir>/fashion-mnist/<key>``; return it."""
    stamp = {f: (source / f"{f}.gz").stat().st_size for f in FILES}
    target_root = cache_dir() / "fashion-mnist" / cache_key(source=str(source.resolve()), sizes=stamp)
    for name in FILES:
        src = source / f"{name}.gz"

        def write(tmp: Path, src: Path = src) -> None:
            try:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as err:
                raise _corrupt(src, err) from err
        if not (_raw(target_root) / name).is_file():
            atomic_write(_raw(target_root) / name, write)
    return target_root


def find_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The Fashion-MNIST root: ``root``, else ``$DTA_DATA_ROOT``, else Debian's copy, else (``download=True``)
    torchvision's download into the cache folder. ``FileNotFoundError`` lists where it looked."""
    present = lambda r: _has_torchvision_layout(r) or _has_debian_layout(r)  # noqa: E731
    path = resolve_root("fashion-mnist", root, present, download, _LAYOUT, offline=(DEBIAN_FASHION_MNIST,))
    if download and not present(path):
        datasets.FashionMNIST(str(path), train=False, download=True)
        datasets.FashionMNIST(str(path), train=True, download=True)
    return path


def load_fashion_mnist_samples(n: int = 1, offset: int = 0, split: str = "t10k", root: str | os.PathLike | None = None,
                               download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Records ``offset .. offset + n - 1`` of ``split`` (``"t10k"`` or ``"train"``) read straight from the IDX files
    (either layout): ``images`` ``[n, 1, 28, 28]`` float32 in ``[0, 1]``, ``labels`` ``[n]`` int64."""
    if split not in ("t10k", "train"):
        raise ValueError(f"split must be 't10k' or 'train', got {split!r}")
    base = find_fashion_mnist(root, download)

    def read(name: str) -> bytes:
        plain = _raw(base) / f"{split}-{name}-ubyte"
        if plain.is_file():
            return plain.read_bytes()
        with gzip.open(base / f"{split}-{name}-ubyte.gz", "rb") as f:
            return f.read()

    raw = read("images-idx3")
    magic, count, rows, cols = np.frombuffer(raw, ">u4", 4)
    if magic != 2051:
        raise ValueError(f"{base}: {split} images are not an IDX image file (magic {magic}, expected 2051)")
    if not (isinstance(n, int) and n >= 1 and isinstance(offset, int) and 0 <= offset and offset + n <= count):
        raise ValueError(f"need 1 <= n and 0 <= offset with offset + n <= {count}, got n={n!r}, offset={offset!r}")
    images = np.frombuffer(raw, np.uint8, n * rows * cols, 16 + offset * rows * cols).reshape(n, 1, rows, cols)
    labels = np.frombuffer(read("labels-idx1"), np.uint8, n, 8 + offset)
    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels.astype(np.int64))


def build_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False, train_transform: bool = True,
                        subset: int | None = None, test_subset: Any = "same", image_size: int = 28) -> tuple[Any, Any]:
    """Fashion-MNIST train (60,000) / test (10,000) as normalised ``[1, image_size, image_size]`` tensors;
    train augmentation: random crop with ``image_size // 14`` padding and horizontal flip."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r}: expected an int >= 8 (native 28)")
    path = find_fashion_mnist(root, download)
    if not _has_torchvision_layout(path) and _has_debian_layout(path):
        path = materialise_debian(path)
    info = dataset_info("fashion-mnist")
    resize = None if image_size == 28 else image_size
    train_tf = image_transform(info.mean, info.std, train=train_transform, crop=image_size,
                               padding=max(1, image_size // 14), resize=resize)
    try:
        train = datasets.FashionMNIST(str(path), train=True, transform=train_tf, download=download)
        test = datasets.FashionMNIST(str(path), train=False, download=download,
                                     transform=image_transform(info.mean, info.std, train=False, resize=resize))
    except (RuntimeError, ValueError, AssertionError):
        for name in FILES:  # read each raw file once: a truncated/corrupt one raises ``ValueError`` naming it
            try:
                (read_image_file if "images" in name else read_label_file)(str(_raw(path) / name))
            except (RuntimeError, ValueError, AssertionError, OSError) as err:
                raise _corrupt(_raw(path) / name, err) from err
        raise
    return balanced_pair(train, test, subset, test_subset, info.num_classes)
