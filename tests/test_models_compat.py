"""A checkpoint in the release's key layout gives the same logits after conversion."""
import io
import re

import pytest
import torch

from dta_lib.models.compat import from_reference_state_dict, to_reference_state_dict
from dta_lib.models.ms_resnet import ms_resnet18
from dta_lib.models.reference import ReferenceMSResNet18


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
    # the round trip back to the release layout gives every release key, and back ours unchanged
    back = from_reference_state_dict(to_reference_state_dict(ours, shapes))
    assert back.keys() == ours.keys() and all(back[k] is ours[k] for k in ours)


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
    sd = to_reference_state_dict(ms_resnet18(width=0.125).state_dict(), ReferenceMSResNet18(width=0.125).state_dict())
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
    no_dta = ReferenceMSResNet18(width=0.125, dta=False).state_dict()
    with pytest.raises(ValueError, match=r"release keys \[\], ours \['dta.tna.decode.bias'"):
        to_reference_state_dict(ms_resnet18(width=0.125).state_dict(), no_dta)


def _release_34_keys(width: float = 0.125, classes: int = 10, T: int = 2) -> set[str]:
    """The release's MS_ResNet_34 state_dict keys, written out from its module structure (models/DTA_SNN.py,
    models/layers.py): a block registers conv1, bn1, conv2, bn2, [downsample], conv1_s = tdLayer(conv1, bn1),
    conv2_s = tdLayer(conv2, bn2); every tdBatchNorm holds its BN twice (``bn`` and ``seqbn.module``)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

    def tdbn(prefix: str) -> list[str]:
        return [f"{prefix}.bn.{p}" for p in bn] + [f"{prefix}.seqbn.module.{p}" for p in bn]

    keys = ["conv1.weight", "conv1_s.layer.module.weight", *tdbn("bn1"), *tdbn("conv1_s.bn")]
    c = [max(1, round(v * width)) for v in (64, 64, 128, 256, 512)]
    inplanes = c[0]
    for stage, (blocks, planes, stride) in enumerate(zip((3, 4, 6, 3), c[1:], (1, 1, 2, 2))):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            keys += [f"{p}.conv1.weight", *tdbn(f"{p}.bn1"), f"{p}.conv2.weight", *tdbn(f"{p}.bn2")]
            if b == 0 and (stride != 1 or inplanes != planes):
                keys += [f"{p}.downsample.layer.module.weight", *tdbn(f"{p}.downsample.bn")]
            keys += [f"{p}.conv1_s.layer.module.weight", *tdbn(f"{p}.conv1_s.bn"),
                     f"{p}.conv2_s.layer.module.weight", *tdbn(f"{p}.conv2_s.bn")]
            inplanes = planes
    keys += ["fc1_s.layer.module.weight", "fc1_s.layer.module.bias"]
    keys += [f"encoding.T_NA.{k}" for k in ("encoding.0.weight", "encoding.0.bias", "tca.LTCA.0.weight",
                                            "tca.LTCA.0.bias", "tca.LTCA.1.weight", "tca.LTCA.1.bias",
                                            "tca.LTCA.2.weight", "tca.LTCA.2.bias", "tca.MLP_block.0.weight",
                                            "tca.MLP_block.2.weight", "decoding.weight", "decoding.bias")]
    keys += ["encoding.T_XA.scale_t", "encoding.T_XA.scale_c", "encoding.T_XA.conv_t.weight",
             "encoding.T_XA.conv_c.weight"]
    return set(keys)


def test_ms_resnet34_release_keys_convert_both_ways():
    from dta_lib.models.ms_resnet import ms_resnet34

    torch.manual_seed(0)
    ours = ms_resnet34(num_classes=10, time_steps=2, width=0.125).eval()
    release = to_reference_state_dict(ours.state_dict(), _release_34_keys())  # stem conv1/bn1, layer0-3, fc1_s
    assert release["conv1.weight"].shape == (8, 3, 7, 7) and release["fc1_s.layer.module.weight"].shape == (10, 64)
    assert release["layer1.0.downsample.layer.module.weight"].shape == (16, 8, 1, 1)  # stage 2, stride 1
    back = from_reference_state_dict({f"module.{k}": v.clone() for k, v in release.items()})  # DDP prefix too
    fresh = ms_resnet34(num_classes=10, time_steps=2, width=0.125).eval()
    fresh.load_state_dict(back)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), ours(x))
    # an alias that disagrees with its canonical tensor is refused
    bad = dict(release)
    bad["conv1_s.layer.module.weight"] = bad["conv1.weight"] + 1
    with pytest.raises(ValueError, match="alias 'conv1_s.layer.module.weight' differs from 'conv1.weight'"):
        from_reference_state_dict(bad)


def test_reference_at_study_width_computes_our_function():
    """The release's computation at width 1/8 (what the epoch benchmark races): same keys, same logits."""
    torch.manual_seed(0)
    ours = ms_resnet18(10, 4, "dta", in_channels=1, width=0.125).double().eval()
    ref = ReferenceMSResNet18(10, 4, in_channels=1, width=0.125).double().eval()
    ref.load_state_dict(to_reference_state_dict(ours.state_dict(), ref.state_dict()))
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters()) == 202_132
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    assert torch.allclose(ours(x), ref(x), atol=1e-9)
    assert ReferenceMSResNet18(width=1.0).state_dict().keys() == ReferenceMSResNet18().state_dict().keys()
