"""YOLACT / YOLACT++ (dbolya/yolact) checkpoints -> insplug's mmdet ``YOLACT`` model.

The released ``.pth`` files (``yolact_base_54_800000.pth``, ``yolact_resnet50_54_800000.pth``,
``yolact_plus_base_54_800000.pth``, ``yolact_plus_resnet50_54_800000.pth``, ...) are a bare
``Yolact.state_dict()``. Mapping (the tensors are the same, 1:1, except where noted):

==============================================  ===============================================
official                                        insplug
==============================================  ===============================================
``backbone.conv1`` / ``backbone.bn1``           ``backbone.conv1`` / ``backbone.bn1``
``backbone.layers.{i}.{j}.*``                   ``backbone.layer{i+1}.{j}.*``
``...conv2.conv_offset_mask.*`` (DCNv2, ++)     ``...conv2.conv_offset.*`` (mmcv's layout is the
                                                same: offsets x/y then mask logits)
``...conv2.bias`` (DCNv2 bias, ++)              folded into ``...bn2.running_mean`` (exact:
                                                BN(x + b) with mean m == BN(x) with mean m - b)
``fpn.lat_layers.{k}`` / ``fpn.pred_layers.{k}``  ``neck.fpn.lateral_convs.{L-1-k}`` /
                                                ``neck.fpn.fpn_convs.{L-1-k}`` (the release
                                                stores them coarsest first)
``fpn.downsample_layers.{j}``                   ``neck.fpn.downsample_convs.{j}``
``proto_net.{0,2,4}`` / ``.8`` / ``.10``        ``mask_head.protonet.convs.{0,1,2}.0`` /
                                                ``post_upsample.0`` / ``proto_conv``
``prediction_layers.0.upfeature.0``             ``bbox_head.head_convs.0.conv``
``prediction_layers.0.bbox_layer``              ``bbox_head.conv_reg``
``prediction_layers.0.conf_layer``              ``bbox_head.conv_cls``, per prior the background
                                                channel moved from first to last
``prediction_layers.0.mask_layer``              ``bbox_head.conv_coeff``
``semantic_seg_conv``                           ``mask_head.segm_conv``
``maskiou_net.maskiou_net.{i}`` (++)            ``mask_head.mask_iou_net.net.{i}``
==============================================  ===============================================

::

    python tools/convert_checkpoint.py yolact yolact_resnet50_54_800000.pth out.pth \
        --config configs/yolact/yolact_r50_coco.py

The YOLACT++ ResNet-101 release (``resnet101_dcn_inter3``) has DCN in every third block of
stages 3-5, which mmdet's ``ResNet`` cannot express (DCN per stage only): see
``docs/deviations/yolact.md``.
"""
import re

import torch

from insplug.converters import register_converter
from insplug.converters.common import ConversionError, rename_keys

_PROTO = {'0': 'convs.0.0', '2': 'convs.1.0', '4': 'convs.2.0', '8': 'post_upsample.0',
          '10': 'proto_conv'}


@register_converter('yolact', signature=[r'^proto_net\.', r'^prediction_layers\.0\.conf_layer\.'],
                    source='YOLACT / YOLACT++ (dbolya/yolact) Yolact.state_dict() .pth')
