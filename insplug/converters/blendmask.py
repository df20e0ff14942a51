"""BlendMask (aim-uofa/AdelaiDet, detectron2) checkpoints -> insplug (mmdet ``BlendMask``).

The released checkpoints (e.g. ``R_50_1x.pth``, BlendMask R_50_1x, 35.8 mask AP) are detectron2
files ``{'model': {...}}`` of AdelaiDet's ``BlendMask`` meta-architecture:

=============================================  ===============================================
official                                       insplug
=============================================  ===============================================
``backbone.bottom_up.stem / res2..res5``       ``backbone.`` (mmdet ResNet, caffe style)
``backbone.fpn_lateral{3,4,5}``                ``neck.lateral_convs.{0,1,2}.conv``
``backbone.fpn_output{3,4,5}``                 ``neck.fpn_convs.{0,1,2}.conv``
``backbone.top_block.p6 / p7``                 ``neck.fpn_convs.3 / 4.conv``
``proposal_generator.fcos_head.*``             ``bbox_head.*`` (FaithfulFCOSHead, mmdet names;
                                               :mod:`insplug.converters.fcos`)
``top_layer.*``                                ``bbox_head.top_layer.*``
``basis_module.refine.{i}.{0,1}``              ``mask_head.bottom_module.level_convs.{i}.{0,1}``
``basis_module.tower.{j}.{0,1}`` (j < n)       ``mask_head.bottom_module.convs.{j}.{0,1}``
``basis_module.tower.{n+1}.{0,1}``             ``mask_head.bottom_module.post_upsample.{0,1}``
``basis_module.tower.{n+2}``                   ``mask_head.bottom_module.proto_conv``
``basis_module.seg_head.{0,1,3,4,6}``          ``mask_head.semantic_head.net.{0,1,3,4,6}``
=============================================  ===============================================

(n = ``BASIS_MODULE.NUM_CONVS``, read from the keys; ``tower.{n}`` is the parameter-free
upsampling.) The number of FCOS tower convs and whether they have GN are read from the keys too.
All tensors map 1:1 except the FCOS ``scales`` (shape (1,) -> ()); BlendMask has none
(``USE_SCALE: False``). Check against the R50 config::

    python tools/convert_checkpoint.py blendmask R_50_1x.pth blendmask_r50_1x_insplug.pth \\
        --config configs/blendmask/blendmask_r50_1x.py
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import ConversionError, fpn_rules, rename_keys, resnet_rules
from insplug.converters.fcos import fcos_head_rules, fix_fcos_scales

FCOS = 'proposal_generator.fcos_head.'


def _max_index(keys, pattern):
    found = [int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m]
    return max(found) if found else None


def _fcos_layout(state_dict):
    keys = list(state_dict)
    last = _max_index(keys, re.escape(FCOS) + r'cls_tower\.(\d+)\.weight$')
    if last is None:
        return 0, 'GN'
    # with GN the blocks are [conv, GN, ReLU]; index 1 is then a 1-d GN weight
    gn = FCOS + 'cls_tower.1.weight'
    norm = 'GN' if gn in state_dict and state_dict[gn].dim() == 1 else None
    step = 3 if norm else 2
    return last // step + 1, norm


def basis_module_rules(state_dict, src_prefix='basis_module.',
                       dst_prefix='mask_head.bottom_module.',
                       sem_prefix='mask_head.semantic_head.net.'):
    """Rules for AdelaiDet's ``ProtoNet`` basis module (and its ``seg_head``)."""
    p = re.escape(src_prefix)
    last = _max_index(state_dict, p + r'tower\.(\d+)\.weight$')
    if last is None:
        raise ConversionError(f'blendmask: no {src_prefix}tower.* keys')
    n = last - 2  # tower: n conv blocks, upsample, conv block, final 1x1 conv
    rules = [(rf'^{p}refine\.(\d+)\.([01])\.', rf'{dst_prefix}level_convs.\1.\2.')]
    for j in range(n):
        rules.append((rf'^{p}tower\.{j}\.([01])\.', rf'{dst_prefix}convs.{j}.\1.'))
    rules += [(rf'^{p}tower\.{n + 1}\.([01])\.', rf'{dst_prefix}post_upsample.\1.'),
              (rf'^{p}tower\.{n + 2}\.(weight|bias)$', rf'{dst_prefix}proto_conv.\1'),
              (rf'^{p}seg_head\.([0-9])\.', rf'{sem_prefix}\1.')]
    return rules


@register_converter('blendmask',
                    signature=[r'^basis_module\.tower\.', r'^top_layer\.weight$',
                               r'^proposal_generator\.fcos_head\.'],
                    source='AdelaiDet BlendMask (detectron2) .pth')
def convert_blendmask(state_dict):
    num_convs, norm = _fcos_layout(state_dict)
    rules = (resnet_rules('detectron2', 'backbone.bottom_up.')
             + fpn_rules('detectron2', 'backbone.', first=3, num_ins=3)
             + fcos_head_rules(FCOS, 'bbox_head.', num_convs, norm)
             + [(r'^top_layer\.(weight|bias)$', r'bbox_head.top_layer.\1')]
             + basis_module_rules(state_dict))
    return fix_fcos_scales(rename_keys(state_dict, rules, method='blendmask'))


def to_detectron2(state_dict):
    """insplug mmdet-layout BlendMask state_dict (the output of :func:`convert_blendmask`) ->
    insplug's detectron2 ``InsplugBlendMask``.

    The backbone, FCOS head and ``top_layer`` get AdelaiDet's names back (detectron2 ResNet
    ``backbone.bottom_up.*``, ``backbone.fpn_{lateral,output}{3,4,5}``,
    ``backbone.top_block.p6/p7``, ``proposal_generator.fcos_head.*``, ``top_layer.*``), so an
    AdelaiDet checkpoint goes through ``convert_blendmask`` and this function into the
    detectron2 model with every tensor unchanged (FCOS ``scales`` back to shape (1,)); the
    basis module is insplug's (``basis_module.bottom_module.*`` = ``ProtoNetEncoder``,
    ``basis_module.semantic_head.*``). ``num_batches_tracked`` of the backbone is dropped
    (detectron2's FrozenBN has none)::

        python tools/convert_checkpoint.py blendmask R_50_1x.pth blendmask_r50_1x_d2.pth \\
            --to detectron2
    """
    from insplug.converters.fcos import (fcos_fpn_to_detectron2_rules,
                                         fcos_head_to_detectron2_rules,
                                         fix_fcos_scales_detectron2)
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    convs = _max_index(state_dict, r'^bbox_head\.cls_convs\.(\d+)\.conv\.weight$')
    norm = 'GN' if any(re.match(r'^bbox_head\.cls_convs\.\d+\.gn\.', k) for k in state_dict) \
        else None
    rules = (mmdet_resnet_to_detectron2_rules() + fcos_fpn_to_detectron2_rules()
             + [(r'^bbox_head\.top_layer\.(weight|bias)$', r'top_layer.\1')]
             + fcos_head_to_detectron2_rules(num_convs=0 if convs is None else convs + 1,
                                             norm=norm)
             + [(r'^mask_head\.bottom_module\.', 'basis_module.bottom_module.'),
                (r'^mask_head\.semantic_head\.', 'basis_module.semantic_head.')])
    return fix_fcos_scales_detectron2(
        rename_keys(state_dict, rules, method='blendmask (to detectron2)'))
