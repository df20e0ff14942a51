"""``add_insplug_config``, the registrations, and the yacs / LazyConfig files' hyper-parameters.

* the call adds keys under ``cfg.MODEL.INSPLUG`` only, leaves detectron2's global defaults
  alone, is idempotent and composes with another project's ``add_*_config`` in any order;
* its defaults are the official values (written out here from the papers / official configs);
* the detectron2 configs carry the same RefineMask / SparseInst values as insplug's mmdet
  configs (one source of truth), checked key by key;
* the components are in detectron2's own registries, and no registry is re-created.
"""
import inspect
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS, REPO  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

from detectron2.config import CfgNode, LazyConfig, get_cfg  # noqa: E402

import insplug.detectron2 as d2ad  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.train_net import setup_cfg  # noqa: E402


def without_insplug(cfg):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.pop('INSPLUG', None)
    return cfg.dump()


def test_adds_only_model_insplug_and_keeps_global_defaults():
    from detectron2.config import defaults
    before = get_cfg().dump()
    cfg = get_cfg()
    add_insplug_config(cfg)
    assert 'INSPLUG' in cfg.MODEL
    assert without_insplug(cfg) == before
    assert 'INSPLUG' not in defaults._C.MODEL
    assert 'INSPLUG' not in get_cfg().MODEL
    assert {'REFINEMASK', 'SPARSEINST', 'PPM', 'SOLVER'} <= set(cfg.MODEL.INSPLUG)


def add_other_project_config(cfg):
    """Stands for another project's add_*_config (e.g. PointRend's)."""
    cfg.MODEL.OTHER = CfgNode({'WIDTH': 7})
    cfg.SOLVER.OTHER_OPTION = True


def test_idempotent_and_composable():
    first = get_cfg()
    add_insplug_config(first)
    add_other_project_config(first)
    second = get_cfg()
    add_other_project_config(second)
    add_insplug_config(second)
    assert first.dump() == second.dump()

    second.MODEL.INSPLUG.SPARSEINST.DECODER.NUM_MASKS = 7
    add_insplug_config(second)  # a second call keeps values already set
    assert second.MODEL.INSPLUG.SPARSEINST.DECODER.NUM_MASKS == 7
    assert second.MODEL.OTHER.WIDTH == 7

    frozen = get_cfg()
    frozen.freeze()
    add_insplug_config(frozen)
    assert frozen.is_frozen() and 'INSPLUG' in frozen.MODEL

    with pytest.raises(KeyError, match='get_cfg'):
        add_insplug_config(CfgNode({'SOLVER': CfgNode()}))


def test_defaults_are_the_official_values():
    cfg = add_insplug_config(get_cfg()).MODEL.INSPLUG
    r = cfg.REFINEMASK  # RefineMask paper / official r50-refinemask-1x.py
    assert (r.STAGE_SUP_SIZE, r.DILATIONS) == ([14, 28, 56, 112], [1, 3, 5])
    assert (r.NUM_CONVS_INSTANCE, r.CONV_OUT_CHANNELS_INSTANCE) == (2, 256)
    assert (r.NUM_CONVS_SEMANTIC, r.CONV_OUT_CHANNELS_SEMANTIC) == (4, 256)
    assert r.STAGE_INSTANCE_LOSS_WEIGHT == [0.25, 0.5, 0.75, 1.0]
    assert (r.SEMANTIC_LOSS_WEIGHT, r.BOUNDARY_WIDTH, r.START_STAGE, r.TEST_START_STAGE) == \
        (1.0, 2, 1, 1)
    s = cfg.SPARSEINST  # SparseInst paper / official config.py
    assert (s.ENCODER.NUM_CHANNELS, s.ENCODER.POOL_SIZES) == (256, [1, 2, 3, 6])
    assert (s.DECODER.NUM_MASKS, s.DECODER.GROUPS, s.DECODER.KERNEL_DIM) == (100, 4, 128)
    assert (s.DECODER.INST.DIM, s.DECODER.INST.CONVS) == (256, 4)
    assert (s.DECODER.MASK.DIM, s.DECODER.MASK.CONVS, s.DECODER.SCALE_FACTOR) == (256, 4, 2.0)
    assert (s.LOSS.CLASS_WEIGHT, s.LOSS.MASK_PIXEL_WEIGHT, s.LOSS.MASK_DICE_WEIGHT,
            s.LOSS.OBJECTNESS_WEIGHT) == (2.0, 5.0, 2.0, 1.0)
    assert (s.MATCHER.ALPHA, s.MATCHER.BETA) == (0.8, 0.2)
    assert (s.CLS_THRESHOLD, s.MASK_THRESHOLD, s.MAX_DETECTIONS) == (0.005, 0.45, 100)
    assert (cfg.PPM.POOL_SIZES, cfg.PPM.BOTTLENECK_KERNEL) == ([1, 2, 3, 6], 1)


