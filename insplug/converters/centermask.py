"""CenterMask (youngwanLEE/centermask2, detectron2) checkpoints -> insplug.

Released models (``centermask2-V-39-eSE-FPN-ms-3x.pth``, ``centermask2-R-50-FPN-ms-3x.pth``, ...)
are detectron2 checkpoints ``{'model': {key: Tensor}, ...}``. Official layout -> insplug's
``CenterMask`` detector (``configs/centermask/centermask_v39_3x.py``, ``centermask_r50_3x.py``):

* VoVNet trunk ``backbone.bottom_up.stem.stem_{1,2,3}/{conv,norm}`` ->
  ``backbone.body.stem.{0,1,2}.{0,1}``; ``backbone.bottom_up.stage{n}.OSA{n}_{b}`` ->
  ``backbone.body.stages.{n-2}.{b-1 for stage 2, b otherwise}`` (stages 3-5 start with a
  parameter-free max-pool), with ``layers.{l}.OSA{n}_{b}_{l}/{conv,norm}`` ->
  ``layers.{l}.{0,1}``, ``concat.OSA{n}_{b}_concat/{conv,norm}`` -> ``concat.{0,1}`` and
  ``ese.fc`` -> ``ese_fc``. FrozenBN has no ``num_batches_tracked`` (optional in insplug).
* ResNet trunk ``backbone.bottom_up.stem/res2..res5`` -> mmdet ``ResNet`` (common rules).
* FPN ``backbone.fpn_lateral{3,4,5}/fpn_output{3,4,5}/top_block.p6/p7`` -> mmdet ``FPN``.
* FCOS ``proposal_generator.fcos_head.{cls,bbox}_tower.{j}`` (conv, GN, ReLU per layer, or conv,
  ReLU without norm) -> ``bbox_head.{cls,reg}_convs.{i}.{conv,gn}``; ``cls_logits``,
  ``bbox_pred``, ``ctrness``, ``scales.{i}.scale`` -> ``conv_cls``, ``conv_reg``,
  ``conv_centerness``, ``scales.{i}.scale`` (``FaithfulFCOSHead``: tower convs with bias;
  the (1,) Scale tensors become mmcv's 0-d ones).
* ``pixel_mean`` / ``pixel_std`` (older detectron2 checkpoints) are dropped: the configs'
  ``data_preprocessor`` holds the same values.
* ``roi_heads.mask_head.mask_fcn{k}/spatialAtt.conv/deconv/predictor`` ->
  ``roi_head.mask_head.convs.{k-1}/attention_conv/deconv/predictor``;
  ``roi_heads.maskiou_head.maskiou_fcn{k}/maskiou_fc1/maskiou_fc2/maskiou`` ->
  ``roi_head.maskiou_head.convs.{k-1}/fc1/fc2/fc_iou``.

A second converter, ``vovnet_imagenet``, maps the VoVNet ImageNet weights of the centermask2
README (``vovnet39_ese_detectron2.pth``, trunk keys without prefix) to ``backbone.body.*``, for
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``::

    python tools/convert_checkpoint.py centermask centermask2-V-39-eSE-FPN-ms-3x.pth \\
        centermask_v39_3x_insplug.pth --config configs/centermask/centermask_v39_3x.py
    python tools/convert_checkpoint.py vovnet_imagenet vovnet39_ese_detectron2.pth \\
        checkpoints/vovnet39_ese_insplug.pth
"""
import re

from insplug.converters import register_converter
from insplug.converters.common import ConversionError, fpn_rules, rename_keys, resnet_rules
from insplug.converters.fcos import fcos_head_rules, fix_fcos_scales
from insplug.converters.vovnet_imagenet import convert_vovnet_imagenet  # noqa: F401 (moved)

