"""BatchMix (torchvision v2 CutMix / MixUp, soft labels, label smoothing), soft_cross_entropy, EventAugment."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dta_lib.data.augment import EVENT_OPS, BatchMix, EventAugment, soft_cross_entropy

K = 10


def batch(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.tensor([0, 1, 2, 3])


def test_cutmix_images_and_soft_targets() -> None:
    x, y = batch((4, 3, 16, 16))
    torch.manual_seed(0)
    out, t = BatchMix(K, cutmix_alpha=1.0, p=1.0)(x.clone(), y)
    assert out.shape == x.shape and t.shape == (4, K)
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    partner = x.roll(1, 0)  # torchvision pairs sample i with i-1
    from_self = (out == x).all(1)
    assert torch.all(from_self | (out == partner).all(1))
    lam = from_self.float().mean(dim=(1, 2))  # area kept from the sample itself
    torch.testing.assert_close(t[torch.arange(4), y], lam)
    torch.testing.assert_close(t[torch.arange(4), y.roll(1)], 1 - lam)


def test_cutmix_on_event_frames_uses_one_box_for_all_frames() -> None:
    x, y = batch((4, 5, 2, 12, 12), seed=1)
    for seed in range(5):
        torch.manual_seed(seed)
        out, t = BatchMix(K, cutmix_alpha=1.0, p=1.0)(x.clone(), y)
        assert out.shape == x.shape
        changed = out != x  # [B,T,2,H,W]
        assert torch.equal(changed, changed[:, :1, :1].expand_as(changed))  # same box in every frame/polarity
        lam = 1 - changed[:, 0, 0].float().mean(dim=(1, 2))
        torch.testing.assert_close(t[torch.arange(4), y], lam)


def test_mixup_lambda_is_shared_and_matches_targets() -> None:
    x, y = batch((4, 3, 2, 8, 8), seed=2)
    torch.manual_seed(3)
    out, t = BatchMix(K, cutmix_alpha=0.0, mixup_alpha=0.5, p=1.0)(x.clone(), y)
    lam = t[0, y[0]]
    torch.testing.assert_close(out, lam * x + (1 - lam) * x.roll(1, 0))
    torch.testing.assert_close(t[torch.arange(4), y], lam.expand(4))


def test_label_smoothing_and_no_mix() -> None:
    x, y = batch((4, 1, 8, 8))
    out, t = BatchMix(K, p=0.0, label_smoothing=0.1)(x.clone(), y)
    assert torch.equal(out, x)
    expected = F.one_hot(y, K).float() * 0.9 + 0.01
    torch.testing.assert_close(t, expected)
    _, t2 = BatchMix(K, cutmix_alpha=1.0, p=1.0, label_smoothing=0.1)(x.clone(), y)
    assert t2.min() >= 0.01 - 1e-6
    torch.testing.assert_close(t2.sum(1), torch.ones(4))


def test_probability_is_per_batch() -> None:
    x, y = batch((4, 1, 8, 8))
    mix = BatchMix(K, cutmix_alpha=1.0, p=0.5)
    torch.manual_seed(0)
    mixed = sum(int(t.max() < 1.0) for t in (mix(x.clone(), y)[1] for _ in range(200)))
    assert 70 < mixed < 130  # about half the batches (a degenerate CutMix box counts as unmixed)


def test_both_alphas_choose_one_per_batch() -> None:
    x, y = batch((4, 3, 8, 8))
    mix = BatchMix(K, cutmix_alpha=1.0, mixup_alpha=1.0, p=1.0)
    torch.manual_seed(0)
    kinds = set()
    for _ in range(40):
        out, _ = mix(x.clone(), y)
        kinds.add("cutmix" if ((out == x).all(1) | (out == x.roll(1, 0)).all(1)).all() else "mixup")
    assert kinds == {"cutmix", "mixup"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=1), "num_classes"), (dict(num_classes=K, p=1.5), "p="),
    (dict(num_classes=K, cutmix_alpha=-1.0), "alpha"), (dict(num_classes=K, label_smoothing=1.0), "label_smoothing"),
])
def test_batchmix_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BatchMix(**kwargs)


def test_batchmix_bad_inputs() -> None:
    mix = BatchMix(K)
    with pytest.raises(ValueError, match="shape"):
        mix(torch.rand(4, 8, 8), torch.arange(4))
    with pytest.raises(ValueError, match="labels"):
        mix(torch.rand(4, 1, 8, 8), torch.arange(3))
    with pytest.raises(ValueError, match="0..9"):
        mix(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 10]))


def test_soft_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, K, requires_grad=True)
    y = torch.randint(K, (6,))
    hard = F.cross_entropy(logits, y)
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, K).float()), hard)
    eps = 0.1
    smooth = F.one_hot(y, K).float() * (1 - eps) + eps / K
    torch.testing.assert_close(soft_cross_entropy(logits, smooth), F.cross_entropy(logits, y, label_smoothing=eps))
    seq = torch.randn(6, 4, K)
    torch.testing.assert_close(soft_cross_entropy(seq, smooth), F.cross_entropy(seq.mean(1), smooth))
    soft_cross_entropy(logits, smooth).backward()
    assert logits.grad is not None
    with pytest.raises(ValueError, match="soft_targets"):
        soft_cross_entropy(logits, smooth[:, :5])


def test_event_augment_is_identical_over_frames() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 2, 24, 24, generator=g)
    frames = frame.expand(6, -1, -1, -1).clone()
    aug = EventAugment()
    changed = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = aug(frames)
        assert out.shape == frames.shape
        assert torch.equal(out, out[:1].expand_as(out))  # every frame got the same op and magnitude
        changed += int(not torch.equal(out, frames))
    assert changed > 20


def test_event_augment_draws_from_31_magnitude_bins() -> None:
    aug = EventAugment()
    torch.manual_seed(0)
    draws = [aug.draw() for _ in range(3000)]
    mags = {round(m, 9) for _, m in draws}
    grid = {round(-1 + 2 * i / 30, 9) for i in range(31)}
    assert mags <= grid and len(mags) == 31
    assert {op for op, _ in draws} == set(EVENT_OPS)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        EventAugment(bins=1)


def test_event_augment_each_op() -> None:
    aug = EventAugment(flip=False)
    frames = torch.zeros(3, 2, 16, 16)
    frames[:, :, 4:8, 4:8] = 1.0
    assert EVENT_OPS == ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")
    assert torch.equal(aug.apply(frames, "identity"), frames)
    torch.testing.assert_close(aug.apply(frames, "translate_x", 1.0), frames.roll(5, -1))  # +5 px
    torch.testing.assert_close(aug.apply(frames, "translate_y", -0.6), frames.roll(-3, -2))  # -3 px
    rot = aug.apply(frames, "rotate", 1.0)  # 30 degrees: mass roughly kept, pattern moved
    assert not torch.equal(rot, frames) and abs(rot.sum() - frames.sum()) / frames.sum() < 0.2
    sheared = aug.apply(frames, "shear_x", 1.0)
    assert not torch.equal(sheared, frames)
    torch.testing.assert_close(sheared[:, :, 4:8].sum(), frames[:, :, 4:8].sum(), atol=2.0, rtol=0.1)  # rows slide
    torch.manual_seed(0)
    ones = torch.ones(3, 2, 16, 16)
    erased = aug.apply(ones, "cutout")
    holes = erased == 0
    assert 0 < holes[0, 0].sum() <= 0.11 * 256 + 16 and torch.equal(holes, holes[:1, :1].expand_as(holes))
    # release semantics: translate truncates toward zero, shear angle = degrees(magnitude), square cutout
    torch.testing.assert_close(aug.apply(frames, "translate_x", 0.19), frames)  # int(0.95) = 0 px
    torch.testing.assert_close(aug.apply(frames, "translate_x", -0.39), frames.roll(-1, -1))  # int(-1.95) = -1 px
    import torchvision.transforms.v2.functional as TF

    want = TF.affine(frames, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(0.3), 0.0])
    assert torch.equal(aug.apply(frames, "shear_x", 1.0), want)
    rows = holes[0, 0].any(1).sum()
    cols = holes[0, 0].any(0).sum()
    assert rows == cols and int(holes[0, 0].sum()) == int(rows * cols)  # a square hole
    with pytest.raises(ValueError, match="valid choices"):
        aug.apply(frames, "solarize")
    with pytest.raises(ValueError, match="shape"):
        aug(torch.rand(16, 16))