def test_refinemask_training_defaults_match_the_mmdet_adapter():
    pytest.importorskip('mmdet')
    from insplug.detectron2.config import REFINEMASK_TRAINING_DEFAULTS
    from insplug.mmdet.refinemask import RefineMaskHead as MMDetHead
    params = inspect.signature(MMDetHead).parameters
    for name, value in REFINEMASK_TRAINING_DEFAULTS.items():
        assert tuple(params[name].default) == tuple(value) if isinstance(value, tuple) else \
            params[name].default == value, name
    assert params['test_start_stage'].default == \
        add_insplug_config(get_cfg()).MODEL.INSPLUG.REFINEMASK.TEST_START_STAGE


def mmdet_config(path):
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, 'configs', path))


def test_refinemask_configs_match_mmdet():
    mm = mmdet_config('refinemask_r50.py').model.roi_head
    head = mm.mask_head
    y = setup_cfg(osp.join(D2_CONFIGS, 'refinemask_r50_fpn_1x.yaml'))
    r = y.MODEL.INSPLUG.REFINEMASK
    num_classes = y.MODEL.ROI_HEADS.NUM_CLASSES
    assert num_classes == head.num_classes == mm.bbox_head.num_classes
    assert [1 if a else num_classes for a in r.STAGE_CLASS_AGNOSTIC] == head.stage_num_classes
    pairs = dict(NUM_CONVS_INSTANCE='num_convs_instance',
                 CONV_OUT_CHANNELS_INSTANCE='conv_out_channels_instance',
                 NUM_CONVS_SEMANTIC='num_convs_semantic',
                 CONV_OUT_CHANNELS_SEMANTIC='conv_out_channels_semantic',
                 DILATIONS='dilations', STAGE_SUP_SIZE='stage_sup_size',
                 STAGE_INSTANCE_LOSS_WEIGHT='stage_instance_loss_weight',
                 SEMANTIC_LOSS_WEIGHT='semantic_loss_weight', BOUNDARY_WIDTH='boundary_width',
                 START_STAGE='start_stage')
    for key, name in pairs.items():
        assert list(r[key]) == list(head[name]) if isinstance(r[key], list) else \
            r[key] == head[name], key
    assert y.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION == mm.mask_roi_extractor.roi_layer.output_size
    assert y.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO == \
        mm.mask_roi_extractor.roi_layer.sampling_ratio
    assert (r.BOX_CLS_LOSS_WEIGHT, y.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT) == \
        (mm.bbox_head.loss_cls.loss_weight, mm.bbox_head.loss_bbox.loss_weight)
    solver = mmdet_config('refinemask_r50.py').optim_wrapper
    assert y.SOLVER.BASE_LR == solver.optimizer.lr and y.SOLVER.IMS_PER_BATCH == 16
    assert y.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == solver.clip_grad.max_norm

    lazy = LazyConfig.load(osp.join(D2_CONFIGS, 'refinemask_r50_fpn_1x.py'))
    lazy_head = {k: v for k, v in lazy.model.roi_heads.mask_head.items() if k != '_target_'}
    assert lazy.model.roi_heads.num_classes == head.num_classes
    for name, value in head.items():
        if name in ('type', 'num_classes', 'stage_num_classes'):
            continue
        assert list(lazy_head[name]) == list(value) if isinstance(value, (list, tuple)) else \
            lazy_head[name] == value, name
    assert lazy_head['stage_num_classes'] is None  # = class-specific everywhere
    assert lazy.model.roi_heads.box_predictor.loss_weight == {'loss_cls': 2.0,
                                                               'loss_box_reg': 2.0}
    assert (lazy.optimizer.lr, lazy.optimizer.clip_max_norm) == (solver.optimizer.lr, 35.0)


