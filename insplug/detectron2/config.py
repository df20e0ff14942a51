"""``add_insplug_config``: insplug's yacs keys, all under ``cfg.MODEL.INSPLUG``.

Only new keys are added (never a stock detectron2 key changed, nor its global default config),
so the call composes with other projects' ``add_*_config`` in any order and may be repeated::

    cfg = get_cfg()
    add_insplug_config(cfg)      # MODEL.INSPLUG.{REFINEMASK, SPARSEINST, PPM, SOLVER}
    add_pointrend_config(cfg)    # e.g. another project's keys
    cfg.merge_from_file('configs/detectron2/refinemask_r50_fpn_1x.yaml')

Each method's default values are read from the framework-free core (the constructor and
function defaults of :mod:`insplug.core`), which the mmdet adapters use too, so both adapters
share one source of truth. The two RefineMask training defaults that the core does not carry
as default arguments (the stage loss weights and the semantic loss weight) are
:data:`REFINEMASK_TRAINING_DEFAULTS`; a test checks them against the mmdet adapter's.
"""
import inspect

from detectron2.config import CfgNode as CN

from insplug.core.layers.pyramid_pooling import PyramidPooling
from insplug.core.refinemask import RefineMaskNet, refine_stage_logits, refinement_losses
from insplug.core.sparseinst.decoder import IAMDecoder
from insplug.core.sparseinst.encoder import InstanceContextEncoder
from insplug.core.sparseinst.inference import postprocess_single
from insplug.core.sparseinst.loss import DEFAULT_WEIGHTS, criterion_losses, prepare_loss_inputs

# RefineMask's official training defaults that insplug.core has no default argument for
# (official release: configs/refinemask/coco/r50-refinemask-1x.py).
REFINEMASK_TRAINING_DEFAULTS = dict(
    stage_instance_loss_weight=(0.25, 0.5, 0.75, 1.0),
    semantic_loss_weight=1.0,
)


def signature_defaults(func):
    """``{argument name: default}`` of a function's or class constructor's arguments."""
    params = inspect.signature(func).parameters
    return {name: p.default for name, p in params.items()
            if p.default is not inspect.Parameter.empty}


def _refinemask_node():
    net = signature_defaults(RefineMaskNet)
    loss = signature_defaults(refinement_losses)
    node = CN()
    # name of the finest feature map feeding the semantic branch (FPN: 'p2', stride 4)
    node.SEMANTIC_IN_FEATURE = 'p2'
    node.NUM_CONVS_INSTANCE = net['num_convs_instance']
    node.CONV_OUT_CHANNELS_INSTANCE = net['conv_out_channels_instance']
    node.NUM_CONVS_SEMANTIC = net['num_convs_semantic']
    node.CONV_OUT_CHANNELS_SEMANTIC = net['conv_out_channels_semantic']
    node.DILATIONS = list(net['dilations'])
    node.STAGE_SUP_SIZE = list(net['stage_sup_size'])
    # one flag per stage: True makes that stage's mask output class-agnostic (official: all False)
    node.STAGE_CLASS_AGNOSTIC = [False] * len(net['stage_sup_size'])
    node.STAGE_INSTANCE_LOSS_WEIGHT = list(
        REFINEMASK_TRAINING_DEFAULTS['stage_instance_loss_weight'])
    node.SEMANTIC_LOSS_WEIGHT = REFINEMASK_TRAINING_DEFAULTS['semantic_loss_weight']
    node.BOUNDARY_WIDTH = loss['boundary_width']
    node.START_STAGE = loss['start_stage']
    node.TEST_START_STAGE = signature_defaults(refine_stage_logits)['first_stage']
    # box-classification loss weight of RefineMaskROIHeads' box predictor (stock detectron2
    # weights it 1.0; the official RefineMask config doubles it, together with
    # MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 2.0, see configs/detectron2/*.yaml)
    node.BOX_CLS_LOSS_WEIGHT = 1.0
    return node


