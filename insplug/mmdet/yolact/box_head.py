"""``YOLACTBoxHead``: mmdet's ``YOLACTHead`` with YOLACT's own hard-negative count on images
without positives.

mmdet's ``YOLACTHead.OHEMloss_by_feat_single`` keeps *every* negative anchor of an image that
has no positive one (e.g. an image without instances), and divides that image's summed
cross-entropy by the batch's positive count: one empty image then contributes thousands of
anchors' losses (loss_cls ~1e3 at initialisation, versus ~10 for a normal batch) and drowns
the gradient of the other images. YOLACT (and SSD) pick ``neg_pos_ratio x num_pos`` hard
negatives per image, i.e. none for an image without positives (dbolya/yolact
``MultiBoxLoss.ohem_conf_loss``: ``num_neg = clamp(negpos_ratio * num_pos, max=#anchors-1)``).
This head restores that count; everything else is mmdet's ``YOLACTHead``.
"""
from mmdet.models.dense_heads.yolact_head import YOLACTHead
from torch import Tensor

from insplug.registry import MODELS

__all__ = ['YOLACTBoxHead']


@MODELS.register_module()
class YOLACTBoxHead(YOLACTHead):
    """``YOLACTHead`` whose OHEM keeps ``neg_pos_ratio x num_pos`` negatives in every image
    (zero for an image without positives). Same arguments as mmdet's ``YOLACTHead``."""

    def OHEMloss_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, anchors: Tensor,
                                labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
                                bbox_weights: Tensor, avg_factor: int) -> tuple:
        """One image's OHEM loss. Shapes: A anchors, K + 1 classes (background last).

        Args:
            cls_score: (A, K + 1) logits.  bbox_pred: (A, 4) deltas.  anchors: (A, 4).
            labels: (A,) targets in [0, K] (K = background).  label_weights: (A,).
            bbox_targets, bbox_weights: (A, 4).  avg_factor: the batch's positive count.

        Returns:
            ((1,) classification loss, () box loss).
        """
        loss_cls_all = self.loss_cls(cls_score, labels, label_weights)  # (A,)
        pos = (labels >= 0) & (labels < self.num_classes)
        neg = labels == self.num_classes
        num_neg = min(self.train_cfg['neg_pos_ratio'] * int(pos.sum()), int(neg.sum()))
        hardest_neg = loss_cls_all[neg].topk(num_neg).values
        loss_cls = (loss_cls_all[pos].sum() + hardest_neg.sum()) / avg_factor
        if self.reg_decoded_bbox:
            bbox_pred = self.bbox_coder.decode(anchors, bbox_pred)
        loss_bbox = self.loss_bbox(bbox_pred, bbox_targets, bbox_weights,
                                   avg_factor=avg_factor)
        return loss_cls[None], loss_bbox
