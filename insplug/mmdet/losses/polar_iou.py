"""mmdet wrapper of the polar IoU loss (:mod:`insplug.core.losses.polar_iou`)."""
from torch import nn

from insplug.core.losses.polar_iou import polar_iou_loss
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
