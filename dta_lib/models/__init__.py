"""Networks: the DTA attention (:mod:`.attention`), MS-ResNet backbones (:mod:`.ms_resnet`), the release's
own computation for comparison (:mod:`.reference`), checkpoint-key conversion (:mod:`.compat`) and parameter
accounting (:mod:`.params`)."""
