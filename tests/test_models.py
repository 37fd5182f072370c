"""MS-ResNet builders: parameter counts of the release, shapes, ablation modes, errors."""
import pytest
import torch

from dta_lib.models.ms_resnet import MSBlock, ms_resnet18, ms_resnet34
from dta_lib.snn.neuron import LIF


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(attention="none"), 12_502_090),
        (dict(attention="none", time_steps=4), 12_502_090),
        (dict(), 12_993_336),
        (dict(time_steps=4), 12_739_452),
        (dict(num_classes=100), 13_039_506),
        (dict(in_channels=2, time_steps=10), 13_795_512),
    ],
)
def test_parameter_counts_equal_release(kwargs, expected):
    assert n_params(ms_resnet18(**kwargs)) == expected


def test_ablation_modes_add_their_branch_only():
    base = n_params(ms_resnet18(attention="none"))
    assert n_params(ms_resnet18(attention="txa")) == base + 24_686
    assert n_params(ms_resnet18(attention="tna")) == base + 466_560


@pytest.mark.parametrize("attention", ["none", "txa", "tna", "dta"])
def test_forward_shapes_static_and_frames(attention):
    torch.manual_seed(0)
    m = ms_resnet18(num_classes=7, time_steps=3, attention=attention, width=0.125)
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 3, 7)
    m2 = ms_resnet18(num_classes=7, time_steps=3, attention=attention, in_channels=2, width=0.125)
    assert m2(torch.rand(2, 3, 2, 16, 16)).shape == (2, 3, 7)


def test_static_input_equals_repeated_frames():
    """Computing the stem once for a static image is the same function as repeating it T times."""
    torch.manual_seed(1)
    m = ms_resnet18(time_steps=4, width=0.125).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    frames = x.unsqueeze(1).repeat(1, 4, 1, 1, 1)
    for mode in ("train", "eval"):
        getattr(m, mode)()
        assert torch.allclose(m(x), m(frames), atol=1e-12)
    # and the gradients agree
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    m.train()
    m(xa).square().sum().backward()
    g_model = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m(xb.unsqueeze(1).repeat(1, 4, 1, 1, 1)).square().sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-10)
    for a, p in zip(g_model, m.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-10)


def test_block_matches_equation():
    torch.manual_seed(2)
    blk = MSBlock(4, 6, stride=2).double().eval()
    x = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64) * 2
    lif = LIF()
    f = lambda y: y.flatten(0, 1)  # noqa: E731
    out = blk.bn2(blk.conv2(f(lif(blk.bn1(blk.conv1(f(lif(x)))).unflatten(0, (2, 3))))))
    expected = (out + blk.downsample(f(x))).unflatten(0, (2, 3))
    assert torch.allclose(blk(x), expected)
    assert blk(x).shape == (2, 3, 6, 4, 4)
    assert MSBlock(4, 4).downsample is None


def test_width_scales_channels_and_layout_of_stages():
    m = ms_resnet18(width=0.25)
    assert m.stem_conv.out_channels == 16 and m.fc.in_features == 128
    assert [len(getattr(m, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 2]
    assert [getattr(m, f"layer{i}")[0].conv1.stride[0] for i in (1, 2, 3)] == [1, 2, 2]


# 32 px input: 16 after the stem; at 224 px the final maps are 28 (release) and 7 (standard)
@pytest.mark.parametrize("layout, final", [("release", 4), ("standard", 1)])
def test_ms_resnet34_runs(layout, final):
    torch.manual_seed(3)
    m = ms_resnet34(num_classes=5, time_steps=2, width=0.0625, layout=layout)
    assert [len(getattr(m, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 6, 3]
    x = torch.randn(1, 3, 32, 32)
    assert m.features(x).shape[-1] == final
    y = m(x)
    assert y.shape == (1, 2, 5)
    y.sum().backward()
    assert m.dta.tna.encode.weight.grad is not None


def test_backward_reaches_every_parameter():
    torch.manual_seed(4)
    m = ms_resnet18(time_steps=2, width=0.125)
    x = torch.randn(4, 3, 16, 16) * 3
    m(x).mean(1).logsumexp(1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(2, 3, 8), "got \\(2, 3, 8\\) \\(3 dims\\)"),
        (torch.zeros(1, 2, 3, 4, 8, 8), "6 dims"),
        (torch.zeros(2, 1, 8, 8), "C=1"),
        (torch.zeros(2, 5, 3, 8, 8), "T=5"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_inputs(x, match):
    m = ms_resnet18(time_steps=6, width=0.125)
    with pytest.raises(ValueError, match=match) as e:
        m(x)
    assert "[B, 3, H, W] or [B, 6, 3, H, W]" in str(e.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attention="se"), "attention"),
        (dict(time_steps=0), "time_steps"),
        (dict(num_classes=-1), "num_classes"),
        (dict(width=0), "width"),
        (dict(surrogate="relu"), "surrogate"),
    ],
)
def test_bad_builder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ms_resnet18(**kwargs)
    with pytest.raises(ValueError, match="layout"):
        ms_resnet34(layout="resnet")
