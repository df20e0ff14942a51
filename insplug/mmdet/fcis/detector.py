"""``FCIS`` detector and ``FCISRPNHead``: mmdet's two-stage detector with the release's split
of the trunk (RPN on C4, the FCIS head on the dilated C5)."""
from mmdet.models.dense_heads import RPNHead
from mmdet.models.detectors import TwoStageDetector

from insplug.registry import MODELS


@MODELS.register_module()
class FCISRPNHead(RPNHead):
    """mmdet's ``RPNHead`` on one level of the backbone output (``in_index``; the release's
    RPN reads C4, stride 16, while the FCIS head reads the dilated C5)."""

    def __init__(self, *args, in_index=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_index = in_index

    def forward(self, x):
        return super().forward((x[self.in_index],))


@MODELS.register_module()
class FCIS(TwoStageDetector):
    """ResNet (C4, dilated C5) -> ``FCISRPNHead`` on C4 -> ``FCISRoIHead`` on C5."""
