"""Helpers shared by the dataset builders: balanced subsets and image transforms."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision.transforms import v2


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run per-sample tensor ops with one intra-op thread (restored afterwards), as DataLoader workers do: they
    gain nothing from more and lose a lot on busy cores (EventAugment 0.9 vs 3.9-31 ms, see docs/data.md)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class SingleThreaded(torch.nn.Module):
    """Wrap a transform so that it runs under :func:`single_threaded`."""

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: Any) -> Any:
        with single_threaded():
            return self.transform(x)


class LabelledSubset(Subset):
    """:class:`torch.utils.data.Subset` that keeps ``targets`` (and ``classes`` when the base has them)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))
        base = list(getattr(dataset, "targets"))
        self.targets = [int(base[i]) for i in self.indices]
        self.classes = getattr(dataset, "classes", None)


def balanced_subset(dataset: Dataset, n: int | None, num_classes: int) -> Dataset:
    """Per-class balanced subset of ``n`` samples: the first ``n // num_classes`` of every class in
    dataset order (the remainder goes to the lowest class ids), topped up in dataset order when a
    class runs short. ``None`` or ``n >= len(dataset)`` returns the dataset unchanged."""
    if n is None:
        return dataset
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"subset={n!r}: expected a positive int or None")
    if n >= len(dataset):
        return dataset
    quota = [n // num_classes + (c < n % num_classes) for c in range(num_classes)]
    chosen: list[int] = []
    for i, t in enumerate(int(t) for t in getattr(dataset, "targets")):
        if 0 <= t < num_classes and quota[t] > 0:
            quota[t] -= 1
            chosen.append(i)
    if len(chosen) < n:
        taken = set(chosen)
        chosen += [i for i in range(len(dataset)) if i not in taken][: n - len(chosen)]
    return LabelledSubset(dataset, sorted(chosen))


def balanced_pair(train: Dataset, test: Dataset, subset: int | None, test_subset: Any, num_classes: int
                  ) -> tuple[Dataset, Dataset]:
    """:func:`balanced_subset` of both splits; ``test_subset="same"`` takes ``subset`` for the test split too."""
    return (balanced_subset(train, subset, num_classes),
            balanced_subset(test, subset if test_subset == "same" else test_subset, num_classes))


def image_transform(mean: Sequence[float], std: Sequence[float], train: bool, crop: int | None = None,
                    padding: int = 0, resize: int | None = None, ops: Sequence[torch.nn.Module] = ()
                    ) -> SingleThreaded:
    """PIL image -> normalised float ``[C,H,W]``; with ``train``: random crop (``padding``) and flip. ``ops``, when
    given, replaces the geometric ops (run first, on the PIL image: fast)."""
    if not ops:
        ops = [v2.Resize(resize, antialias=True)] if resize is not None else []
        ops += [v2.RandomCrop(crop, padding=padding)] if train and crop is not None else []
        ops += [v2.RandomHorizontalFlip()] if train else []
    ops = [*ops, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return SingleThreaded(v2.Compose(ops))
