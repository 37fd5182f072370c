"""Load checkpoints saved by the reference release into :mod:`dta_lib.models`.

The release registers every conv and BN twice (``conv1`` and ``conv1_s.layer.module``, ``bn1.bn`` and
``bn1.seqbn.module``), so its ``state_dict`` holds each tensor under two names; :func:`from_reference_state_dict`
keeps one of each, renames it and checks that aliases agree. Both release models convert: the CIFAR / DVS
``MS_ResNet`` (``input_conv``, ``layer1-3``, ``fc``) and the ImageNet ``MS_ResNet_34`` (``conv1`` / ``bn1`` with
their ``conv1_s`` aliases, stages ``layer0-3`` -> our ``layer1-4``, classifier ``fc1_s``)."""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch
from torch import Tensor

# (release prefix, our prefix) of the keys renamed one to one
_PREFIXES = [("input_conv.layer.module.", "stem_conv."), ("fc.layer.module.", "fc."),
             ("encoding.T_NA.encoding.0.", "dta.tna.encode."), ("encoding.T_NA.tca.LTCA.0.", "dta.tna.ltca.depthwise."),
             ("encoding.T_NA.tca.LTCA.1.", "dta.tna.ltca.dilated."), ("encoding.T_NA.tca.LTCA.2.", "dta.tna.ltca.pointwise."),
             ("encoding.T_NA.tca.MLP_block.0.", "dta.tna.gtca.fc1."), ("encoding.T_NA.tca.MLP_block.2.", "dta.tna.gtca.fc2."),
             ("encoding.T_NA.decoding.", "dta.tna.decode."), ("encoding.T_XA.", "dta.txa.")]
_BN = r"(?:bn|seqbn\.module)"  # a release tdBatchNorm holds its BN twice, as ``bn`` and ``seqbn.module``
# (release pattern, our replacement), the first match applied; an alias gets the name of the key it aliases
_RULES: list[tuple[str, str]] = [(f"^{re.escape(a)}", b) for a, b in _PREFIXES] + [
    (rf"^input_conv\.bn\.{_BN}\.", "stem_bn."),
    (rf"^(layer\d+\.\d+)\.(bn[12])\.{_BN}\.", r"\1.\2."),
    (rf"^(layer\d+\.\d+)\.conv([12])_s\.bn\.{_BN}\.", r"\1.bn\2."),
    (r"^(layer\d+\.\d+)\.downsample\.layer\.module\.", r"\1.downsample.0."),
    (rf"^(layer\d+\.\d+)\.downsample\.bn\.{_BN}\.", r"\1.downsample.1."),
    (r"^(layer\d+\.\d+)\.(conv[12])(?:_s\.layer\.module)?\.", r"\1.\2."),
    (r"^fc1_s\.layer\.module\.", "fc."),                     # MS-ResNet-34
    (r"^conv1(?:_s\.layer\.module)?\.", "stem_conv."),       # MS-ResNet-34 stem
    (rf"^(?:bn1|conv1_s\.bn)\.{_BN}\.", "stem_bn."),
]
_ALIAS = re.compile(r"seqbn\.module\.|conv[12]_s\.")  # the second names (aliases) of a tensor


def _ours(key: str, stages_from_0: bool) -> str | None:
    """Our name of a release key (alias or not), or None; ``stages_from_0``: MS-ResNet-34, layer0-3 -> layer1-4."""
    for pat, rep in _RULES:
        if re.match(pat, key):
            key = re.sub(pat, rep, key)
            return re.sub(r"^layer(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", key) if stages_from_0 else key
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
    stages_from_0 = any(k.startswith("layer0.") for k in src)
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    order = sorted(src, key=lambda k: bool(_ALIAS.search(k)))  # canonical keys first, in the file's order
    for key in order:
        if (ours := _ours(key, stages_from_0)) is None:
            unknown.append(key)
        elif ours not in out:
            out[ours] = src[key]
        elif not torch.equal(out[ours], src[key]):
            first = next(k for k in order if _ours(k, stages_from_0) == ours)
            raise ValueError(f"release checkpoint: alias {key!r} differs from {first!r}; the file is inconsistent")
    if unknown:
        raise ValueError(f"not keys of the reference release's MS-ResNet: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    return out


def to_reference_state_dict(sd: Mapping[str, Tensor], reference_keys: Iterable[str]) -> dict[str, Tensor]:
    """The inverse of :func:`from_reference_state_dict`: ``sd`` (this project's layout) under the release's keys
    ``reference_keys`` (e.g. ``ReferenceMSResNet18(...).state_dict()``), aliases included, each release key mapped by
    the same rules to ours (for tests and export). ``ValueError`` names the release keys without a tensor in ``sd``
    and the keys of ``sd`` that no release key takes."""
    keys = list(reference_keys)
    stages_from_0 = any(k.startswith("layer0.") for k in keys)
    ours = {key: _ours(key, stages_from_0) for key in keys}
    missing, unused = [k for k, o in ours.items() if o not in sd], set(sd) - set(ours.values())
    if missing or unused:
        raise ValueError(f"no counterpart between the layouts: release keys {missing[:10]}, ours {sorted(unused)[:10]}")
    return {key: sd[o] for key, o in ours.items()}