def convert_yolact(state_dict):
    sd = dict(state_dict)
    # DCNv2 bias -> bn2.running_mean (the release's DCN has a bias, mmdet's ResNet DCN does not)
    for key in [k for k in sd if re.match(r'^backbone\.layers\.\d+\.\d+\.conv2\.bias$', k)]:
        bn = key.replace('conv2.bias', 'bn2.running_mean')
        if bn not in sd:
            raise ConversionError(f'{key}: no {bn} to fold the DCN bias into')
        sd[bn] = sd[bn] - sd.pop(key).to(sd[bn].dtype)
    num_lat = len({k.split('.')[2] for k in sd if k.startswith('fpn.lat_layers.')})
    out = {}
    for key in list(sd):
        m = re.match(r'^backbone\.layers\.(\d+)\.(.*)$', key)
        if m:
            rest = m.group(2).replace('conv2.conv_offset_mask.', 'conv2.conv_offset.')
            out[f'backbone.layer{int(m.group(1)) + 1}.{rest}'] = sd.pop(key)
            continue
        m = re.match(r'^fpn\.(lat|pred)_layers\.(\d+)\.(weight|bias)$', key)
        if m:
            name = 'lateral_convs' if m.group(1) == 'lat' else 'fpn_convs'
            out[f'neck.fpn.{name}.{num_lat - 1 - int(m.group(2))}.{m.group(3)}'] = sd.pop(key)
            continue
        m = re.match(r'^proto_net\.(\d+)\.(weight|bias)$', key)
        if m:
            if m.group(1) not in _PROTO:
                raise ConversionError(f'{key}: unexpected protonet layer (released configs have '
                                      'convs at 0, 2, 4, 8, 10)')
            out[f'mask_head.protonet.{_PROTO[m.group(1)]}.{m.group(2)}'] = sd.pop(key)
    rules = [
        (r'^(backbone\.(conv1|bn1)\..*)$', r'\1'),
        (r'^fpn\.downsample_layers\.(\d+)\.', r'neck.fpn.downsample_convs.\1.'),
        (r'^prediction_layers\.0\.upfeature\.0\.', 'bbox_head.head_convs.0.conv.'),
        (r'^prediction_layers\.0\.bbox_layer\.', 'bbox_head.conv_reg.'),
        (r'^prediction_layers\.0\.conf_layer\.', 'bbox_head.conv_cls.'),
        (r'^prediction_layers\.0\.mask_layer\.', 'bbox_head.conv_coeff.'),
        (r'^semantic_seg_conv\.', 'mask_head.segm_conv.'),
        (r'^maskiou_net\.maskiou_net\.(\d+)\.', r'mask_head.mask_iou_net.net.\1.'),
    ]
    out.update(rename_keys(sd, rules=rules, method='yolact'))
    # classifier: per prior [bg, c1..cK] -> [c1..cK, bg]
    w, b = out['bbox_head.conv_cls.weight'], out['bbox_head.conv_cls.bias']
    num_priors = out['bbox_head.conv_reg.weight'].shape[0] // 4
    if w.shape[0] % num_priors:
        raise ConversionError(f'conf_layer has {w.shape[0]} channels, not a multiple of the '
                              f'{num_priors} priors of bbox_layer')
    c = w.shape[0] // num_priors

    def bg_last(t):
        t = t.reshape(num_priors, c, *t.shape[1:])
        return torch.cat([t[:, 1:], t[:, :1]], 1).reshape(num_priors * c, *t.shape[2:])

    out['bbox_head.conv_cls.weight'], out['bbox_head.conv_cls.bias'] = bg_last(w), bg_last(b)
    return out


# ----------------------------------------------------------------------------- detectron2
def _d2_rules():
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    p = r'backbone\.'
    dcn = [(rf'^{p}layer{n}\.(\d+)\.conv2\.conv_offset\.(weight|bias)$',
            rf'backbone.res{n + 1}.\1.conv2_offset.\2') for n in range(1, 5)]
    return dcn + mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.') + [
        (r'^neck\.fpn\.', 'fpn.'),
        (r'^bbox_head\.head_convs\.(\d+)\.conv\.', r'head.head_convs.\1.'),
        (r'^bbox_head\.(conv_cls|conv_reg|conv_coeff)\.', r'head.\1.'),
        (r'^mask_head\.protonet\.', 'protonet.'),
        (r'^mask_head\.segm_conv\.', 'segm_conv.'),
        (r'^mask_head\.mask_iou_net\.', 'mask_iou_net.'),
    ]


def to_detectron2(state_dict):
    """insplug mmdet-layout YOLACT state_dict (the output of :func:`convert_yolact`) -> insplug's
    detectron2 layout (``InsplugYOLACT`` with detectron2's ``build_resnet_backbone``).

    Tensors unchanged: mmdet's torchvision-named ResNet -> detectron2's ResNet names
    (``backbone.stem``, ``backbone.res{2-5}``; the DCNv2 offset convs of YOLACT++ ->
    ``conv2_offset``), ``neck.fpn.*`` -> ``fpn.*`` (the same core module),
    ``bbox_head.{head_convs.i.conv, conv_cls, conv_reg, conv_coeff}`` -> ``head.*`` (the core
    :class:`~insplug.core.prototypes.yolact_head.YolactPredictionHead`, background class last as
    in insplug's mmdet layout), ``mask_head.{protonet, segm_conv, mask_iou_net}`` -> top level.
    The detectron2 config must use ``RESNETS.STRIDE_IN_1X1: False`` (torchvision ResNets) and,
    for YOLACT++, ``DEFORM_ON_PER_STAGE: [False, True, True, True]``, ``DEFORM_MODULATED``.
    """
    return rename_keys(state_dict, _d2_rules(), method='yolact (to detectron2)')
