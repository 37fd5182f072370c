"""LIF neuron and surrogate gradients: hand-computed cases and finite differences."""
import math

import pytest
import torch

from dta_lib.snn.functional import lif_multistep
from dta_lib.snn.neuron import LIF
from dta_lib.snn.surrogate import ATan, Sigmoid, Triangle, build_surrogate

SURROGATES = [Triangle(1.0), Triangle(0.5), Triangle(2.0), Sigmoid(4.0), ATan(2.0)]


def test_lif_forward_hand_computed():
    # one neuron, constant input 0.6: h = 0.6, 0.9, 1.05 (spike, reset), 0.6, 0.9, 1.05 ...
    x = torch.full((1, 6, 1), 0.6, dtype=torch.float64)
    s = LIF()(x)
    assert s.flatten().tolist() == [0, 0, 1, 0, 0, 1]
    # threshold is strict: h exactly 1.0 does not fire
    assert LIF()(torch.tensor([[[1.0], [0.0]]])).flatten().tolist() == [0, 0]
    # input 2.0 fires every step (hard reset to 0 each time)
    assert LIF()(torch.full((1, 4, 1), 2.0)).flatten().tolist() == [1, 1, 1, 1]
    # decay is multiplicative: 0.8 then 0.8*0.5+0.3 = 0.7 no spike; 0.7*0.5+0.7 = 1.05 spike
    assert LIF()(torch.tensor([[[0.8], [0.3], [0.7]]])).flatten().tolist() == [0, 0, 1]


def test_lif_output_shape_dtype_and_values():
    x = torch.randn(3, 5, 4, 2, 2) * 2
    s = LIF()(x)
    assert s.shape == x.shape and s.dtype == x.dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}


def _manual_bptt(x, decay, thr, sg):
    """Scalar BPTT of the LIF by hand (reset not detached), returning d(sum w_t s_t)/dx_t."""
    T = len(x)
    w = [1.0 + 0.5 * t for t in range(T)]  # distinct weights per step so every path matters
    h, u, s = [0.0] * T, [0.0] * T, [0.0] * T
    prev = 0.0
    for t in range(T):
        h[t] = decay * prev + x[t]
        s[t] = 1.0 if h[t] - thr > 0 else 0.0
        u[t] = h[t] * (1 - s[t])
        prev = u[t]
    grad_x = [0.0] * T
    du_next = 0.0  # dL/du_t coming from step t+1
    for t in reversed(range(T)):
        ds = sg.derivative(torch.tensor(h[t] - thr, dtype=torch.float64)).item()
        # L depends on h_t through s_t (weight w_t) and through u_t = h_t (1 - s_t)
        dh = w[t] * ds + du_next * ((1 - s[t]) - h[t] * ds)
        grad_x[t] = dh
        du_next = dh * decay
    return w, grad_x


@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: f"{s.name}-{s.width}")
def test_lif_backward_matches_hand_bptt(sg):
    torch.manual_seed(0)
    xs = (torch.rand(7, dtype=torch.float64) * 1.6).tolist()
    w, expected = _manual_bptt(xs, 0.5, 1.0, sg)
    x = torch.tensor(xs, dtype=torch.float64).view(1, 7, 1).requires_grad_()
    s = lif_multistep(x, 0.5, 1.0, sg, backend="loop")
    (s.view(-1) * torch.tensor(w, dtype=torch.float64)).sum().backward()
    assert torch.allclose(x.grad.view(-1), torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    # and the default backend agrees with the loop (forward exactly, backward closely)
    x2 = x.detach().clone().requires_grad_()
    s2 = LIF(surrogate=sg)(x2)
    assert torch.equal(s2, s)
    (s2.view(-1) * torch.tensor(w, dtype=torch.float64)).sum().backward()
    assert torch.allclose(x2.grad, x.grad, atol=1e-10)


@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: f"{s.name}-{s.width}")
def test_surrogate_derivative_is_derivative_of_primitive(sg):
    """Finite differences of the smooth primitive equal the surrogate gradient."""

    class Smooth(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return sg.primitive(v)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g * sg.derivative(v)

    # keep away from the triangle's kinks (|v| = 0, width) where finite differences are one-sided
    v = torch.linspace(-2.9, 2.9, 57, dtype=torch.float64)
    v = v[(v.abs() - sg.width).abs() > 1e-3]
    v = v[v.abs() > 1e-3].requires_grad_()
    assert torch.autograd.gradcheck(Smooth.apply, (v,), eps=1e-6, atol=1e-7)
    # the primitive is a smoothed step: 0 far left, 1 far right, monotone
    p = sg.primitive(torch.tensor([-50.0, 0.0, 50.0], dtype=torch.float64))
    assert p[0] < 0.01 and p[2] > 0.99 and p[0] <= p[1] <= p[2]


def test_triangle_reference_values():
    sg = Triangle(1.0)
    v = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0])
    assert torch.allclose(sg.derivative(v), torch.tensor([0.0, 0.0, 0.5, 1.0, 0.75, 0.0, 0.0]))
    # width 2: height 1/2, support |v| < 2
    assert torch.allclose(Triangle(2.0).derivative(torch.tensor([0.0, 1.0, 2.0])), torch.tensor([0.5, 0.25, 0.0]))
    # area under every surrogate derivative is ~1 (it replaces a Dirac delta; atan has heavy tails)
    grid = torch.linspace(-40, 40, 400001, dtype=torch.float64)
    for s in SURROGATES:
        area = torch.trapezoid(s.derivative(grid), grid).item()
        exact = (s.primitive(grid[-1:]) - s.primitive(grid[:1])).item()
        assert math.isclose(area, exact, rel_tol=1e-6), (s, area, exact)
        assert math.isclose(area, 1.0, rel_tol=1e-2), (s, area)


