"""BlendMask's official (AdelaiDet) defaults that the golden test does not see: initialisation,
SyncBN resolution, optimiser config, the thing-semantic-map transform."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')


@pytest.fixture(scope='module')
def models():
    init_default_scope('insplug')
    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS, TRANSFORMS
    return MODELS, TRANSFORMS


def full_cfg():
    return Config.fromfile(osp.join(CONFIGS, 'blendmask', 'blendmask_r50_1x.py'))


def test_fpn_init_is_c2_xavier_fill(models):
    neck = models[0].build(full_cfg().model.neck)
    neck.init_weights()
    convs = [m for m in neck.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8  # 3 laterals, 3 outputs, P6, P7
    for m in convs:
        bound = (3 / m.weight[0].numel()) ** 0.5  # kaiming_uniform(a=1)
        assert m.weight.abs().max() <= bound + 1e-7
        assert m.weight.abs().max() > 0.95 * bound
        assert torch.all(m.bias == 0)


def test_last_basis_conv_keeps_pytorch_init_and_others_kaiming(models):
    torch.manual_seed(0)
    head = models[0].build(full_cfg().model.mask_head)
    last = head.bottom_module.proto_conv
    bound = 1 / last.weight[0].numel() ** 0.5  # nn.Conv2d default: kaiming_uniform(a=sqrt(5))
    assert last.weight.abs().max() <= bound and last.weight.abs().max() > 0.9 * bound
    assert last.bias.abs().sum() > 0  # default bias init, not zeros
    conv = head.bottom_module.convs[0][0]
    assert conv.weight.abs().max() > 0.9 * (3 / conv.weight[0].numel()) ** 0.5
    module_init = models[0].build(dict(full_cfg().model.mask_head, bottom_last_init='module'))
    assert torch.all(module_init.bottom_module.proto_conv.bias == 0)


def test_basis_module_sync_bn_resolution(models):
    cfg = full_cfg().model.mask_head
    auto = models[0].build(cfg)  # not distributed here: plain BN
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in auto.modules())
    forced = models[0].build(dict(cfg, bottom_sync_bn=True))
    sync = [m for m in forced.bottom_module.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(sync) == 3 + 3 + 1  # refine x3, tower x3, post-upsample conv
    # the semantic head keeps plain BN, as in AdelaiDet (nn.BatchNorm2d)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in forced.semantic_head.modules())


def test_full_config_official_values():
    cfg = full_cfg()
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0  # WEIGHT_DECAY_NORM 0
    head = cfg.model.bbox_head
    assert head.use_scale is False and cfg.model.test_cfg.thresh_with_ctr is True
    assert cfg.model.test_cfg.score == 'sqrt' and cfg.model.test_cfg.nms.iou_threshold == 0.6
    assert tuple(head.sizes_of_interest) == (64, 128, 256, 512)
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types.index('ThingSemanticMap') == types.index('LoadAnnotations') + 1
    assert cfg.model.data_preprocessor.seg_pad_value == 0


def test_thing_semantic_map_transform_includes_crowd_later_wins(models):
    t = models[1].build(dict(type='ThingSemanticMap'))
    m = np.zeros((3, 8, 8), np.uint8)
    m[0, :4, :4] = 1     # class 2
    m[1, 2:6, 2:6] = 1   # class 0, later: wins on the overlap
    m[2, 6:, 6:] = 1     # crowd object of class 1: still painted
    out = t(dict(gt_masks=BitmapMasks(m, 8, 8), gt_bboxes_labels=np.array([2, 0, 1]),
                 gt_ignore_flags=np.array([False, False, True])))
    sem = out['gt_seg_map']
    assert sem.dtype == np.uint8
    assert sem[0, 0] == 3 and sem[3, 3] == 1 and sem[7, 7] == 2 and sem[7, 0] == 0