def _vovnet_key(key, src_prefix, dst_prefix):
    """One VoVNet trunk key, or None when ``key`` is not a VoVNet trunk key."""
    p = re.escape(src_prefix)
    m = re.match(rf'^{p}stem\.stem_([123])/(conv|norm)\.(.+)$', key)
    if m:
        return f'{dst_prefix}stem.{int(m.group(1)) - 1}.{0 if m.group(2) == "conv" else 1}.' \
               f'{m.group(3)}'
    m = re.match(rf'^{p}stage([2-5])\.OSA\1_(\d+)\.(.+)$', key)
    if not m:
        return None
    n, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    module = f'{dst_prefix}stages.{n - 2}.{b - 1 if n == 2 else b}'
    tag = rf'OSA{n}_{b}'
    sub = re.match(rf'^layers\.(\d+)\.{tag}_\1/(conv|norm)\.(.+)$', rest)
    if sub:
        return f'{module}.layers.{sub.group(1)}.{0 if sub.group(2) == "conv" else 1}.' \
               f'{sub.group(3)}'
    sub = re.match(rf'^concat\.{tag}_concat/(conv|norm)\.(.+)$', rest)
    if sub:
        return f'{module}.concat.{0 if sub.group(1) == "conv" else 1}.{sub.group(2)}'
    sub = re.match(r'^ese\.fc\.(weight|bias)$', rest)
    if sub:
        return f'{module}.ese_fc.{sub.group(1)}'
    return None  # e.g. depthwise / DCN variants, which insplug's VoVNetV2 does not build


def _fcos_rules(state_dict, src='proposal_generator.fcos_head.'):
    """Shared FCOS rules (:mod:`insplug.converters.fcos`) with the tower depth and norm read
    from the checkpoint (4 GN convs; 2 in CenterMask-Lite)."""
    p = re.escape(src)
    idx = {int(m.group(1)) for k in state_dict for m in [re.match(rf'^{p}cls_tower\.(\d+)\.', k)]
           if m}
    norm = 'GN' if any(re.match(rf'^{p}cls_tower\.1\.weight$', k) for k in state_dict) else None
    step = 3 if norm else 2
    num_convs = max(idx) // step + 1 if idx else 0
    return fcos_head_rules(src, 'bbox_head.', num_convs=num_convs, norm=norm, src='centermask2')


ROI_RULES = [
    (r'^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$',
     lambda m: f'roi_head.mask_head.convs.{int(m.group(1)) - 1}.{m.group(2)}'),
    (r'^roi_heads\.mask_head\.spatialAtt\.conv\.weight$',
     'roi_head.mask_head.attention_conv.weight'),
    (r'^roi_heads\.mask_head\.(deconv|predictor)\.(weight|bias)$', r'roi_head.mask_head.\1.\2'),
    (r'^roi_heads\.maskiou_head\.maskiou_fcn(\d+)\.(weight|bias)$',
     lambda m: f'roi_head.maskiou_head.convs.{int(m.group(1)) - 1}.{m.group(2)}'),
    (r'^roi_heads\.maskiou_head\.maskiou_fc([12])\.(weight|bias)$',
     r'roi_head.maskiou_head.fc\1.\2'),
    (r'^roi_heads\.maskiou_head\.maskiou\.(weight|bias)$', r'roi_head.maskiou_head.fc_iou.\1'),
]


def _apply_callable_rules(state_dict, rules):
    """Rename keys matched by rules whose replacement is a callable (re.sub can't shift
    indices); returns (renamed, remaining)."""
    done, rest = {}, {}
    for k, v in state_dict.items():
        for pattern, repl in rules:
            m = re.match(pattern, k)
            if m and callable(repl):
                done[repl(m)] = v
                break
        else:
            rest[k] = v
    return done, rest


@register_converter(
    'centermask',
    signature=[r'^proposal_generator\.fcos_head\.', r'^roi_heads\.mask_head\.spatialAtt\.'],
    source='CenterMask2 (detectron2) .pth, VoVNet or ResNet trunk')