def _sparseinst_node():
    encoder = signature_defaults(InstanceContextEncoder)
    decoder = signature_defaults(IAMDecoder)
    match = signature_defaults(prepare_loss_inputs)
    focal = signature_defaults(criterion_losses)
    test = signature_defaults(postprocess_single)
    node = CN()
    node.IN_FEATURES = ['res3', 'res4', 'res5']
    node.ENCODER = CN()
    node.ENCODER.NUM_CHANNELS = encoder['out_channels']
    node.ENCODER.POOL_SIZES = list(encoder['pool_sizes'])
    node.DECODER = CN()
    node.DECODER.NUM_CLASSES = decoder['num_classes']
    node.DECODER.NUM_MASKS = decoder['num_masks']
    node.DECODER.IAM_TYPE = decoder['iam_type']  # 'base' | 'group' (G-IAM) | 'group_softmax'
    node.DECODER.GROUPS = 4  # used by the group variants; 'base' uses 1 group
    node.DECODER.INST = CN()
    node.DECODER.INST.DIM = decoder['inst_dim']
    node.DECODER.INST.CONVS = decoder['inst_convs']
    node.DECODER.MASK = CN()
    node.DECODER.MASK.DIM = decoder['mask_dim']
    node.DECODER.MASK.CONVS = decoder['mask_convs']
    node.DECODER.KERNEL_DIM = decoder['kernel_dim']
    node.DECODER.SCALE_FACTOR = float(decoder['scale_factor'])
    node.LOSS = CN()
    node.LOSS.CLASS_WEIGHT = DEFAULT_WEIGHTS['cls']
    node.LOSS.MASK_PIXEL_WEIGHT = DEFAULT_WEIGHTS['mask']
    node.LOSS.MASK_DICE_WEIGHT = DEFAULT_WEIGHTS['dice']
    node.LOSS.OBJECTNESS_WEIGHT = DEFAULT_WEIGHTS['obj']
    node.LOSS.FOCAL_ALPHA = focal['focal_alpha']
    node.LOSS.FOCAL_GAMMA = focal['focal_gamma']
    node.MATCHER = CN()
    node.MATCHER.ALPHA = match['alpha']
    # beta defaults to 1 - alpha (rounded so that 0.8 gives 0.2 exactly)
    node.MATCHER.BETA = (round(1.0 - match['alpha'], 12) if match['beta'] is None
                         else match['beta'])
    node.CLS_THRESHOLD = test['cls_threshold']
    node.MASK_THRESHOLD = test['mask_threshold']
    node.MAX_DETECTIONS = test['max_per_img']
    return node


def _ppm_node():
    ppm = signature_defaults(PyramidPooling)
    node = CN()
    # the registered backbone that build_ppm_backbone wraps, and the outputs it pools
    node.BACKBONE_NAME = 'build_resnet_backbone'
    node.IN_FEATURES = ['res5']
    node.CHANNELS = 0  # channels of each pooled branch; 0: in_channels // 4
    node.OUT_CHANNELS = 0  # 0: keep each pooled map's channels
    node.POOL_SIZES = list(ppm['pool_sizes'])
    node.NORM = ''  # detectron2 norm name ('BN', 'GN', 'SyncBN', ...); '' = biased convs
    node.BOTTLENECK_KERNEL = ppm['bottleneck_kernel']
    return node


def _solver_node():
    node = CN()
    # 'SGD' (detectron2's default builder) or 'ADAMW' (SparseInst); used by tools/d2_train_net.py
    node.OPTIMIZER = 'SGD'
    node.AMSGRAD = False
    return node


# ``MODEL.INSPLUG.<NAME>`` -> function returning that node's defaults. The four below are
# defined here; each further method's adapter module adds its own with
# :func:`register_config_node` (e.g. ``insplug/detectron2/blendmask.py``), so a method's yacs
# keys live next to the code that reads them.
_CONFIG_NODES = {
    'REFINEMASK': _refinemask_node,
    'SPARSEINST': _sparseinst_node,
    'PPM': _ppm_node,
    'SOLVER': _solver_node,
}


def register_config_node(name):
    """Decorator: ``@register_config_node('BLENDMASK')`` on a function returning a ``CfgNode``
    adds it as ``cfg.MODEL.INSPLUG.BLENDMASK``. A name may be registered once."""
    def wrap(builder):
        if name in _CONFIG_NODES and _CONFIG_NODES[name] is not builder:
            raise KeyError(f'MODEL.INSPLUG.{name} is already defined by '
                           f'{_CONFIG_NODES[name].__module__}')
        _CONFIG_NODES[name] = builder
        return builder
    return wrap


def insplug_config_node():
    """A fresh ``CfgNode`` holding every insplug key with its default (``MODEL.INSPLUG``)."""
    node = CN()
    for name, builder in _CONFIG_NODES.items():
        node[name] = builder()
    return node


def _add_missing(target, defaults):
    """Copy the keys of ``defaults`` that ``target`` lacks (recursively); keep existing ones."""
    for key, value in defaults.items():
        if key not in target:
            target[key] = value
        elif isinstance(value, CN) and isinstance(target[key], CN):
            _add_missing(target[key], value)


def add_insplug_config(cfg):
    """Add insplug's keys under ``cfg.MODEL.INSPLUG``; nothing else of ``cfg`` is touched.

    Idempotent: keys already present (from an earlier call or a merged file) keep their values.
    Call it before ``cfg.merge_from_file`` of an insplug config.
    """
    if 'MODEL' not in cfg:
        raise KeyError('add_insplug_config needs a detectron2 config with a MODEL node: pass '
                       'detectron2.config.get_cfg()')
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    if 'INSPLUG' not in cfg.MODEL:
        cfg.MODEL.INSPLUG = CN()
    _add_missing(cfg.MODEL.INSPLUG, insplug_config_node())
    if was_frozen:
        cfg.freeze()
    return cfg
