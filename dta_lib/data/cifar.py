"""CIFAR-10 / CIFAR-100 through torchvision, accepting user-supplied batch files (docs/data.md, "CIFAR integrity"):
the files of the requested split and the meta file must exist (``verify_md5=True``: match the official md5s) and
unpickle to ``[N, 3072]`` data with ``N`` labels; a bad file raises ``ValueError`` naming it."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from .common import balanced_pair, image_transform
from .registry import dataset_info, resolve_root


class _Checked:
    """Mix-in over torchvision's CIFAR classes: presence (or md5) check, errors naming the bad file."""

    def __init__(self, root: str | Path, train: bool = True, verify_md5: bool = False, **kwargs: Any) -> None:
        # torchvision checks (train_list + test_list) and meta: here only the requested split, md5 None = presence
        strip = (lambda files: [list(f) for f in files]) if verify_md5 else (lambda files: [[f, None] for f, _ in files])
        self.train_list, self.test_list = (strip(self.train_list), []) if train else ([], strip(self.test_list))
        self.meta = dict(self.meta, **({} if verify_md5 else {"md5": None}))
        try:
            super().__init__(root, train=train, **kwargs)  # type: ignore[call-arg]
        except RuntimeError as err:
            missing = [p for p, md5 in self._files() if not check_integrity(p, md5)]
            raise FileNotFoundError(f"CIFAR files missing{' or failing md5' if verify_md5 else ''}: {missing}; "
                                    "pass download=True or supply torchvision's CIFAR layout") from err
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{self._describe_bad_file()}: {err!r}") from err

    def _files(self) -> list[tuple[str, str | None]]:  # (path, md5 or None) of this split's files and the meta file
        files = self.train_list + self.test_list + [(self.meta["filename"], self.meta["md5"])]
        return [(os.path.join(self.root, self.base_folder, f), md5) for f, md5 in files]  # type: ignore[attr-defined]

    def _check_integrity(self) -> bool:
        return all(check_integrity(p, md5) for p, md5 in self._files())

    def _describe_bad_file(self) -> str:  # the first file of this split that is not a valid CIFAR batch
        for path, _ in self._files():
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                if os.path.basename(path) == self.meta["filename"]:
                    entry[self.meta["key"]]
                    continue
                data = np.asarray(entry["data"])
                labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    raise ValueError(f"data shape {data.shape}, {len(labels)} labels; expected [N, 3072] and N labels")
            except Exception as err:  # noqa: BLE001 - any failure identifies the file
                return f"corrupt or truncated CIFAR file {path} ({err!r})"
        return f"corrupt CIFAR folder {os.path.join(self.root, self.base_folder, '')}"  # type: ignore[attr-defined]


class CheckedCIFAR10(_Checked, datasets.CIFAR10):
    pass


class CheckedCIFAR100(_Checked, datasets.CIFAR100):
    pass


def build_cifar(name: str, root: str | os.PathLike | None = None, download: bool = False,
                train_transform: bool = True, subset: int | None = None, test_subset: Any = "same",
                verify_md5: bool = False) -> tuple[Any, Any]:
    """CIFAR-10/100 train/test with the release augmentation (crop 32 pad 4, flip, normalise)."""
    info = dataset_info(name)
    cls = CheckedCIFAR10 if name == "cifar10" else CheckedCIFAR100
    files = [f for f, _ in cls.train_list + cls.test_list]
    layout = f"<root>/{cls.base_folder}/ with torchvision's pickled batches ({', '.join(files)}, {cls.meta['filename']})"
    path = resolve_root(name, root, lambda r: any((r / cls.base_folder / f).is_file() for f in files), download, layout)
    train = cls(path, train=True, transform=image_transform(info.mean, info.std, train=train_transform, crop=32,
                                                            padding=4), download=download, verify_md5=verify_md5)
    test = cls(path, train=False, transform=image_transform(info.mean, info.std, train=False), download=download,
               verify_md5=verify_md5)
    return balanced_pair(train, test, subset, test_subset, info.num_classes)
