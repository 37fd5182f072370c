"""ImageNet-1k through torchvision ``ImageFolder`` (``<root>/train/<wnid>/*.JPEG``, ``<root>/val/<wnid>/*``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from .common import SingleThreaded, balanced_subset
from .registry import dataset_info, resolve_root

__all__ = ["build_imagenet", "load_rgb"]


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB; a corrupt or truncated file raises ``ValueError`` naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or truncated image file {path}: {err}") from err


def _present(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "val").is_dir() and any((root / "val").iterdir())


def imagenet_transforms(train: bool, size: int = 224, resize: int = 256) -> SingleThreaded:
    """Random-resized-crop 224 + flip (train) or, as the release, *squash* to 256 x 256 (aspect ratio not kept)
    + center crop 224 (test), then normalise."""
    info = dataset_info("imagenet")
    ops: list[torch.nn.Module] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()] if train \
        else [v2.Resize((resize, resize), antialias=True), v2.CenterCrop(size)]  # on the PIL image (fast)
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]
    return SingleThreaded(v2.Compose(ops))


def build_imagenet(root: str | os.PathLike | None = None, download: bool = False, train_transform: bool = True,
                   subset: int | None = None, test_subset: Any = "same", image_size: int = 224) -> tuple[Any, Any]:
    """ImageNet train/val ``ImageFolder`` pair; ImageNet cannot be downloaded automatically."""
    if download:
        raise ValueError("imagenet: download=True is not possible (licence); place the extracted "
                         "ILSVRC2012 train/ and val/ class folders under root")
    path = resolve_root("imagenet", root, _present, False, "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG")
    resize = round(image_size * 256 / 224)
    train = datasets.ImageFolder(str(path / "train"), loader=load_rgb,
                                 transform=imagenet_transforms(train_transform, image_size, resize) if train_transform
                                 else imagenet_transforms(False, image_size, resize))
    test = datasets.ImageFolder(str(path / "val"), loader=load_rgb, transform=imagenet_transforms(False, image_size, resize))
    n = dataset_info("imagenet").num_classes
    return balanced_subset(train, subset, n), balanced_subset(test, subset if test_subset == "same" else test_subset, n)
