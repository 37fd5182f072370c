"""Static datasets on real images: CIFAR-10/100 and ImageNet from the foolbox 3.3.4 wheel written into the
on-disk formats, Fashion-MNIST from Debian's dataset-fashion-mnist; and every bad-input case."""
from __future__ import annotations

import gzip
import importlib.util
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dta_lib.data.registry import DATASETS, dataset_info
from dta_lib.data.datasets import build_datasets
from dta_lib.data import fashion as fashion_mod

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Debian dataset-fashion-mnist not installed")


def foolbox_data() -> Path:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox 3.3.4 not installed (it comes with the [test] extra: pip install -e '.[test]')")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def foolbox_images(prefix: str) -> tuple[np.ndarray, list[int]]:
    files = sorted(foolbox_data().glob(f"{prefix}_*.png"))
    assert len(files) == 20, files
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return images, [int(f.stem.split("_")[-1]) for f in files]


def write_cifar(root: Path, name: str, images: np.ndarray, labels: list[int]) -> Path:
    """Write HWC uint8 images in torchvision's pickled CIFAR layout: the test split holds all images; the train
    split holds them spread over the batch files (CIFAR-10: 5 batches)."""
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        parts = np.array_split(np.arange(len(images)), 5)
        for i, idx in enumerate(parts, 1):
            _dump(folder / f"data_batch_{i}", {"data": flat[idx], "labels": [labels[j] for j in idx]})
        _dump(folder / "test_batch", {"data": flat, "labels": labels})
        _dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for split in ("train", "test"):
            _dump(folder / split, {"data": flat, "fine_labels": labels, "coarse_labels": [0] * len(labels)})
        _dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    return folder


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def to_uint8(x: torch.Tensor, name: str) -> np.ndarray:
    info = dataset_info(name)
    mean = torch.tensor(info.mean)[:, None, None]
    std = torch.tensor(info.std)[:, None, None]
    return (x * std + mean).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name,prefix", [("cifar10", "cifar10"), ("cifar100", "cifar100")])
def test_cifar_real_images_round_trip(tmp_path: Path, name: str, prefix: str) -> None:
    images, labels = foolbox_images(prefix)
    write_cifar(tmp_path, name, images, labels)
    train, test = build_datasets(name, root=tmp_path, train_transform=False)
    assert len(test) == 20 and len(train) == 20
    for i in range(20):
        x, y = test[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert y == labels[i]
        np.testing.assert_array_equal(to_uint8(x, name), images[i])
    # training split (spread over several batch files) keeps order and pixels too
    np.testing.assert_array_equal(to_uint8(train[7][0], name), images[7])
    # with augmentation: same shape, normalised, differs from the plain image for some sample
    aug, _ = build_datasets(name, root=tmp_path)
    torch.manual_seed(0)
    assert any(not torch.equal(aug[i][0], train[i][0]) for i in range(20))


def test_cifar_md5_check_is_optional(tmp_path: Path) -> None:
    images, labels = foolbox_images("cifar10")
    write_cifar(tmp_path, "cifar10", images, labels)
    with pytest.raises(FileNotFoundError, match="md5"):
        build_datasets("cifar10", root=tmp_path, verify_md5=True)


def test_cifar_corrupt_file_is_named(tmp_path: Path) -> None:
    images, labels = foolbox_images("cifar10")
    folder = write_cifar(tmp_path, "cifar10", images, labels)
    bad = folder / "test_batch"
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch"):
        build_datasets("cifar10", root=tmp_path)


def test_imagenet_real_jpegs(tmp_path: Path) -> None:
    files = sorted(foolbox_data().glob("imagenet_*.jpg"))
    assert len(files) == 20
    for split in ("train", "val"):
        for f in files:
            label = f.stem.split("_")[-1]
            (tmp_path / split / f"n{int(label):08d}").mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / split / f"n{int(label):08d}" / f.name)
    train, val = build_datasets("imagenet", root=tmp_path, image_size=64)
    x, y = val[0]
    assert x.shape == (3, 64, 64) and isinstance(y, int)
    assert train[0][0].shape == (3, 64, 64)
    # the centre crop of the plain eval transform is the real picture (not blank)
    assert x.std() > 0.1
    # a truncated JPEG names the file
    bad = Path(val.samples[0][0])
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(ValueError, match=bad.name):
        val[0]


@needs_fashion
def test_fashion_mnist_debian_sizes_and_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTA_DATA_ROOT", raising=False)
    monkeypatch.setenv("DTA_CACHE_DIR", str(tmp_path / "cache"))
    train, test = build_datasets("fashion-mnist", train_transform=False)
    assert (len(train), len(test)) == (60_000, 10_000)
    x, y = test[0]
    assert x.shape == (1, 28, 28) and 0 <= y < 10
    # nothing written next to the Debian files; the gunzipped copy went to the cache dir
    assert list((tmp_path / "cache" / "fashion-mnist").glob("*/FashionMNIST/raw/train-images-idx3-ubyte"))
    # foolbox ships the first 20 real test images: the same pixels and labels come back
    files = sorted(foolbox_data().glob("fashionMNIST_*.png"))
    for i, f in enumerate(files):
        ref = np.asarray(Image.open(f).convert("L"))
        got = to_uint8(test[i][0], "fashion-mnist")[..., 0]
        np.testing.assert_array_equal(got, ref)
        assert test[i][1] == int(f.stem.split("_")[-1])
    # the documented mean / std are those of the training images
    raw = train.data.float() / 255
    assert abs(raw.mean().item() - dataset_info("fashion-mnist").mean[0]) < 1e-3
    assert abs(raw.std().item() - dataset_info("fashion-mnist").std[0]) < 1e-3


