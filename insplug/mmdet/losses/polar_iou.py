"""mmdet wrapper of the polar IoU loss (:mod:`insplug.core.losses.polar_iou`)."""
from torch import nn

from insplug.core.losses.polar_iou import legacy_box_iou_loss, polar_iou_loss
from insplug.registry import MODELS


@MODELS.register_module()
class PolarIoULoss(nn.Module):
    """``loss_weight * sum_i w_i log(sum max(d, d*) / sum min(d, d*)) / avg_factor``.

    ``forward(pred (N, R), target (N, R), weight (N,) or None, avg_factor=None)``.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None):
        return self.loss_weight * polar_iou_loss(pred, target, weight, avg_factor)


@MODELS.register_module()
class LegacyBoxIoULoss(nn.Module):
    """mmdet 1.x ``IoULoss``: ``loss_weight * sum_i w_i * -log(iou_i) / avg_factor`` with the
    ``+1`` box sizes of mmdet 1.x (:func:`insplug.core.losses.polar_iou.legacy_box_iou_loss`);
    the box loss of the PolarMask release.

    ``forward(pred (N, 4), target (N, 4), weight (N,) or None, avg_factor=None)``.
    """

    def __init__(self, eps: float = 1e-6, loss_weight: float = 1.0):
        super().__init__()
        self.eps = eps
        self.loss_weight = loss_weight

    def forward(self, pred, target, weight=None, avg_factor=None):
        return self.loss_weight * legacy_box_iou_loss(pred, target, weight, avg_factor, self.eps)