def test_surrogate_width_changes_gradient():
    x = torch.full((1, 1, 1), 1.6, requires_grad=True)
    LIF(surrogate=Triangle(1.0))(x).sum().backward()
    g1 = x.grad.item()
    x.grad = None
    LIF(surrogate=Triangle(0.5))(x).sum().backward()
    assert g1 == pytest.approx(0.4) and x.grad.item() == pytest.approx(0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(decay=1.5), "decay"),
        (dict(decay=float("nan")), "decay"),
        (dict(threshold=0.0), "threshold"),
        (dict(decay="0.5"), r"LIF decay must be a real number, got '0.5' \(str\)"),
        (dict(threshold=True), r"LIF threshold must be a real number, got True"),
    ],
)
def test_lif_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)


def test_lif_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 dims"):
        LIF()(torch.ones(3))
    with pytest.raises(ValueError, match="floating-point"):
        LIF()(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown surrogate"):
        build_surrogate("relu")
    with pytest.raises(ValueError, match="width"):
        Triangle(0.0)
    with pytest.raises(ValueError, match="backend"):
        lif_multistep(torch.ones(1, 2), backend="nope")
    with pytest.raises(ValueError, match=r"at least one element, got shape \(1, 4, 3, 0, 0\)"):
        LIF()(torch.ones(1, 4, 3, 0, 0))


def test_model_refuses_empty_images():
    from dta_lib import ms_resnet18

    with pytest.raises(ValueError, match=r"B, H, W >= 1, got \(2, 3, 0, 0\)"):
        ms_resnet18(num_classes=10, width=0.0625)(torch.ones(2, 3, 0, 0))


def test_triton_failure_falls_back_to_the_fused_path_with_one_warning(monkeypatch):
    pytest.importorskip("triton")
    import dta_lib.snn.kernels as K
    from dta_lib.snn.kernels import lif_triton
    from dta_lib.snn.loop import lif_multistep_loop

    def broken(*a, **k):
        raise RuntimeError("CompilationError: ptxas failed (simulated)")

    monkeypatch.setattr(lif_triton, "lif_multistep_triton", broken)
    saved = list(K._TRITON_BROKEN)
    K._TRITON_BROKEN.clear()  # one list, shared by the package and the kernels module
    x = torch.randn(2, 4, 8) * 2
    sg = Triangle(1.0)
    try:
        with pytest.warns(RuntimeWarning, match="Triton LIF kernel failed .*simulated.*using the fused PyTorch LIF") as rec:
            y = K.lif_multistep_triton(x, 0.5, 1.0, sg)
            y2 = K.lif_multistep_triton(x, 0.5, 1.0, sg)
    finally:
        K._TRITON_BROKEN[:] = saved
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1  # once per process
    assert torch.equal(y, lif_multistep_loop(x, 0.5, 1.0, sg)) and torch.equal(y, y2)
