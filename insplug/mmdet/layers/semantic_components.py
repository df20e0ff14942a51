"""mmdet registration of the semantic-segmentation components (insplug scope).

Names (none is used by mmdet or mmseg; mmseg's heads are ``ASPPHead``, ``UPerHead``,
``PSAHead``, ``FCNHead`` ..., its loss ``LovaszLoss``):

* backbones (tuples of the ``out_indices`` levels): ``DRN``, ``ENet``, ``ESPNet``,
  ``FCDenseNet``, ``LinkNet``;
* single-map context modules (B, C, H, W) -> (B, C', H', W'), usable as SparseInst's encoder
  ``context`` or inside :class:`ContextNeck`: ``ASPP``, ``DenseASPP``, ``DUC``,
  ``ObjectContextBlock`` (OCNet base-OC), ``PointwiseSpatialAttention`` (PSANet),
  ``ChainedResidualPooling``;
* necks on a multi-level tuple: ``ContextNeck`` (a context module on chosen levels),
  ``UPerNetNeck``, ``LWRefineNetNeck``, ``FCN8sNeck`` (fusions returning a 1-tuple);
* ``UPerNetSemanticBranch`` (RefineMask's ``semantic_branch``);
* loss: ``LovaszSoftmaxLoss``.

The maths is in :mod:`insplug.core.layers` / :mod:`insplug.core.backbones` /
:mod:`insplug.core.losses.lovasz`. From a stock mmdet config name them ``insplug.<Name>``.
"""
import copy
from typing import Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from insplug.core.backbones.drn import DRN
from insplug.core.backbones.enet import ENet
from insplug.core.backbones.espnet import ESPNetEncoder
from insplug.core.backbones.fc_densenet import FCDenseNet
from insplug.core.backbones.linknet import LinkNet
from insplug.core.layers.aspp import ASPP
from insplug.core.layers.crp import ChainedResidualPooling, LightWeightRefineNetDecoder
from insplug.core.layers.dense_aspp import DenseASPP
from insplug.core.layers.duc import DUC
from insplug.core.layers.fcn8s_head import FCN8sHead
from insplug.core.layers.object_context import BaseOC
from insplug.core.layers.psa import PSA
from insplug.core.layers.upernet import UPerNetFusion, UPerNetSemanticBranch
from insplug.core.losses.lovasz import lovasz_softmax
from insplug.registry import MODELS

for _name, _cls in [('DRN', DRN), ('ENet', ENet), ('ESPNet', ESPNetEncoder),
                    ('FCDenseNet', FCDenseNet), ('LinkNet', LinkNet),
                    ('DenseASPP', DenseASPP), ('ObjectContextBlock', BaseOC),
                    ('PointwiseSpatialAttention', PSA),
                    ('ChainedResidualPooling', ChainedResidualPooling),
                    ('UPerNetSemanticBranch', UPerNetSemanticBranch)]:
    MODELS.register_module(name=_name, module=_cls)


def _norm_factory(norm_cfg):
    if norm_cfg is None:
        return None
    return lambda num_channels: build_norm_layer(norm_cfg, num_channels)[1]


@MODELS.register_module(name='ASPP')
class ASPPFromConfig(ASPP):
    """:class:`~insplug.core.layers.aspp.ASPP` with an mmcv ``norm_cfg`` (default BN; None:
    biased convolutions without norm)."""

    def __init__(self, in_channels: int, channels: int = 256, dilations=(6, 12, 18),
                 image_pooling: bool = True, norm_cfg: Optional[dict] = dict(type='BN'),
                 dropout: float = 0.1):
        super().__init__(in_channels, channels, dilations, image_pooling,
                         _norm_factory(norm_cfg), dropout)


@MODELS.register_module(name='DUC')
class DUCFromConfig(DUC):
    """:class:`~insplug.core.layers.duc.DUC` with an mmcv ``norm_cfg`` (default BN)."""

    def __init__(self, in_channels: int, out_channels: int, upscale: int = 2,
                 norm_cfg: Optional[dict] = dict(type='BN'), act: bool = True):
        super().__init__(in_channels, out_channels, upscale, _norm_factory(norm_cfg), act)


def _level_channels(in_channels, level):
    if isinstance(in_channels, int):
        return in_channels
    try:
        return in_channels[level]
    except IndexError:
        raise ValueError(f'level {level} is out of range for in_channels={list(in_channels)}') \
            from None


