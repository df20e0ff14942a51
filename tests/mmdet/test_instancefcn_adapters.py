"""InstanceFCN mmdet adapter: a new registered name, the paper-setting config (head sizes
hand-counted from the paper's layers), stride 8, and one training step / a prediction on a
small batch whose proposals follow the core's propose()."""
import os.path as osp

import numpy as np
import torch
from mmdet import registry as mmdet_registry
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from insplug.core.instancefcn import propose
from insplug.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'instancefcn')


def build(name):
    cfg = Config.fromfile(osp.join(CFG, name))
    cfg.model.backbone.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


def test_name_is_new_and_registered():
    assert mmdet_registry.MODELS.get('InstanceFCN') is None
    assert MODELS.get('InstanceFCN') is not None


def test_paper_setting_config():
    model, cfg = build('instancefcn_r50_d8_coco.py')
    head = model.head
    assert (head.k, head.window) == (5, 21)
    # 1x1 conv 2048->512, 3x3 conv 512->25; 3x3 conv 2048->512, 1x1 conv 512->1
    n = sum(p.numel() for p in head.parameters())
    assert n == (2048 * 512 + 512) + (512 * 25 * 9 + 25) + (2048 * 512 * 9 + 512) + (512 + 1)
    assert len(cfg.model.test_cfg.scales) == 6
    model.eval()
    with torch.no_grad():
        inst, obj = model._forward(torch.zeros(1, 3, 64, 96))
    assert inst.shape == (1, 25, 8, 12) and obj.shape == (1, 8, 12)  # stride 8


def _sample(h, w):
    s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                    batch_input_shape=(h, w), pad_shape=(h, w)))
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 10:50, 20:60] = 1
    masks[1, 60:90, 5:40] = 1
    gt = InstanceData()
    gt.bboxes = torch.tensor([[20.0, 10, 60, 50], [5, 60, 40, 90]])
    gt.labels = torch.zeros(2, dtype=torch.long)
    gt.masks = BitmapMasks(masks, h, w)
    s.gt_instances = gt
    return s


def test_demo_config_loss_and_predict():
    torch.manual_seed(0)
    model, _ = build('instancefcn_r18_shapes.py')
    x = torch.randn(2, 3, 96, 96)
    samples = [_sample(96, 96), _sample(96, 96)]
    # at scale 1 both objects (40 and 35 px) fit the 72-px windows (29-58 px): positives
    model.ifcn_train_cfg['scales'] = (1.0,)
    model.train()
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_objectness', 'loss_segment'}
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert model.head.inst_out.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model.predict(x, samples)
        # the same proposals from the core on the same level outputs
        levels = []
        for s in model.ifcn_test_cfg['scales']:
            xs = model._resized(x, float(s))
            inst, obj = model.head(model.extract_feat(xs))
            levels.append((inst[0], obj[0], xs.shape[-1] / 96))
        cfg = model.ifcn_test_cfg
        masks, scores, boxes = propose(levels, 9, 8, 96, 96, cfg['pre_nms'], cfg['mask_thr'],
                                       cfg['nms_iou'], cfg['max_per_img'])
    pred = out[0].pred_instances
    assert torch.equal(pred.masks, masks) and torch.equal(pred.scores, scores)
    assert torch.equal(pred.bboxes, boxes) and (pred.labels == 0).all()