@needs_fashion
def test_fashion_mnist_subset_and_image_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_CACHE_DIR", str(tmp_path / "cache"))
    train, test = build_datasets("fashion-mnist", root=FASHION, subset=95, test_subset=20, image_size=32)
    assert (len(train), len(test)) == (95, 20)
    counts = np.bincount(train.targets, minlength=10)
    assert counts.tolist() == [10] * 5 + [9] * 5  # per-class balanced, remainder to the lowest ids
    assert train.indices == sorted(train.indices)
    assert train[0][0].shape == (1, 32, 32)


def test_fashion_mnist_corrupt_gz_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "debian"
    src.mkdir()
    for name in fashion_mod.FILES:
        payload = bytes(16) if "images" in name else bytes(8)
        (src / f"{name}.gz").write_bytes(gzip.compress(payload))
    good = (src / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        build_datasets("fashion-mnist", root=src)


def test_fashion_mnist_truncated_raw_file_is_named(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    header = {"images": (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2,
              "labels": (2049).to_bytes(4, "big") + (2).to_bytes(4, "big")}
    for name in fashion_mod.FILES:
        kind = "images" if "images" in name else "labels"
        body = bytes(2 * 784) if kind == "images" else bytes(2)
        (raw / name).write_bytes(header[kind] + body)
    (raw / "train-images-idx3-ubyte").write_bytes(header["images"] + bytes(100))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        build_datasets("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_missing_or_empty_root(tmp_path: Path, name: str, state: str) -> None:
    root = tmp_path / "data"
    if state == "empty":
        root.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        build_datasets(name, root=root)
    msg = str(err.value)
    assert str(root) in msg and "download=True" in msg and "layout" in msg
    if name.startswith("fashion"):
        assert "dataset-fashion-mnist" in msg
    assert root.exists() == (state == "empty")
    if state == "empty":
        assert list(root.iterdir()) == []


def test_env_root_without_data_falls_through_to_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match="DTA_DATA_ROOT"):
        build_datasets("cifar10")
    assert not (tmp_path / "env").exists()


def test_env_root_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = foolbox_images("cifar10")
    write_cifar(tmp_path, "cifar10", images, labels)
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path))
    _, test = build_datasets("cifar10")
    assert test[3][1] == labels[3]


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="cifar10-dvs") as err:
        build_datasets("mnist")
    assert "fashion-mnist-dvs" in str(err.value)


@pytest.mark.parametrize("steps", [0, -3, 2.5, "10", True, 100_000])
def test_impossible_time_steps(steps: object) -> None:
    with pytest.raises(ValueError, match="time_steps") as err:
        build_datasets("cifar10-dvs", time_steps=steps)
    assert "valid choices" in str(err.value)


def test_unknown_option_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_transform"):
        build_datasets("cifar10", root=tmp_path, augment=True)


def test_bad_subset(tmp_path: Path) -> None:
    images, labels = foolbox_images("cifar10")
    write_cifar(tmp_path, "cifar10", images, labels)
    with pytest.raises(ValueError, match="subset"):
        build_datasets("cifar10", root=tmp_path, subset=0)


def test_dataset_info_fields() -> None:
    info = dataset_info("cifar10-dvs")
    assert (info.num_classes, info.in_channels, info.image_size, info.default_time_steps, info.is_event) == (10, 2, 48, 10, True)
    assert dataset_info("cifar100").num_classes == 100 and len(dataset_info("cifar100").mean) == 3
    assert dataset_info("fashion-mnist").in_channels == 1
    with pytest.raises(ValueError, match="valid choices"):
        dataset_info("svhn")


def test_cifar_normalisation_uses_the_release_constants() -> None:
    """The release's checkpoints were trained with these; a test image must be normalised the same way."""
    assert dataset_info("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert dataset_info("cifar10").std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("cifar100").mean == (0.5071, 0.4867, 0.4408)
    assert dataset_info("cifar100").std == (0.2675, 0.2565, 0.2761)


def test_imagenet_validation_squashes_then_crops() -> None:
    from PIL import Image

    from dta_lib.data.imagenet import imagenet_transforms

    img = np.zeros((300, 600, 3), dtype=np.uint8)
    img[:, :150] = 255  # the left quarter white
    out = imagenet_transforms(False)(Image.fromarray(img))
    assert tuple(out.shape) == (3, 224, 224)
    white = out[0, 112] > 0
    # squashed to 256 x 256 the white quarter spans columns 0-63, i.e. 0-47 of the centred 224 crop; an
    # aspect-keeping resize (256 x 512) would put it at 0-127 of 512 and the crop (144-367) would hold none
    assert bool(white[:46].all()) and not bool(white[50:].any())
