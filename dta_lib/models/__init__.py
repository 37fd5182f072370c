"""Networks: the DTA attention (:mod:`.attention`), MS-ResNet backbones (:mod:`.ms_resnet`), the release's
own computation for comparison (:mod:`.reference`), checkpoint-key conversion (:mod:`.compat`) and parameter
accounting (:mod:`.params`, imported on demand: it needs pandas)."""
from __future__ import annotations

from .attention import ATTENTION_MODES, DTA, GTCA, LTCA, TNA, TXA
from .ms_resnet import MSBlock, MSResNet, ms_resnet18, ms_resnet34

__all__ = ["MSBlock", "MSResNet", "ms_resnet18", "ms_resnet34", "TXA", "TNA", "LTCA", "GTCA", "DTA", "ATTENTION_MODES"]
