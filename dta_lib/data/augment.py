"""Batch mixing (CutMix / MixUp with soft labels; coin drawn per batch, unlike the release's per epoch, see
docs/data.md) and the event-frame TrivialAugment-style op."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .common import single_threaded


class BatchMix:
    """Per-batch CutMix / MixUp (torchvision ``transforms.v2``, one drawn at random when both alphas are > 0) with
    probability ``p``, else one-hot targets; returns soft targets ``[B, K]``, label-smoothed ``(1 - eps) * y + eps / K``.
    Event frames ``[B, T, 2, H, W]`` are mixed as ``[B, T*2, H, W]``: every frame gets the same box / lambda."""

    def __init__(self, num_classes: int, cutmix_alpha: float = 1.0, mixup_alpha: float = 0.0, p: float = 0.5,
                 label_smoothing: float = 0.0) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r}: expected an int >= 2")
        if cutmix_alpha < 0 or mixup_alpha < 0:
            raise ValueError(f"cutmix_alpha={cutmix_alpha}, mixup_alpha={mixup_alpha}: expected values >= 0")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p={p}: expected a probability in [0, 1]")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing}: expected a value in [0, 1)")
        self.num_classes, self.p, self.label_smoothing = num_classes, p, label_smoothing
        ops = [mix(alpha=a, num_classes=num_classes) for mix, a in ((v2.CutMix, cutmix_alpha), (v2.MixUp, mixup_alpha))
               if a > 0]
        self.mix: torch.nn.Module | None = None if not ops else ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() not in (4, 5):
            raise ValueError(f"images of shape {tuple(images.shape)}: expected [B,C,H,W] or [B,T,C,H,W]")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.dtype.is_floating_point:
            raise ValueError(f"labels of shape {tuple(labels.shape)} dtype {labels.dtype}: expected int [B] "
                             f"with B={images.shape[0]}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}; got {int(labels.min())}..{int(labels.max())}")
        if self.mix is not None and self.p > 0 and float(torch.rand(())) < self.p:
            flat, targets = self.mix(images.reshape(images.shape[0], -1, *images.shape[-2:]), labels)
            images = flat.reshape(images.shape)
        else:
            targets = F.one_hot(labels, self.num_classes).to(images.dtype if images.is_floating_point() else torch.float32)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return images, targets


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k y_k log softmax(z)_k`` (``F.cross_entropy`` with probability targets);
    ``logits`` ``[B, K]``, or ``[B, T, K]`` averaged over T first (the paper's loss on time-averaged logits)."""
    if logits.dim() == 3:
        logits = logits.mean(1)
    if logits.dim() != 2 or soft_targets.shape != logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft_targets {tuple(soft_targets.shape)}: expected "
                         "logits [B,K] or [B,T,K] and soft_targets [B,K]")
    return F.cross_entropy(logits, soft_targets.to(logits.dtype))


EVENT_OPS = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")


class EventAugment(torch.nn.Module):
    """Horizontal flip (p=0.5), then one op drawn uniformly from :data:`EVENT_OPS`, identical on every frame of
    ``[T, C, H, W]``. As the release's ``SNNAugmentWide`` (docs/data.md): magnitude one of ``bins`` evenly spaced
    values of the signed range, sign flipped at p=0.5; shear angle ``degrees(m)``, translation ``int(m)`` px,
    cutout a square random erasing filled with 0; nearest-neighbour interpolation."""

    def __init__(self, flip: bool = True, shear: float = 0.3, translate: float = 5.0, rotate: float = 30.0,
                 erase_scale: tuple[float, float] = (0.001, 0.11), erase_ratio: tuple[float, float] = (1.0, 1.0),
                 bins: int = 31) -> None:
        super().__init__()
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        self.flip, self.shear, self.translate, self.rotate, self.bins = flip, shear, translate, rotate, bins
        self.erase = v2.RandomErasing(p=1.0, scale=erase_scale, ratio=erase_ratio, value=0.0)

    def apply(self, frames: torch.Tensor, op: str, magnitude: float = 0.0) -> torch.Tensor:
        """Apply ``op`` with a signed ``magnitude`` in [-1, 1] (fraction of its range) to all frames at once."""
        if op not in EVENT_OPS:
            raise ValueError(f"op={op!r}: valid choices {EVENT_OPS}")
        if op == "shear_x":  # the release passes the magnitude, in radians, as the shear angle
            return TF.affine(frames, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(magnitude * self.shear), 0.0])
        if op in ("translate_x", "translate_y"):
            shift = int(magnitude * self.translate)  # the release truncates toward zero
            return TF.affine(frames, angle=0.0, translate=[shift, 0] if op == "translate_x" else [0, shift], scale=1.0, shear=[0.0, 0.0])
        if op == "rotate":
            return TF.rotate(frames, magnitude * self.rotate)
        return self.erase(frames) if op == "cutout" else frames

    def draw(self) -> tuple[str, float]:
        """One ``(op, magnitude)``: uniform op, magnitude from the ``bins`` grid of [-1, 1], sign flipped at 0.5."""
        op = EVENT_OPS[int(torch.randint(len(EVENT_OPS), ()))]
        m = -1.0 + 2.0 * int(torch.randint(self.bins, ())) / (self.bins - 1)
        return op, -m if float(torch.rand(())) < 0.5 else m

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() < 3:
            raise ValueError(f"frames of shape {tuple(frames.shape)}: expected [T, C, H, W]")
        if self.flip and float(torch.rand(())) < 0.5:
            frames = TF.horizontal_flip(frames)
        with single_threaded():
            return self.apply(frames, *self.draw())
