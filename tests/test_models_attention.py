"""T-XA, T-NA and DTA against the spec's equations, hand-computed cases and finite differences."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from dta_lib.models.attention import DTA, GTCA, LTCA, TNA, TXA, dilated_kernel_size, gtca_hidden
from dta_lib.snn.neuron import LIF


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def spec_txa(x, wt, wc, a, b):
    """Spec T-XA, written with F.conv1d padding='same' (PyTorch pads the even kernel 2 left / 3 right)."""
    z = x.mean(dim=(3, 4))
    with warnings.catch_warnings():  # PyTorch warns that the even kernel needs a padded copy
        warnings.simplefilter("ignore")
        at = torch.sigmoid(F.conv1d(z, wt, padding="same"))
        ac = torch.sigmoid(F.conv1d(z.transpose(1, 2), wc, padding="same")).transpose(1, 2)
    return (x + a * at[..., None, None]) * (x + b * ac[..., None, None])


def spec_tna(x, m: TNA):
    B, T, C, H, W = x.shape
    s = x.reshape(B, T * C, H, W)
    e = F.gelu(F.conv2d(s, m.encode.weight, m.encode.bias))
    l = F.conv2d(e, m.ltca.depthwise.weight, m.ltca.depthwise.bias, padding=2, groups=T * C)
    l = F.conv2d(l, m.ltca.dilated.weight, m.ltca.dilated.bias, groups=T * C)  # the 1x1 "dilated" conv
    l = F.conv2d(l, m.ltca.pointwise.weight, m.ltca.pointwise.bias)
    g = F.linear(F.relu(F.linear(e.mean(dim=(2, 3)), m.gtca.fc1.weight)), m.gtca.fc2.weight)[..., None, None]
    y = F.conv2d(g * l * e, m.decode.weight, m.decode.bias) + s
    return y.reshape(B, T, C, H, W)


def test_parameter_counts_match_release():
    assert n_params(TXA(64, 6)) == 6 * 6 * 3 + 64 * 64 * 6 + 2 == 24_686
    assert n_params(TNA(64, 6)) == 466_560
    assert n_params(DTA(64, 6)) == 24_686 + 466_560
    assert n_params(DTA(64, 6, mode="txa")) == 24_686
    assert n_params(DTA(64, 6, mode="tna")) == 466_560


def test_release_constants():
    assert dilated_kernel_size(7) == 1  # the release's degenerate "dilated" conv
    assert dilated_kernel_size(21) == 7
    assert gtca_hidden(384) == 16 and gtca_hidden(64) == 16 and gtca_hidden(4096) == 16
    m = TNA(64, 6)
    assert m.ltca.dilated.weight.shape == (384, 1, 1, 1) and m.ltca.dilated.padding == (0, 0)
    assert TNA(4, 2, kernel_size=21).ltca.dilated.weight.shape == (8, 1, 7, 7)
    assert TNA(4, 2, kernel_size=21).ltca.dilated.padding == (9, 9)
    t = TXA(64, 6)
    assert t.scale_t.item() == 1.0 and t.scale_c.item() == 1.0
    assert t.conv_t.weight.shape == (6, 6, 3) and t.conv_c.weight.shape == (64, 64, 6)


def test_txa_hand_computed_case():
    """T=2, C=2, 1x1 spatial, identity-like kernels: everything checkable on paper."""
    m = TXA(2, 2, kernel_t=1, kernel_c=1).double()
    with torch.no_grad():
        m.conv_t.weight.copy_(torch.eye(2).view(2, 2, 1))
        m.conv_c.weight.zero_()  # A_c = sigmoid(0) = 0.5
        m.scale_t.fill_(2.0)
        m.scale_c.fill_(1.0)
    x = torch.tensor([0.0, 1.0, -1.0, 2.0], dtype=torch.float64).view(1, 2, 2, 1, 1)
    y = m(x)
    sig = torch.sigmoid(x.view(1, 2, 2))
    expected = (x.view(1, 2, 2) + 2 * sig) * (x.view(1, 2, 2) + 0.5)
    assert torch.allclose(y.view(1, 2, 2), expected)


@pytest.mark.parametrize("C, T", [(64, 6), (5, 3), (8, 10), (3, 1)])
def test_txa_matches_spec_any_shape(C, T):
    torch.manual_seed(C + T)
    m = TXA(C, T).double()
    with torch.no_grad():
        m.scale_t.fill_(0.7)
        m.scale_c.fill_(-1.3)
    x = torch.randn(2, T, C, 4, 3, dtype=torch.float64)
    ref = spec_txa(x, m.conv_t.weight, m.conv_c.weight, m.scale_t, m.scale_c)
    assert torch.allclose(m(x), ref, atol=1e-12)
    at, ac = m.maps(x)
    assert at.shape == ac.shape == (2, T, C) and 0 < at.min() and at.max() < 1


@pytest.mark.parametrize("C, T", [(64, 6), (5, 3), (2, 4)])
def test_tna_matches_spec_any_shape(C, T):
    torch.manual_seed(1)
    m = TNA(C, T).double()
    x = torch.randn(2, T, C, 6, 5, dtype=torch.float64)
    assert torch.allclose(m(x), spec_tna(x, m), atol=1e-10)
    local, glob = m.maps(x)
    assert local.shape == x.shape and glob.shape == (2, T, C)


def test_tna_channel_index_is_t_times_c_plus_c():
    """The fold is [B, T*C] with index t*C + c: a 1x1 encode that picks (t=1, c=0) proves it."""
    C, T = 3, 2
    m = TNA(C, T).double()
    x = torch.zeros(1, T, C, 2, 2, dtype=torch.float64)
    x[0, 1, 0] = 7.0
    s = x.flatten(1, 2)
    assert s[0, 1 * C + 0].eq(7.0).all() and s.sum() == 7.0 * 4
    # with every weight zero, T-NA is the identity shortcut
    for p in m.parameters():
        p.data.zero_()
    assert torch.equal(m(x), x)


def test_gtca_has_no_sigmoid_and_ltca_is_local():
    g = GTCA(8, hidden=2).double()
    with torch.no_grad():
        g.fc1.weight.fill_(1.0)
        g.fc2.weight.fill_(3.0)
    e = torch.ones(1, 8, 2, 2, dtype=torch.float64)
    assert torch.allclose(g(e), torch.full((1, 8, 1, 1), 3.0 * 2 * 8, dtype=torch.float64))  # unbounded
    l = LTCA(4).double()
    e = torch.zeros(1, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    l(e)[0, :, 0, 0].sum().backward()
    # receptive field of the 5x5 depthwise (+1x1 dilated, 1x1 pointwise): 3x3 corner region
    nz = e.grad[0].abs().sum(0).nonzero()
    assert nz.max().item() == 2


def test_ltca_depthwise_convs_run_in_fp32_under_cpu_autocast():
    """PyTorch's bf16 depthwise backward on the CPU takes 3-4x the fp32 one: LTCA runs its depthwise convs in fp32
    under CPU autocast; the 1x1 pointwise conv stays in bf16, so the output dtype is autocast's, as before."""
    torch.manual_seed(0)
    m, seen = LTCA(8), []
    for conv in (m.depthwise, m.dilated, m.pointwise):
        conv.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, out.dtype)))
    e = torch.randn(2, 8, 6, 6, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        y = m(e)
    f32, bf16 = torch.float32, torch.bfloat16
    assert seen == [(f32, f32), (f32, f32), (f32, bf16)] and y.dtype == bf16  # hooks see inputs before autocast
    y.float().sum().backward()
    assert m.depthwise.weight.grad is not None and e.grad is not None
    assert torch.allclose(y.float(), m(e), rtol=2e-2, atol=2e-2)  # the pointwise conv's bf16 rounding only
    with torch.autocast("cpu", torch.bfloat16):  # a bf16 model keeps autocast's path (fp32 inputs would not fit)
        assert m.to(torch.bfloat16)(e.detach().bfloat16()).dtype == torch.bfloat16


def test_dta_combines_branches_as_spec():
    torch.manual_seed(2)
    C, T = 4, 3
    x = torch.randn(2, T, C, 5, 5, dtype=torch.float64)
    s = LIF()(x)
    m = DTA(C, T).double()
    expected = torch.sigmoid(m.tna(x) * m.txa(x)) * s
    out = m(x, s)
    assert torch.allclose(out, expected, atol=1e-12)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out == 0, (s == 0) | (out == 0))  # zero wherever there is no spike
    for mode, branch in (("txa", "txa"), ("tna", "tna")):
        mm = DTA(C, T, mode=mode).double()
        assert torch.allclose(mm(x, s), torch.sigmoid(getattr(mm, branch)(x)) * s)
        assert getattr(mm, "tna" if mode == "txa" else "txa") is None


