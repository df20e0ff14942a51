"""mmdet wrapper of the Lovasz hinge (:mod:`insplug.core.losses.lovasz`)."""
from torch import nn

from insplug.core.losses.lovasz import lovasz_hinge
from insplug.registry import MODELS


@MODELS.register_module()
class LovaszHingeLoss(nn.Module):
    """``loss_weight * lovasz_hinge(logits, labels, per_image, valid)``.

    ``forward(logits (B, P) or (B, H, W), labels of the same shape, valid=None)``.
    """

    def __init__(self, per_image: bool = True, loss_weight: float = 1.0):
        super().__init__()
        self.per_image = per_image
        self.loss_weight = loss_weight

    def forward(self, logits, labels, valid=None):
        return self.loss_weight * lovasz_hinge(logits, labels, self.per_image, valid)
