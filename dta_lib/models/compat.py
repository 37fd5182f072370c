"""Load checkpoints saved by the reference release into :mod:`dta_lib.models`.

The release registers every conv and BN twice (``conv1`` and ``conv1_s.layer.module``, ``bn1.bn`` and
``bn1.seqbn.module``), so its ``state_dict`` holds each tensor under two names; :func:`from_reference_state_dict`
keeps one of each, renames it and checks that aliases agree. Both release models convert: the CIFAR / DVS
``MS_ResNet`` (``input_conv``, ``layer1-3``, ``fc``) and the ImageNet ``MS_ResNet_34`` (``conv1`` / ``bn1`` with
their ``conv1_s`` aliases, stages ``layer0-3`` -> our ``layer1-4``, classifier ``fc1_s``)."""
from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import Tensor

__all__ = ["from_reference_state_dict", "to_reference_state_dict"]

# (release prefix, our prefix) of the keys renamed one to one, both ways
_PREFIXES = [("input_conv.layer.module.", "stem_conv."), ("fc.layer.module.", "fc."),
             ("encoding.T_NA.encoding.0.", "dta.tna.encode."), ("encoding.T_NA.tca.LTCA.0.", "dta.tna.ltca.depthwise."),
             ("encoding.T_NA.tca.LTCA.1.", "dta.tna.ltca.dilated."), ("encoding.T_NA.tca.LTCA.2.", "dta.tna.ltca.pointwise."),
             ("encoding.T_NA.tca.MLP_block.0.", "dta.tna.gtca.fc1."), ("encoding.T_NA.tca.MLP_block.2.", "dta.tna.gtca.fc2."),
             ("encoding.T_NA.decoding.", "dta.tna.decode."), ("encoding.T_XA.", "dta.txa.")]
# (release pattern, our replacement), applied in order to canonical (non-alias) keys
_RULES: list[tuple[str, str]] = [(f"^{re.escape(a)}", b) for a, b in _PREFIXES] + [
    (r"^input_conv\.bn\.bn\.", "stem_bn."),
    (r"^(layer\d+\.\d+)\.(bn[12])\.bn\.", r"\1.\2."),
    (r"^(layer\d+\.\d+)\.downsample\.layer\.module\.", r"\1.downsample.0."),
    (r"^(layer\d+\.\d+)\.downsample\.bn\.bn\.", r"\1.downsample.1."),
    (r"^(layer\d+\.\d+)\.(conv[12])\.", r"\1.\2."),
    (r"^fc1_s\.layer\.module\.", "fc."),          # MS-ResNet-34
    (r"^conv1\.", "stem_conv."),                   # MS-ResNet-34 stem
    (r"^bn1\.bn\.", "stem_bn."),
]
# alias keys: same tensors as a canonical key
_ALIASES: list[tuple[str, str]] = [
    (r"^(.*)\.seqbn\.module\.(.*)$", r"\1.bn.\2"),
    (r"^(layer\d+\.\d+)\.(conv[12])_s\.layer\.module\.(.*)$", r"\1.\2.\3"),
    (r"^(layer\d+\.\d+)\.conv([12])_s\.bn\.(.*)$", r"\1.bn\2.\3"),
    (r"^conv1_s\.layer\.module\.(.*)$", r"conv1.\1"),   # MS-ResNet-34 stem
    (r"^conv1_s\.bn\.(.*)$", r"bn1.\1"),
]


def _canonical(key: str) -> str | None:
    """The canonical release key an alias stands for, or None if ``key`` is canonical."""
    for pat, rep in _ALIASES:
        if re.match(pat, key):
            return _canonical(re.sub(pat, rep, key)) or re.sub(pat, rep, key)
    return None


def from_reference_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A release ``state_dict`` (optionally with DDP's ``module.`` prefix) as a new dict in this project's key
    layout (shapes unchanged). ``ValueError`` names every key that is neither a release key nor an alias, or an
    alias whose tensor differs from its canonical key's."""
    if not isinstance(sd, Mapping):
        raise ValueError(f"expected a state_dict mapping of key -> tensor, got {type(sd).__name__}")
    src = dict(sd)
    if src and all(k.startswith("module.") for k in src):  # DDP's prefix
        src = {k[len("module."):]: v for k, v in src.items()}
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in src.items():
        if (canon := _canonical(key)) is not None:
            if canon in src and not torch.equal(src[canon], value):
                raise ValueError(f"release checkpoint: alias {key!r} differs from {canon!r}; the file is inconsistent")
            continue
        for pat, rep in _RULES:
            if re.match(pat, key):
                out[re.sub(pat, rep, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not keys of the reference release's MS-ResNet: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    if any(k.startswith("layer0.") for k in src):  # MS-ResNet-34: stages layer0-3 -> layer1-4
        out = {re.sub(r"^layer(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v for k, v in out.items()}
    return out


_INVERSE: list[tuple[str, list[str]]] = [(f"^{re.escape(b)}(.*)$", [a + r"\1"]) for a, b in _PREFIXES] + [
    (r"^stem_bn\.(.*)$", [r"input_conv.bn.bn.\1", r"input_conv.bn.seqbn.module.\1"]),
    (r"^(layer\d+\.\d+)\.(conv[12])\.(.*)$", [r"\1.\2.\3", r"\1.\2_s.layer.module.\3"]),
    (r"^(layer\d+\.\d+)\.bn([12])\.(.*)$", [r"\1.bn\2.bn.\3", r"\1.bn\2.seqbn.module.\3", r"\1.conv\2_s.bn.bn.\3",
                                            r"\1.conv\2_s.bn.seqbn.module.\3"]),
    (r"^(layer\d+\.\d+)\.downsample\.0\.(.*)$", [r"\1.downsample.layer.module.\2"]),
    (r"^(layer\d+\.\d+)\.downsample\.1\.(.*)$", [r"\1.downsample.bn.bn.\2", r"\1.downsample.bn.seqbn.module.\2"]),
]
_INVERSE_34: list[tuple[str, list[str]]] = [
    (r"^stem_conv\.(.*)$", [r"conv1.\1", r"conv1_s.layer.module.\1"]),
    (r"^stem_bn\.(.*)$", [r"bn1.bn.\1", r"bn1.seqbn.module.\1", r"conv1_s.bn.bn.\1", r"conv1_s.bn.seqbn.module.\1"]),
    (r"^fc\.(.*)$", [r"fc1_s.layer.module.\1"]),
]


def to_reference_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`from_reference_state_dict`, aliases included (for tests and export). A model with a
    ``layer4`` (MS-ResNet-34) gets the release's ImageNet names (``conv1``, ``bn1``, ``layer0-3``, ``fc1_s``), others
    the CIFAR names (``input_conv``, ``layer1-3``, ``fc``)."""
    imagenet = any(k.startswith("layer4.") for k in sd)
    rules = _INVERSE_34 + _INVERSE if imagenet else _INVERSE
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if imagenet:
            key = re.sub(r"^layer(\d+)\.", lambda m: f"layer{int(m.group(1)) - 1}.", key)
        for pat, reps in rules:
            if re.match(pat, key):
                for rep in reps:
                    out[re.sub(pat, rep, key)] = value
                break
        else:
            raise ValueError(f"key {key!r} has no counterpart in the reference release's layout")
    return out
