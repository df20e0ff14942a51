"""Registers :class:`insplug.core.prototypes.yolact_fpn.YolactFPNModule` as ``YOLACTFPN``: YOLACT's
FPN (ReLU after the 3x3 output convs, P6/P7 by stride-2 convs from the ReLU'd P5), which mmdet's
``FPN`` cannot express (it has no ReLU on P3-P5)."""
from typing import Sequence, Tuple

from mmengine.model import BaseModule
from torch import Tensor

from insplug.core.prototypes.yolact_fpn import YolactFPNModule
from insplug.registry import MODELS

__all__ = ['YOLACTFPN']


@MODELS.register_module()
class YOLACTFPN(BaseModule):
    """Args: ``in_channels`` (C3-C5 widths), ``out_channels`` (256), ``num_extra`` (2),
    ``relu_pred_layers`` (True), ``relu_extra`` (False); see the core module."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_extra: int = 2,
                 relu_pred_layers: bool = True, relu_extra: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fpn = YolactFPNModule(in_channels, out_channels, num_extra, relu_pred_layers,
                                   relu_extra)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        return tuple(self.fpn(feats))
