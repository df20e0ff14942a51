"""Bottom-up instance segmentor: backbone (+ neck) + a bottom-up head, mmdet's detector API."""
from typing import Optional

from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from insplug.registry import MODELS


@MODELS.register_module()
class BottomUpSegmentor(BaseDetector):
    """Backbone, optional neck and a bottom-up head (SpatialEmbeddingHead, DiscriminativeHead).

    The head returns ``InstanceData`` with ``masks``, ``labels``, ``scores`` and ``bboxes`` (from
    the masks), so ``CocoMetric`` evaluates it like any other instance segmentor.
    """

    def __init__(self, backbone: dict, head: dict, neck: Optional[dict] = None,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        head = dict(head)
        if test_cfg is not None:
            head.setdefault('test_cfg', test_cfg)
        self.head = MODELS.build(head)

    def extract_feat(self, batch_inputs: Tensor):
        feats = self.backbone(batch_inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(feats) if isinstance(feats, (list, tuple)) else (feats,)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        return self.head(self.extract_feat(batch_inputs))

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        return self.head.loss(self.extract_feat(batch_inputs), batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        results = self.head.predict(self.extract_feat(batch_inputs), batch_data_samples,
                                    rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)