@MODELS.register_module()
class ContextNeck(BaseModule):
    """Apply a single-map context module (``ASPP``, ``DenseASPP``, ``ObjectContextBlock``,
    ``PointwiseSpatialAttention``, ``DUC``, ...) to chosen levels of a feature tuple; the other
    levels pass through.

    Args:
        context: MODELS config of the module; its first argument (``in_channels``) is filled
            from ``in_channels`` per level.
        in_channels: channels of every level (int) or one entry per level.
        levels: indices of the transformed levels (default the last).
    """

    def __init__(self, context: dict, in_channels: Union[int, Sequence[int]],
                 levels: Sequence[int] = (-1,), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not levels:
            raise ValueError('ContextNeck: levels must name at least one level')
        self.levels = tuple(int(i) for i in levels)
        self.contexts = nn.ModuleList()
        for level in self.levels:
            cfg = copy.deepcopy(context)
            cfg['in_channels'] = _level_channels(in_channels, level)
            self.contexts.append(MODELS.build(cfg))

    def forward(self, inputs):
        """Tuple of (B, C_l, H_l, W_l) -> tuple with the chosen levels transformed."""
        feats = list(inputs)
        for level, module in zip(self.levels, self.contexts):
            if not -len(feats) <= level < len(feats):
                raise ValueError(f'ContextNeck: level {level} does not exist in the '
                                 f'{len(feats)} input maps; fix `levels`')
            feats[level] = module(feats[level])
        return tuple(feats)


class _FusionNeck(BaseModule):
    """Multi-level fusion -> 1-tuple; ``start_level`` drops the finer levels first."""

    def __init__(self, start_level: int = 0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.start_level = start_level

    def forward(self, inputs):
        return (self.fusion(list(inputs)[self.start_level:]),)


@MODELS.register_module()
class UPerNetNeck(_FusionNeck):
    """UPerNet PPM + FPN fusion of levels ``start_level..``: tuple -> ((B, F, H_s, W_s),)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), ppm_channels: int = 512,
                 num_classes: Optional[int] = None, start_level: int = 0, init_cfg=None):
        super().__init__(start_level, init_cfg)
        self.fusion = UPerNetFusion(in_channels, channels, pool_scales, ppm_channels,
                                    num_classes)


@MODELS.register_module()
class LWRefineNetNeck(_FusionNeck):
    """Light-Weight RefineNet CRP decoder: tuple -> ((B, F, H_s, W_s),)."""

    def __init__(self, in_channels: Sequence[int], channels: int = 256,
                 top_channels: Optional[int] = None, num_stages: int = 4,
                 num_classes: Optional[int] = None, start_level: int = 0, init_cfg=None):
        super().__init__(start_level, init_cfg)
        self.fusion = LightWeightRefineNetDecoder(in_channels, channels, top_channels,
                                                  num_stages, num_classes)


@MODELS.register_module()
class FCN8sNeck(_FusionNeck):
    """FCN-8s skip fusion of three levels (strides 8, 16, 32) at stride 8 (no final x8
    upsampling): tuple -> ((B, K, H_8, W_8),)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int,
                 skip_scales: Sequence[float] = (1.0, 1.0), start_level: int = 0,
                 init_cfg=None):
        super().__init__(start_level, init_cfg)
        self.fusion = FCN8sHead(in_channels, out_channels, skip_scales, upsample_final=False)

    def forward(self, inputs):
        return (self.fusion(list(inputs)[self.start_level:self.start_level + 3]),)


@MODELS.register_module()
class LovaszSoftmaxLoss(nn.Module):
    """``loss_weight * lovasz_softmax(softmax(logits), labels, classes, per_image, ignore)``.

    ``forward(logits (B, C, H, W), labels (B, H, W) long)``; ``use_softmax=False`` takes
    probabilities instead of logits.
    """

    def __init__(self, classes='present', per_image: bool = False, ignore_index=None,
                 use_softmax: bool = True, loss_weight: float = 1.0):
        super().__init__()
        self.classes = classes if isinstance(classes, str) else list(classes)
        self.per_image, self.ignore_index = per_image, ignore_index
        self.use_softmax, self.loss_weight = use_softmax, loss_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probas = torch.softmax(logits, dim=1) if self.use_softmax else logits
        return self.loss_weight * lovasz_softmax(probas, labels, self.classes, self.per_image,
                                                 self.ignore_index)
