"""D2Det (JialeCao001/D2Det, mmdet 1.1) checkpoints -> insplug (mmdet 3.x layout).

The released models (``D2Det-instance-res101.pth`` and the detection models of the release's
README) are mmdet 1.1 ``D2Det`` detectors: ResNet + FPN + RPN, a ``SharedFCBBoxHead`` without
regression (``with_reg=False``) on ``DeformRoIPoolingPack`` features, and ``D2DetHead`` on 14 x 14
RoIAlign features. insplug's model is a ``MaskRCNN`` (instance) / ``FasterRCNN`` (detection) whose
``roi_head`` is a :class:`insplug.mmdet.d2det.D2DetRoIHead`:

* ``backbone.*``, ``neck.*``, ``rpn_head.rpn_{conv,cls,reg}.*``: same names;
* ``bbox_head.shared_fcs.{i}`` -> ``roi_head.bbox_head.shared_fcs.{i}``;
  ``bbox_head.fc_cls`` -> ``roi_head.bbox_head.fc_cls`` with the background row moved from index
  0 (mmdet 1.x) to the end (mmdet 3.x);
* ``bbox_roi_extractor.roi_layers.{l}.offset_fc.*`` -> ``roi_head.bbox_roi_extractor.roi_layers.
  {l}.offset_fc.*``; ``...awp.weight.conv`` -> ``...weight_conv``; ``...awp.weight.bn`` ->
  ``...weight_norm`` (one discriminative pooling per FPN level, as in the release);
* ``D2Det_head.*`` -> ``roi_head.d2det_head.*``: ``convs.{i}.conv/gn`` kept, ``D2Det_reg`` ->
  ``reg_conv``, ``D2Det_mask`` -> ``overlap_conv``, ``norm1`` -> ``deconv_norm``,
  ``D2Det_instance`` -> ``mask_logits`` and ``fc_instance_iou`` -> ``iou_fc`` without their
  background channel 0 (never read by the release: it indexes them with ``label + 1``),
  ``fcs.{i}`` -> ``iou_fcs.{i}``, ``deconv1`` / ``deconv2`` kept.

Check against the full config (every model tensor filled, shapes equal)::

    python tools/convert_checkpoint.py d2det D2Det-instance-res101.pth d2det_r101.pth \
        --config configs/d2det/d2det_instance_r101_fpn_2x_coco.py
"""
import torch

from insplug.converters import register_converter
from insplug.converters.common import rename_keys

ROI = r'^bbox_roi_extractor\.roi_layers\.(\d+)\.'
HEAD = r'^D2Det_head\.'
DST_ROI = r'roi_head.bbox_roi_extractor.roi_layers.\1.'
DST_HEAD = 'roi_head.d2det_head.'

RULES = [
    (r'^(backbone\.(conv1|bn1|layer[1-4])\..*)$', r'\1'),
    (r'^(neck\.(lateral_convs|fpn_convs)\.\d+\.conv\.(weight|bias))$', r'\1'),
    (r'^(rpn_head\.(rpn_conv|rpn_cls|rpn_reg)\.(weight|bias))$', r'\1'),
    (r'^bbox_head\.(shared_fcs\.\d+|fc_cls)\.', r'roi_head.bbox_head.\1.'),
    (ROI + r'offset_fc\.', DST_ROI + 'offset_fc.'),
    (ROI + r'awp\.weight\.conv\.', DST_ROI + 'weight_conv.'),
    (ROI + r'awp\.weight\.bn\.', DST_ROI + 'weight_norm.'),
    (HEAD + r'convs\.(\d+)\.(conv|gn)\.', DST_HEAD + r'convs.\1.\2.'),
    (HEAD + r'D2Det_reg\.', DST_HEAD + 'reg_conv.'),
    (HEAD + r'D2Det_mask\.', DST_HEAD + 'overlap_conv.'),
    (HEAD + r'(deconv1|deconv2)\.', DST_HEAD + r'\1.'),
    (HEAD + r'norm1\.', DST_HEAD + 'deconv_norm.'),
    (HEAD + r'D2Det_instance\.', DST_HEAD + 'mask_logits.'),
    (HEAD + r'fcs\.(\d+)\.', DST_HEAD + r'iou_fcs.\1.'),
    (HEAD + r'fc_instance_iou\.', DST_HEAD + 'iou_fc.'),
]

# tensors whose dim 0 is (background + K classes) in the release
BACKGROUND_FIRST = ('roi_head.bbox_head.fc_cls.', )
BACKGROUND_DROPPED = (DST_HEAD + 'mask_logits.', DST_HEAD + 'iou_fc.')


@register_converter(
    'd2det',
    signature=[r'^bbox_roi_extractor\.roi_layers\.\d+\.awp\.weight\.conv\.weight$',
               r'^D2Det_head\.D2Det_reg\.weight$'],
    source='D2Det (JialeCao001/D2Det, mmdet 1.1) .pth')
def convert_d2det(state_dict):
    """Official mmdet 1.1 ``{key: Tensor}`` -> insplug mmdet (``D2DetRoIHead``) layout."""
    out = rename_keys(state_dict, RULES, method='d2det')
    for key, value in list(out.items()):
        if key.startswith(BACKGROUND_FIRST):
            out[key] = torch.cat([value[1:], value[:1]], 0)
        elif key.startswith(BACKGROUND_DROPPED):
            out[key] = value[1:]
    return out


# ----------------------------------------------------------------------------- detectron2
def _d2_rules():
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    rules = mmdet_resnet_to_detectron2_rules()
    for i in range(4):
        rules += [(rf'^neck\.lateral_convs\.{i}\.conv\.', f'backbone.fpn_lateral{i + 2}.'),
                  (rf'^neck\.fpn_convs\.{i}\.conv\.', f'backbone.fpn_output{i + 2}.')]
    return rules + [
        (r'^rpn_head\.rpn_conv\.', 'proposal_generator.rpn_head.conv.'),
        (r'^rpn_head\.rpn_cls\.', 'proposal_generator.rpn_head.objectness_logits.'),
        (r'^rpn_head\.rpn_reg\.', 'proposal_generator.rpn_head.anchor_deltas.'),
        (r'^roi_head\.bbox_roi_extractor\.roi_layers\.', 'roi_heads.box_pools.'),
        (r'^roi_head\.bbox_head\.(shared_fcs\.\d+|fc_cls)\.', r'roi_heads.box_head.\1.'),
        (r'^roi_head\.bbox_head\.fc_reg\.', None),  # with_reg=False: never built
        # the mmdet and detectron2 adapters hold the same D2DetHeadNet
        (r'^roi_head\.d2det_head\.', 'roi_heads.d2det_head.'),
    ]


def to_detectron2(state_dict):
    """insplug mmdet-layout D2Det state_dict (the output of :func:`convert_d2det`) -> the layout
    of insplug's detectron2 adapter (``GeneralizedRCNN`` + ``D2DetROIHeads``). The tensors are
    unchanged; the detectron2 config must use the same trunk (``RESNETS.STRIDE_IN_1X1: False``,
    RGB input with the torchvision mean / std for the released torchvision-style ResNets)."""
    return rename_keys(state_dict, _d2_rules(), method='d2det (to detectron2)')