@pytest.mark.parametrize("mode", ["txa", "tna", "dta"])
def test_gradients_match_finite_differences(mode):
    torch.manual_seed(3)
    C, T = 3, 2
    m = DTA(C, T, mode=mode).double()
    x = torch.randn(1, T, C, 4, 4, dtype=torch.float64, requires_grad=True)
    spikes = (torch.rand(1, T, C, 4, 4, dtype=torch.float64) > 0.5).double()
    assert torch.autograd.gradcheck(lambda x: m(x, spikes), (x,), eps=1e-6, atol=1e-6)
    # parameter gradients too
    names = [n for n, _ in m.named_parameters()]

    def f(*ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x.detach(), spikes))

    ps = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
    assert torch.autograd.gradcheck(f, ps, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "shape, match",
    [((2, 6, 64, 4), "expects X of shape"), ((2, 5, 64, 4, 4), "T=5"), ((2, 6, 32, 4, 4), "C=32")],
)
def test_bad_shapes_name_expected_and_received(shape, match):
    for m in (TXA(64, 6), TNA(64, 6), DTA(64, 6)):
        with pytest.raises(ValueError, match=match) as e:
            if isinstance(m, DTA):
                m(torch.zeros(shape), torch.zeros(shape))
            else:
                m(torch.zeros(shape))
        assert "[B, T=6, C=64, H, W]" in str(e.value)


def test_bad_dtype_and_arguments():
    with pytest.raises(ValueError, match="floating-point"):
        TXA(2, 2)(torch.zeros(1, 2, 2, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="same shape"):
        DTA(2, 2)(torch.zeros(1, 2, 2, 3, 3), torch.zeros(1, 2, 2, 3, 4))
    with pytest.raises(ValueError, match="mode"):
        DTA(2, 2, mode="both")
    with pytest.raises(ValueError, match="channels"):
        TXA(0, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        TNA(2, 2, kernel_size=2)


def test_public_sub_blocks_check_their_own_arguments():
    """LTCA and GTCA are public: bad sizes fail at construction with the library's message, not in a forward."""
    for build, name in ((lambda: LTCA(4, dilation=0), "dilation"), (lambda: LTCA(4, dw_kernel=0), "dw_kernel"),
                        (lambda: LTCA(0), "dim"), (lambda: GTCA(0), "dim"), (lambda: GTCA(4, hidden=0), "hidden")):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            build()
    with pytest.raises(ValueError, match=r"DTA expects X of shape \[B, T=2, C=4"):
        DTA(4, 2).gate(torch.zeros(1, 3, 4, 2, 2))
