"""``SparseInst`` detector: backbone -> InstanceContextEncoder -> IAMDecoder, NMS-free.

Training calls ``SparseInstCriterion``; inference calls
:func:`insplug.core.sparseinst.inference.sparseinst_inference` and returns
``InstanceData(masks, labels, scores, bboxes)`` per image (boxes are the masks' tight boxes),
which ``CocoMetric`` evaluates for both ``bbox`` and ``segm``.
"""
from typing import Dict, Tuple

from mmdet.models.detectors.base import BaseDetector
from mmengine.structures import InstanceData
from torch import Tensor

from insplug.core.sparseinst.inference import sparseinst_inference
from insplug.registry import MODELS

DEFAULT_TEST_CFG = dict(score_thr=0.005, mask_thr_binary=0.45, max_per_img=100)


@MODELS.register_module()
class SparseInst(BaseDetector):
    """Single-stage, query-free instance segmentor (Cheng et al., CVPR 2022).

    Args:
        backbone: backbone config returning C3, C4, C5 (e.g. ResNet ``out_indices=(1, 2, 3)``).
        encoder: ``InstanceContextEncoder`` config.
        decoder: ``IAMDecoder`` config (holds ``num_classes``).
        criterion: ``SparseInstCriterion`` config; its ``num_classes`` defaults to the decoder's.
        test_cfg: ``score_thr`` (0.005), ``mask_thr_binary`` (0.45), ``max_per_img`` (100).
    """

    def __init__(self, backbone: dict, encoder: dict, decoder: dict,
                 criterion: dict = dict(type='SparseInstCriterion'), test_cfg: dict = None,
                 train_cfg: dict = None, data_preprocessor: dict = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.encoder = MODELS.build(encoder)
        self.decoder = MODELS.build(decoder)
        criterion = dict(criterion)
        criterion.setdefault('num_classes', self.decoder.num_classes)
        if criterion['num_classes'] != self.decoder.num_classes:
            raise ValueError(f"criterion num_classes ({criterion['num_classes']}) differs from "
                             f'decoder num_classes ({self.decoder.num_classes}); set them equal '
                             '(or drop it from the criterion to inherit the decoder value)')
        self.criterion = MODELS.build(criterion)
        self.test_cfg = dict(DEFAULT_TEST_CFG, **(test_cfg or {}))
        unknown = set(self.test_cfg) - set(DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f'SparseInst test_cfg: unknown keys {sorted(unknown)}; allowed: '
                             f'{sorted(DEFAULT_TEST_CFG)}')

    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        """(B, 3, Hp, Wp) -> encoder map (B, D, Hp/8, Wp/8)."""
        return self.encoder(self.backbone(batch_inputs))

    def _decode(self, batch_inputs: Tensor) -> Dict[str, Tensor]:
        return self.decoder(self.extract_feat(batch_inputs))

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None) -> Tuple[Tensor, ...]:
        out = self._decode(batch_inputs)
        return out['cls_logits'], out['obj_logits'], out['mask_logits']

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        outputs = self._decode(batch_inputs)
        gts = [s.gt_instances for s in batch_data_samples]
        metas = [s.metainfo for s in batch_data_samples]
        return self.criterion(outputs, gts, metas)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        outputs = self._decode(batch_inputs)
        metas = [s.metainfo for s in batch_data_samples]
        out_key = 'ori_shape' if rescale else 'img_shape'
        results = sparseinst_inference(
            outputs, tuple(batch_inputs.shape[-2:]), [m['img_shape'] for m in metas],
            [m[out_key] for m in metas], self.test_cfg['score_thr'],
            self.test_cfg['mask_thr_binary'], self.test_cfg['max_per_img'])
        return self.add_pred_to_datasample(batch_data_samples,
                                           [InstanceData(**r) for r in results])
