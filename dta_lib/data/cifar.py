"""CIFAR-10 / CIFAR-100 through torchvision, accepting user-supplied batch files.

torchvision checks the md5 of every pickled batch (``_check_integrity``) against the official
archive, so a folder in the same format written by someone else (e.g. the tests' real images
from the ``foolbox`` wheel) reads as "not found". :class:`CheckedCIFAR10` checks presence of
the files of the requested split (plus ``batches.meta``); pass ``verify_md5=True`` to keep
torchvision's md5 check. A file that does not unpickle to the expected arrays raises a
``ValueError`` naming it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from .common import balanced_subset, image_transform
from .registry import dataset_info, resolve_root

__all__ = ["CheckedCIFAR10", "CheckedCIFAR100", "build_cifar"]


class _Checked:
    """Mix-in over torchvision's CIFAR classes: presence (or md5) check, errors naming the bad file."""

    verify_md5: bool = False

    def __init__(self, root: str | Path, train: bool = True, verify_md5: bool = False, **kwargs: Any) -> None:
        self.verify_md5 = verify_md5
        self.train = train
        try:
            super().__init__(root, train=train, **kwargs)  # type: ignore[call-arg]
        except RuntimeError as err:
            missing = [self._path(f) for f, md5 in self._files()
                       if not check_integrity(self._path(f), md5 if verify_md5 else None)]
            raise FileNotFoundError(f"CIFAR files missing{' or failing md5' if verify_md5 else ''}: {missing}; "
                                    "pass download=True or supply torchvision's CIFAR layout") from err
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{self._describe_bad_file()}: {err!r}") from err

    def _files(self) -> list[tuple[str, str]]:
        split = self.train_list if self.train else self.test_list  # type: ignore[attr-defined]
        return list(split) + [(self.meta["filename"], self.meta["md5"])]  # type: ignore[attr-defined]

    def _path(self, name: str) -> str:
        return os.path.join(self.root, self.base_folder, name)  # type: ignore[attr-defined]

    def _check_integrity(self) -> bool:
        return all(check_integrity(self._path(f), md5 if self.verify_md5 else None) for f, md5 in self._files())

    def _load_meta(self) -> None:
        path = self._path(self.meta["filename"])  # type: ignore[attr-defined]
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        self.classes = meta[self.meta["key"]]  # type: ignore[attr-defined]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _describe_bad_file(self) -> str:
        """Find the first file of this split that is not a valid CIFAR batch (called on failure only)."""
        for name, _ in self._files():
            path = self._path(name)
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                if name == self.meta["filename"]:  # type: ignore[attr-defined]
                    entry[self.meta["key"]]  # type: ignore[attr-defined]
                    continue
                data = np.asarray(entry["data"])
                labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    raise ValueError(f"data shape {data.shape}, {len(labels)} labels; expected [N, 3072] and N labels")
            except Exception as err:  # noqa: BLE001 - any failure identifies the file
                return f"corrupt or truncated CIFAR file {path} ({err!r})"
        return f"corrupt CIFAR folder {self._path('')}"


class CheckedCIFAR10(_Checked, datasets.CIFAR10):
    """torchvision ``CIFAR10`` with a presence check instead of md5 (see module docstring)."""


class CheckedCIFAR100(_Checked, datasets.CIFAR100):
    """torchvision ``CIFAR100`` with a presence check instead of md5 (see module docstring)."""


def _present(cls: type) -> Any:
    def check(root: Path) -> bool:
        folder = root / cls.base_folder
        return folder.is_dir() and any((folder / f).is_file() for f, _ in cls.train_list + cls.test_list)
    return check


def build_cifar(name: str, root: str | os.PathLike | None = None, download: bool = False,
                train_transform: bool = True, subset: int | None = None, test_subset: Any = "same",
                verify_md5: bool = False) -> tuple[Any, Any]:
    """CIFAR-10/100 train/test with the release augmentation (crop 32 pad 4, flip, normalise)."""
    info = dataset_info(name)
    cls = CheckedCIFAR10 if name == "cifar10" else CheckedCIFAR100
    layout = f"<root>/{cls.base_folder}/ with torchvision's pickled batches ({', '.join(f for f, _ in cls.train_list + cls.test_list)}, {cls.meta['filename']})"
    path = resolve_root(name, root, _present(cls), download, layout)
    train_tf = image_transform(info.mean, info.std, train=train_transform, crop=32, padding=4)
    test_tf = image_transform(info.mean, info.std, train=False)
    train = cls(path, train=True, transform=train_tf, download=download, verify_md5=verify_md5)
    test = cls(path, train=False, transform=test_tf, download=download, verify_md5=verify_md5)
    test_n = subset if test_subset == "same" else test_subset
    return balanced_subset(train, subset, info.num_classes), balanced_subset(test, test_n, info.num_classes)
