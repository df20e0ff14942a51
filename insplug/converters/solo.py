"""SOLO, Decoupled SOLO and SOLOv2 (WXinlong/SOLO, mmdet 1.x) checkpoints -> insplug's mmdet 3
layout (mmdet's ``SOLO`` / ``SOLOv2`` detectors, ``configs/solo*/``).

The released files (``SOLO_R50_1x.pth``, ``DECOUPLED_SOLO_R50_3x.pth``, ``SOLOv2_R50_3x.pth``,
... in the SOLO README) hold ``backbone.*`` and ``neck.*`` in mmdet's ResNet / FPN names (kept)
and the head as ``bbox_head.*`` (+ ``mask_feat_head.*`` for SOLOv2):

* SOLO: ``ins_convs`` -> ``mask_head.mask_convs``, ``cate_convs`` -> ``mask_head.cls_convs``,
  ``solo_ins_list`` -> ``mask_head.conv_mask_list``, ``solo_cate`` -> ``mask_head.conv_cls``;
* Decoupled SOLO: ``ins_convs_x/_y`` -> ``mask_convs_x/_y``, ``dsolo_ins_list_x/_y`` ->
  ``conv_mask_list_x/_y``, ``dsolo_cate`` -> ``conv_cls``;
* SOLOv2: ``kernel_convs`` (kept), ``cate_convs`` -> ``cls_convs``, ``solo_kernel`` ->
  ``conv_kernel``, ``solo_cate`` -> ``conv_cls``; ``mask_feat_head.convs_all_levels.*`` ->
  ``mask_head.mask_feature_head.convs_all_levels.*``, ``mask_feat_head.conv_pred.0.*`` ->
  ``mask_head.mask_feature_head.conv_pred.*``.

The category conv has ``num_classes - 1`` = 80 outputs in mmdet 1.x (labels 1..80, 0 the
background), channel c being label c + 1: the same tensor as mmdet 3's 80 classes 0..79.
(AdelaiDet's detectron2 SOLOv2: the ``solov2`` converter.)
"""
from insplug.converters import register_converter
from insplug.converters.common import rename_keys

H = r'^bbox_head\.'
RULES = [
    (r'^(backbone|neck)\.(.*)$', r'\1.\2'),
    (H + r'ins_convs\.(.*)$', r'mask_head.mask_convs.\1'),
    (H + r'ins_convs_([xy])\.(.*)$', r'mask_head.mask_convs_\1.\2'),
    (H + r'cate_convs\.(.*)$', r'mask_head.cls_convs.\1'),
    (H + r'kernel_convs\.(.*)$', r'mask_head.kernel_convs.\1'),
    (H + r'solo_ins_list\.(.*)$', r'mask_head.conv_mask_list.\1'),
    (H + r'dsolo_ins_list_([xy])\.(.*)$', r'mask_head.conv_mask_list_\1.\2'),
    (H + r'd?solo_cate\.(weight|bias)$', r'mask_head.conv_cls.\1'),
    (H + r'solo_kernel\.(weight|bias)$', r'mask_head.conv_kernel.\1'),
    (r'^mask_feat_head\.conv_pred\.0\.(.*)$', r'mask_head.mask_feature_head.conv_pred.\1'),
    (r'^mask_feat_head\.(convs_all_levels\..*)$', r'mask_head.mask_feature_head.\1'),
]


@register_converter(
    'solo',
    signature=[r'^bbox_head\.cate_convs\.0\.conv\.weight$'],
    source='WXinlong/SOLO (mmdet 1.x) SOLO / Decoupled SOLO / SOLOv2 .pth')
def convert_solo(state_dict):
    """Official WXinlong/SOLO ``{key: Tensor}`` -> mmdet 3 ``SOLO`` / ``SOLOv2`` layout."""
    return rename_keys(state_dict, RULES, method='solo')
