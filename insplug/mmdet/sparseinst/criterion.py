"""``SparseInstCriterion``: the SparseInst losses with mmdet's own loss modules.

Matching and target gathering come from :func:`insplug.core.sparseinst.loss.prepare_loss_inputs`;
the four terms reuse mmdet's ``FocalLoss`` (one-hot targets, sum / number of targets via
``avg_factor``), ``CrossEntropyLoss`` (sigmoid; mask pixels and objectness vs. IoU) and
``DiceLoss`` (V-Net form; ``eps=5e-5`` on each denominator term equals the official 1e-4 on
their sum), whose maths matches the official implementation.
"""
from typing import Dict, List, Sequence

import torch
from mmdet.utils import reduce_mean
from torch import Tensor, nn

from insplug.core.sparseinst.loss import prepare_loss_inputs
from insplug.registry import MODELS, TASK_UTILS


@MODELS.register_module()
class SparseInstCriterion(nn.Module):
    """Matcher + losses of SparseInst.

    Args:
        num_classes: K, must equal the decoder's.
        assigner: matcher config (``SparseInstMatcher``, alpha 0.8).
        loss_cls, loss_mask, loss_dice, loss_obj: mmdet loss configs (weights 2, 5, 2, 1).
    """

    def __init__(self, num_classes: int = 80,
                 assigner: dict = dict(type='SparseInstMatcher', alpha=0.8, beta=0.2),
                 loss_cls: dict = dict(type='FocalLoss', use_sigmoid=True, alpha=0.25, gamma=2.0,
                                       reduction='mean', loss_weight=2.0),
                 loss_mask: dict = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                        reduction='mean', loss_weight=5.0),
                 loss_dice: dict = dict(type='DiceLoss', use_sigmoid=True, activate=True,
                                        reduction='mean', naive_dice=False, eps=5e-5,
                                        loss_weight=2.0),
                 loss_obj: dict = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                       reduction='mean', loss_weight=1.0)):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = TASK_UTILS.build(assigner)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)
        self.loss_obj = MODELS.build(loss_obj)

    def forward(self, outputs: Dict[str, Tensor], batch_gt_instances: Sequence,
                batch_img_metas: Sequence[dict]) -> Dict[str, Tensor]:
        """Decoder outputs + mmdet ground truth (``masks``, ``labels``) -> loss dict."""
        device = outputs['cls_logits'].device
        gt_masks: List[Tensor] = []
        for b, gt in enumerate(batch_gt_instances):
            if 'masks' not in gt:
                raise ValueError(f'image {b} has no gt masks: load them with '
                                 "dict(type='LoadAnnotations', with_mask=True)")
            if len(gt) == 0:
                h, w = batch_img_metas[b]['batch_input_shape']
                gt_masks.append(torch.zeros((0, h, w), device=device))
            else:
                gt_masks.append(gt.masks.to_tensor(dtype=torch.float32, device=device))
        gt_labels = [gt.labels.to(device) for gt in batch_gt_instances]
        pad_shape = tuple(batch_img_metas[0]['batch_input_shape'])
        inputs = prepare_loss_inputs(outputs, gt_masks, gt_labels, pad_shape, self.num_classes,
                                     matcher=self.matcher)
        num = sum(len(labels) for labels in gt_labels)
        num = reduce_mean(torch.tensor(float(num), device=device)).clamp(min=1.0).item()

        loss_cls = self.loss_cls(inputs['cls_logits'], inputs['cls_targets'], avg_factor=num)
        masks, targets = inputs['mask_logits'], inputs['mask_targets']
        if masks.shape[0] == 0:
            zero = masks.sum() * 0 + inputs['obj_logits'].sum() * 0
            return dict(loss_cls=loss_cls, loss_mask=zero, loss_dice=zero, loss_obj=zero)
        return dict(loss_cls=loss_cls,
                    loss_mask=self.loss_mask(masks, targets),
                    loss_dice=self.loss_dice(masks, targets, avg_factor=num),
                    loss_obj=self.loss_obj(inputs['obj_logits'], inputs['iou_targets']))