def test_sparseinst_configs_match_mmdet():
    mm = mmdet_config('sparseinst/sparseinst_r50_giam.py')
    y = setup_cfg(osp.join(D2_CONFIGS, 'sparseinst_r50_giam.yaml'))
    s = y.MODEL.INSPLUG.SPARSEINST
    dec, enc = mm.model.decoder, mm.model.encoder
    assert (s.DECODER.NUM_CLASSES, s.DECODER.NUM_MASKS, s.DECODER.IAM_TYPE, s.DECODER.GROUPS,
            s.DECODER.INST.DIM, s.DECODER.INST.CONVS, s.DECODER.MASK.DIM, s.DECODER.MASK.CONVS,
            s.DECODER.KERNEL_DIM, s.DECODER.SCALE_FACTOR) == \
        (dec.num_classes, dec.num_masks, dec.iam_type, dec.groups, dec.inst_dim, dec.inst_convs,
         dec.mask_dim, dec.mask_convs, dec.kernel_dim, dec.scale_factor)
    assert (s.ENCODER.NUM_CHANNELS, list(s.ENCODER.POOL_SIZES)) == \
        (enc.out_channels, list(enc.pool_sizes))
    crit = mm.model.criterion
    assert (s.LOSS.CLASS_WEIGHT, s.LOSS.MASK_PIXEL_WEIGHT, s.LOSS.MASK_DICE_WEIGHT,
            s.LOSS.OBJECTNESS_WEIGHT) == (crit.loss_cls.loss_weight, crit.loss_mask.loss_weight,
                                          crit.loss_dice.loss_weight, crit.loss_obj.loss_weight)
    assert (s.LOSS.FOCAL_ALPHA, s.LOSS.FOCAL_GAMMA) == (crit.loss_cls.alpha, crit.loss_cls.gamma)
    assert (s.MATCHER.ALPHA, s.MATCHER.BETA) == (crit.assigner.alpha, crit.assigner.beta)
    test = mm.model.test_cfg
    assert (s.CLS_THRESHOLD, s.MASK_THRESHOLD, s.MAX_DETECTIONS) == \
        (test.score_thr, test.mask_thr_binary, test.max_per_img)
    assert list(y.MODEL.PIXEL_MEAN) == list(mm.model.data_preprocessor.mean)
    assert list(y.MODEL.PIXEL_STD) == list(mm.model.data_preprocessor.std)
    assert y.INPUT.FORMAT == 'RGB' and mm.model.data_preprocessor.bgr_to_rgb
    opt = mm.optim_wrapper.optimizer
    assert (y.MODEL.INSPLUG.SOLVER.OPTIMIZER, y.SOLVER.BASE_LR, y.SOLVER.WEIGHT_DECAY) == \
        ('ADAMW', opt.lr, opt.weight_decay)
    assert y.SOLVER.MAX_ITER == mm.train_cfg.max_iters
    assert list(y.SOLVER.STEPS) == list(mm.param_scheduler[1].milestones)
    assert list(y.INPUT.MIN_SIZE_TRAIN) == [s for _, s in mm.train_pipeline[2].scales]

    lazy = LazyConfig.load(osp.join(D2_CONFIGS, 'sparseinst_r50_giam.py'))
    for name, value in dec.items():
        if name != 'type':
            assert lazy.model.decoder[name] == value, name
    assert lazy.model.encoder.out_channels == enc.out_channels
    assert list(lazy.model.encoder.in_channels) == list(enc.in_channels)
    assert dict(lazy.model.loss_weights) == dict(cls=2.0, mask=5.0, dice=2.0, obj=1.0)
    assert (lazy.model.cls_threshold, lazy.model.mask_threshold, lazy.model.max_detections) \
        == (test.score_thr, test.mask_thr_binary, test.max_per_img)
    assert (lazy.optimizer.lr, lazy.optimizer.weight_decay) == (opt.lr, opt.weight_decay)
    assert lazy.train.max_iter == mm.train_cfg.max_iters


def test_registered_in_detectron2_registries_without_new_registries():
    from detectron2.modeling import (BACKBONE_REGISTRY, META_ARCH_REGISTRY,
                                     PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY,
                                     ROI_MASK_HEAD_REGISTRY)
    from fvcore.common.registry import Registry
    assert ROI_MASK_HEAD_REGISTRY.get('RefineMaskHead') is d2ad.RefineMaskHead
    assert ROI_HEADS_REGISTRY.get('RefineMaskROIHeads') is d2ad.RefineMaskROIHeads
    assert META_ARCH_REGISTRY.get('InsplugSparseInst') is d2ad.InsplugSparseInst
    assert BACKBONE_REGISTRY.get('build_ppm_backbone') is d2ad.build_ppm_backbone
    assert BACKBONE_REGISTRY.get('build_resnet_ppm_fpn_backbone') is \
        d2ad.build_resnet_ppm_fpn_backbone
    # detectron2's own entries are still there
    assert ROI_HEADS_REGISTRY.get('StandardROIHeads').__module__.startswith('detectron2.')
    assert META_ARCH_REGISTRY.get('GeneralizedRCNN').__module__.startswith('detectron2.')
    import sys
    own = [getattr(mod, name) for key, mod in list(sys.modules.items())
           if key.startswith('insplug.detectron2') and mod is not None for name in dir(mod)]
    registries = [obj for obj in own if isinstance(obj, Registry)]
    assert all(obj in (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                       ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY) for obj in registries)


def test_bad_values_name_the_key():
    from detectron2.modeling import build_model
    from insplug.detectron2 import build_optimizer
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'refinemask_r18_shapes.yaml'),
                    ['MODEL.INSPLUG.REFINEMASK.STAGE_CLASS_AGNOSTIC', [False, True]])
    with pytest.raises(ValueError, match='STAGE_CLASS_AGNOSTIC'):
        build_model(cfg)
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'refinemask_r18_shapes.yaml'),
                    ['MODEL.INSPLUG.REFINEMASK.SEMANTIC_IN_FEATURE', 'p3'])
    with pytest.raises(ValueError, match='stride'):
        build_model(cfg)
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml'),
                    ['MODEL.INSPLUG.SOLVER.OPTIMIZER', 'LAMB'])
    import torch
    with pytest.raises(ValueError, match='MODEL.INSPLUG.SOLVER.OPTIMIZER'):
        build_optimizer(cfg, torch.nn.Linear(2, 2))
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml'),
                    ['MODEL.RESNETS.OUT_FEATURES', ['res4', 'res5']])
    with pytest.raises(ValueError, match='OUT_FEATURES'):
        build_model(cfg)
