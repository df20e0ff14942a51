"""EmbedMask detector: a single-stage detector whose head also returns masks."""
from mmdet.models.detectors import SingleStageDetector

from insplug.registry import MODELS


@MODELS.register_module()
class EmbedMask(SingleStageDetector):
    """Backbone + FPN + :class:`~insplug.mmdet.embedmask.head.EmbedMaskHead`."""