def convert_centermask(state_dict):
    """centermask2 ``{key: Tensor}`` -> insplug ``CenterMask`` layout (VoVNet or ResNet)."""
    out, rest = {}, {}
    for k, v in state_dict.items():
        new = _vovnet_key(k, 'backbone.bottom_up.', 'backbone.body.')
        if new is not None:
            out[new] = v
        else:
            rest[k] = v
    has_vovnet = bool(out)
    if has_vovnet and any(k.startswith('backbone.bottom_up.') for k in rest):
        bad = [k for k in rest if k.startswith('backbone.bottom_up.')]
        raise ConversionError(f'centermask: VoVNet trunk keys insplug\'s VoVNetV2 does not have '
                              f'(depthwise or DCN variant?): {", ".join(bad[:5])}')
    done, rest = _apply_callable_rules(rest, ROI_RULES)
    out.update(done)
    rules = [] if has_vovnet else resnet_rules('detectron2', 'backbone.bottom_up.')
    rules += fpn_rules('detectron2', 'backbone.', first=3, num_ins=3)
    rules += _fcos_rules(rest)
    rules += [(p, r) for p, r in ROI_RULES if not callable(r)]
    # detectron2 < 0.4 saved the normalisation buffers; insplug's data_preprocessor has them
    rules.append((r'^pixel_(mean|std)$', None))
    out.update(rename_keys(rest, rules, method='centermask'))
    fix_fcos_scales(out)  # (1,) Scale tensors -> mmcv's 0-d ones
    return out


# ----------------------------------------------------------------------------- detectron2
def _d2_fpn_rules(state_dict, first=3):
    """mmdet ``FPN`` (laterals from P``first``, extra convs on the output) -> detectron2 ``FPN``
    (``fpn_lateral{l}``, ``fpn_output{l}``) with P6/P7 as ``top_block.p6`` / ``p7``."""
    lat = {int(m.group(1)) for k in state_dict
           for m in [re.match(r'^neck\.lateral_convs\.(\d+)\.conv\.weight$', k)] if m}
    n = max(lat) + 1 if lat else 0
    return [(r'^neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$',
             lambda m: f'backbone.fpn_lateral{int(m.group(1)) + first}.{m.group(2)}'),
            (r'^neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)$',
             lambda m: (f'backbone.fpn_output{int(m.group(1)) + first}.{m.group(2)}'
                        if int(m.group(1)) < n else
                        f'backbone.top_block.p{int(m.group(1)) + first}.{m.group(2)}'))]


def to_detectron2(state_dict):
    """insplug mmdet-layout CenterMask state_dict (the output of :func:`convert_centermask`) ->
    insplug's detectron2 layout: ``GeneralizedRCNN`` with ``build_insplug_fcos_vovnet_fpn_backbone``
    (``backbone.bottom_up.body.*``) or ``build_insplug_fcos_resnet_fpn_backbone`` (detectron2
    ResNet names), detectron2 ``FPN`` (``fpn_lateral3..``, ``top_block.p6/p7``),
    ``InsplugFCOS`` (``proposal_generator.fcos_head.*``, AdelaiDet / centermask2 names) and
    ``InsplugCenterROIHeads`` (``roi_heads.mask_head.*``, ``roi_heads.maskiou_head.*``: the same
    core modules as the mmdet adapter). Tensors are unchanged except the FCOS ``Scale``
    parameters, () -> (1,).

    A released centermask2 checkpoint goes to the detectron2 adapter with
    ``to_detectron2(convert_centermask(official))`` (:func:`official_to_detectron2`).
    """
    from insplug.converters.fcos import (fcos_head_to_detectron2_rules,
                                         fix_fcos_scales_detectron2)
    from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules
    from insplug.converters.vovnet_imagenet import D2_RULES as VOVNET_D2_RULES
    idx = {int(m.group(1)) for k in state_dict
           for m in [re.match(r'^bbox_head\.cls_convs\.(\d+)\.conv\.weight$', k)] if m}
    norm = 'GN' if any(re.match(r'^bbox_head\.cls_convs\.\d+\.gn\.', k) for k in state_dict) \
        else None
    rules = (VOVNET_D2_RULES + mmdet_resnet_to_detectron2_rules() + _d2_fpn_rules(state_dict)
             + fcos_head_to_detectron2_rules('bbox_head.', 'proposal_generator.fcos_head.',
                                             num_convs=max(idx) + 1 if idx else 0, norm=norm)
             + [(r'^roi_head\.(mask_head|maskiou_head)\.', r'roi_heads.\1.')])
    out = rename_keys(state_dict, rules, method='centermask (to detectron2)')
    return fix_fcos_scales_detectron2(out)


def official_to_detectron2(state_dict):
    """centermask2 ``{key: Tensor}`` -> insplug's detectron2 CenterMask layout."""
    return to_detectron2(convert_centermask(state_dict))
