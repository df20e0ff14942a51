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


def test_classified_full_config():
    """The VOC instance-segmentation config: MNC's stage-3 classifier (hand-counted: 1x1
    reduction 2048 -> 512, fc6 / fc6_mask 512*7*7 -> 4096, fc7 / fc7_mask 4096 -> 4096,
    seg_cls_score 8192 -> 21), the paper's N = 300 proposals, two-step training."""
    with torch.device('meta'):  # ~0.24 G parameters: shapes only
        model, cfg = build('instancefcn_cls_r50_d8_voc.py')
    clf = model.classifier
    assert clf.num_classes == 20 and clf.seg_cls_score.out_features == 21
    n = sum(p.numel() for p in clf.parameters())
    fc6 = 512 * 7 * 7 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    assert n == (2048 * 512 + 512) + 2 * (fc6 + fc7) + (8192 * 21 + 21)
    assert model.cls_train_cfg['num_proposals'] == 300 and model.cls_train_cfg['detach_features']
    assert not model.cls_train_cfg['train_proposals']
    assert model.cls_test_cfg['num_proposals'] == 300 and model.cls_test_cfg['nms_iou'] == 0.3
    assert model.cls_train_cfg['rois_per_img'] == 64


def test_classified_demo_loss_and_predict():
    torch.manual_seed(0)
    model, _ = build('instancefcn_cls_r18_shapes.py')
    x = torch.randn(2, 3, 96, 96)
    samples = [_sample(96, 96), _sample(96, 96)]
    for s in samples:
        s.gt_instances.labels = torch.tensor([2, 4])
    model.ifcn_train_cfg['scales'] = (1.0,)
    model.train()
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_objectness', 'loss_segment', 'loss_seg_cls'}
    # the ground truth is among the candidates: both objects' classes are targets; an untrained
    # classifier is near uniform over K + 1 = 6 classes
    assert abs(float(losses['loss_seg_cls']) - torch.log(torch.tensor(6.0))) < 0.05
    # the demo: the classifier's features are detached (its loss does not reach the trunk)
    losses['loss_seg_cls'].backward(retain_graph=True)
    assert model.classifier.fc6_mask.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad is None
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    # joint training through the trunk
    model.zero_grad(set_to_none=True)
    model.cls_train_cfg['detach_features'] = False
    model.loss(x, samples)['loss_seg_cls'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    # the second training step: only the classifier's loss, the trunk gets no gradient
    model.zero_grad(set_to_none=True)
    model.cls_train_cfg['detach_features'] = True
    model.cls_train_cfg['train_proposals'] = False
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_seg_cls'}
    losses['loss_seg_cls'].backward()
    assert model.backbone.conv1.weight.grad is None and model.head.inst_out.weight.grad is None
    assert model.classifier.seg_cls_score.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model.predict(x, samples)
    pred = out[0].pred_instances
    assert len(pred) > 0 and pred.masks.shape[-2:] == (96, 96)
    assert ((pred.labels >= 0) & (pred.labels < 5)).all()
    assert (pred.scores[:-1] >= pred.scores[1:]).all()
