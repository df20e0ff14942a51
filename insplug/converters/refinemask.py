"""RefineMask (zhanggang001/RefineMask, mmdet 2.3) checkpoints -> insplug, and -> detectron2.

The released checkpoints (e.g. ``r50-refinemask-1x.pth``) are mmdet 2.x ``{'meta', 'state_dict',
'optimizer'}`` files of a ``MaskRCNN`` with ``RefineRoIHead``/``RefineMaskHead``. mmdet 2.3 and
mmdet 3.x name the ResNet, FPN, RPN head and ``Shared2FCBBoxHead`` identically (background is the
last class in both), so those keys are kept; only the mask head is renamed to insplug's
:class:`insplug.core.refinemask.RefineMaskNet` layout (the weights are the same tensors, 1:1):

* ``instance_convs.{i}.conv.*`` -> ``instance_convs.{i}.*``;
* ``semantic_convs.{i}.conv.*`` -> ``semantic.convs.{i}.*``; ``semantic_logits`` ->
  ``semantic.logits``;
* ``stages.{k}.instance_logits`` -> ``stages.{k}.mask_logits``;
* ``stages.{k}.semantic_transform_in/out`` -> ``stages.{k}.semantic_in/out``;
* ``stages.{k}.fuse_conv.0`` -> ``stages.{k}.reduce``;
* ``stages.{k}.fuse_conv.1.dilation_conv_{j}.conv`` -> ``stages.{k}.fusion.branches.{j-1}``;
* ``stages.{k}.fuse_conv.1.merge_conv.conv`` -> ``stages.{k}.fusion.merge``;
* ``stages.{k}.fuse_transform_out`` -> ``stages.{k}.expand``;
* ``final_instance_logits`` -> ``final_logits``

(all under ``roi_head.mask_head.``).

Check against the R50 config (every model tensor filled, shapes equal)::

    python tools/convert_checkpoint.py refinemask r50-refinemask-1x.pth refinemask_r50_insplug.pth \
        --config configs/refinemask_r50.py

:func:`to_detectron2` maps the converted (mmdet-layout) state_dict to the layout of insplug's
detectron2 adapter (``GeneralizedRCNN`` + ``RefineMaskROIHeads``), so that the same weights load
into ``insplug.detectron2``; :mod:`insplug.converters.to_detectron2` writes such
checkpoints and reads converted files for detectron2.
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import ConversionError, rename_keys
from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules

HEAD = r'^roi_head\.mask_head\.'
DST = 'roi_head.mask_head.'

MASK_HEAD_RULES = [
    (HEAD + r'instance_convs\.(\d+)\.conv\.', DST + r'instance_convs.\1.'),
    (HEAD + r'semantic_convs\.(\d+)\.conv\.', DST + r'semantic.convs.\1.'),
    (HEAD + r'semantic_logits\.', DST + 'semantic.logits.'),
    (HEAD + r'stages\.(\d+)\.instance_logits\.', DST + r'stages.\1.mask_logits.'),
    (HEAD + r'stages\.(\d+)\.semantic_transform_in\.', DST + r'stages.\1.semantic_in.'),
    (HEAD + r'stages\.(\d+)\.semantic_transform_out\.', DST + r'stages.\1.semantic_out.'),
    (HEAD + r'stages\.(\d+)\.fuse_conv\.0\.', DST + r'stages.\1.reduce.'),
    (HEAD + r'stages\.(\d+)\.fuse_conv\.1\.merge_conv\.conv\.', DST + r'stages.\1.fusion.merge.'),
    (HEAD + r'stages\.(\d+)\.fuse_transform_out\.', DST + r'stages.\1.expand.'),
    (HEAD + r'final_instance_logits\.', DST + 'final_logits.'),
]
# dilation_conv_{j} (1-based) -> branches.{j-1}: done by a function (regex cannot subtract)
_DILATION = re.compile(HEAD + r'stages\.(\d+)\.fuse_conv\.1\.dilation_conv_(\d+)\.conv\.(.*)$')

TRUNK_RULES = [
    (r'^(backbone\.(conv1|bn1|layer[1-4])\..*)$', r'\1'),
    (r'^(neck\.(lateral_convs|fpn_convs)\.\d+\.conv\.(weight|bias))$', r'\1'),
    (r'^(rpn_head\.(rpn_conv|rpn_cls|rpn_reg)\.(weight|bias))$', r'\1'),
    (r'^(roi_head\.bbox_head\.(shared_fcs\.\d+|fc_cls|fc_reg)\.(weight|bias))$', r'\1'),
]


def _rename_dilation(key):
    match = _DILATION.match(key)
    if not match:
        return key
    stage, branch, rest = match.groups()
    return f'{DST}stages.{stage}.fusion.branches.{int(branch) - 1}.{rest}'


@register_converter(
    'refinemask',
    signature=[r'^roi_head\.mask_head\.stages\.\d+\.fuse_conv\.1\.dilation_conv_1\.conv\.weight$',
               r'^roi_head\.mask_head\.semantic_logits\.weight$'],
    source='RefineMask (zhanggang001, mmdet 2.3) .pth')
def convert_refinemask(state_dict):
    """Official mmdet 2.3 ``{key: Tensor}`` -> insplug mmdet (``MaskRCNN`` + ``RefineRoIHead``)."""
    out = {}
    rest = {}
    for key, value in state_dict.items():
        new = _rename_dilation(key)
        if new != key:
            out[new] = value
        else:
            rest[key] = value
    renamed = rename_keys(rest, MASK_HEAD_RULES + TRUNK_RULES, method='refinemask')
    clash = set(out) & set(renamed)
    if clash:
        raise ConversionError(f'refinemask: keys mapped twice: {sorted(clash)[:5]}')
    out.update(renamed)
    return out


# ----------------------------------------------------------------------------- detectron2
D2_RULES = mmdet_resnet_to_detectron2_rules() + [
    (r'^neck\.lateral_convs\.0\.conv\.', 'backbone.fpn_lateral2.'),
    (r'^neck\.lateral_convs\.1\.conv\.', 'backbone.fpn_lateral3.'),
    (r'^neck\.lateral_convs\.2\.conv\.', 'backbone.fpn_lateral4.'),
    (r'^neck\.lateral_convs\.3\.conv\.', 'backbone.fpn_lateral5.'),
    (r'^neck\.fpn_convs\.0\.conv\.', 'backbone.fpn_output2.'),
    (r'^neck\.fpn_convs\.1\.conv\.', 'backbone.fpn_output3.'),
    (r'^neck\.fpn_convs\.2\.conv\.', 'backbone.fpn_output4.'),
    (r'^neck\.fpn_convs\.3\.conv\.', 'backbone.fpn_output5.'),
    (r'^rpn_head\.rpn_conv\.', 'proposal_generator.rpn_head.conv.'),
    (r'^rpn_head\.rpn_cls\.', 'proposal_generator.rpn_head.objectness_logits.'),
    (r'^rpn_head\.rpn_reg\.', 'proposal_generator.rpn_head.anchor_deltas.'),
    (r'^roi_head\.bbox_head\.shared_fcs\.0\.', 'roi_heads.box_head.fc1.'),
    (r'^roi_head\.bbox_head\.shared_fcs\.1\.', 'roi_heads.box_head.fc2.'),
    (r'^roi_head\.bbox_head\.fc_cls\.', 'roi_heads.box_predictor.cls_score.'),
    (r'^roi_head\.bbox_head\.fc_reg\.', 'roi_heads.box_predictor.bbox_pred.'),
    # insplug's mmdet and detectron2 mask heads are the same RefineMaskNet module
    (r'^roi_head\.mask_head\.', 'roi_heads.mask_head.'),
]


def to_detectron2(state_dict):
    """insplug mmdet-layout RefineMask state_dict (the output of :func:`convert_refinemask`) ->
    insplug's detectron2 layout (``GeneralizedRCNN`` with a ResNet-FPN backbone, stock RPN,
    ``FastRCNNConvFCHead`` (2 fc) box head and ``RefineMaskROIHeads``/``RefineMaskHead``).

    The tensors are unchanged: detectron2's anchors (one size, ratios 0.5/1/2 per level) are
    ordered as mmdet's, box-regression weights (10, 10, 5, 5) equal mmdet's target stds
    (0.1, 0.1, 0.2, 0.2), and both put the background class last. The detectron2 config must
    use the same trunk (``RESNETS.STRIDE_IN_1X1: False`` for these torchvision-style ResNets,
    RGB input with the torchvision mean/std, ``ROIAlignV2``).
    """
    return rename_keys(state_dict, D2_RULES, method='refinemask (to detectron2)')
