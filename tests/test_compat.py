"""A checkpoint in the release's key layout gives the same logits after conversion."""
import io
import re

import pytest
import torch

from dta_lib.compat import from_reference_state_dict, to_reference_state_dict
from dta_lib.models import ms_resnet18
from dta_lib.reference import ReferenceMSResNet18


def release_keys(data_dir):
    rows = []
    for line in (data_dir / "reference-state-dict-keys.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split(" ", 1)
            rows.append((name, tuple(int(v) for v in re.findall(r"\d+", shape))))
    return rows


def test_reference_restatement_has_release_layout(data_dir):
    """Our re-statement of the release produces exactly the release's keys, order and shapes."""
    sd = ReferenceMSResNet18().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == release_keys(data_dir)


def test_converted_keys_cover_our_model(data_dir):
    shapes = {name: torch.zeros(shape) for name, shape in release_keys(data_dir)}
    converted = from_reference_state_dict(shapes)
    ours = ms_resnet18().state_dict()
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    # the round trip back to the release layout gives every release key
    assert set(to_reference_state_dict(ours)) == set(shapes)


def _trained_like(model):
    """Perturb BN statistics and scales so the test is not passing on an all-silent network."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith("running_mean"):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
                elif name.endswith(("scale_t", "scale_c")):
                    t.copy_(torch.rand((), generator=g) + 0.5)
    return model


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_release_checkpoint_gives_same_logits(mode):
    torch.manual_seed(0)
    ref = _trained_like(ReferenceMSResNet18()).double()
    buf = io.BytesIO()
    torch.save(ref.state_dict(), buf)  # as the release's training script saves it
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    ours = ms_resnet18().double()
    ours.load_state_dict(from_reference_state_dict(sd))
    getattr(ref, mode)()
    getattr(ours, mode)()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64) * 2
    a, b = ref(x), ours(x)
    assert a.shape == b.shape == (3, 6, 10)
    assert a.std() > 0 and (a[0] - a[1]).abs().max() > 1e-6  # logits depend on the input: spikes flow
    assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()


def test_release_forward_and_backward_match_in_float64():
    """Same weights, same input: the two implementations agree in logits and in every gradient."""
    torch.manual_seed(1)
    ref = _trained_like(ReferenceMSResNet18(time_steps=2)).double()
    ours = ms_resnet18(time_steps=2).double()
    ours.load_state_dict(from_reference_state_dict(ref.state_dict()))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2
    y = torch.tensor([1, 7])
    for m in (ref, ours):
        torch.nn.functional.cross_entropy(m(x).mean(1), y).backward()
    g_ref = from_reference_state_dict({k: v.grad for k, v in ref.named_parameters()})
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, g_ref[name], atol=1e-9), name


def test_ddp_prefix_and_errors():
    sd = to_reference_state_dict(ms_resnet18(width=0.125).state_dict())
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    assert set(from_reference_state_dict(prefixed)) == set(from_reference_state_dict(sd))
    with pytest.raises(ValueError, match="not keys of the reference release.*'head.weight'"):
        from_reference_state_dict({**sd, "head.weight": torch.zeros(1)})
    bad = dict(sd)
    bad["layer1.0.conv1_s.layer.module.weight"] = bad["layer1.0.conv1.weight"] + 1
    with pytest.raises(ValueError, match="alias 'layer1.0.conv1_s.layer.module.weight' differs"):
        from_reference_state_dict(bad)
    with pytest.raises(ValueError, match="mapping"):
        from_reference_state_dict([1, 2])  # type: ignore[arg-type]
