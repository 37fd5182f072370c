"""ImageNet-1k through torchvision ``ImageFolder`` (``<root>/train/<wnid>/*.JPEG``, ``<root>/val/<wnid>/*``)."""
from __future__ import annotations

import os
from typing import Any

from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from .common import SingleThreaded, balanced_pair, image_transform
from .registry import dataset_info, resolve_root


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB; a corrupt or truncated file raises ``ValueError`` naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or truncated image file {path}: {err}") from err


def imagenet_transforms(train: bool, size: int = 224, resize: int = 256) -> SingleThreaded:
    """Random-resized-crop 224 + flip (train) or, as the release, *squash* to 256 x 256 (aspect ratio not kept)
    + center crop 224 (test), then normalise."""
    info = dataset_info("imagenet")
    return image_transform(info.mean, info.std, train, ops=[v2.RandomResizedCrop(size, antialias=True),
                                                            v2.RandomHorizontalFlip()] if train
                           else [v2.Resize((resize, resize), antialias=True), v2.CenterCrop(size)])


def build_imagenet(root: str | os.PathLike | None = None, download: bool = False, train_transform: bool = True,
                   subset: int | None = None, test_subset: Any = "same", image_size: int = 224) -> tuple[Any, Any]:
    """ImageNet train/val ``ImageFolder`` pair; ImageNet cannot be downloaded automatically."""
    if download:
        raise ValueError("imagenet: download=True is not possible (licence); place the extracted "
                         "ILSVRC2012 train/ and val/ class folders under root")
    path = resolve_root("imagenet", root, lambda r: (r / "train").is_dir() and (r / "val").is_dir()
                        and any((r / "val").iterdir()), False,
                        "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG")
    resize = round(image_size * 256 / 224)
    train, test = (datasets.ImageFolder(str(path / split), loader=load_rgb,
                                        transform=imagenet_transforms(tf, image_size, resize))
                   for split, tf in (("train", train_transform), ("val", False)))
    return balanced_pair(train, test, subset, test_subset, dataset_info("imagenet").num_classes)
