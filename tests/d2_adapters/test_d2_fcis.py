"""FCIS through detectron2: ``FCISROIHeads`` on ``GeneralizedRCNN``.

* agreement with the mmdet adapter (``FCISRoIHead`` of ``configs/demo/fcis_r18_shapes.py``):
  its head weights load strictly into the RoI heads built from
  ``configs/detectron2/fcis_r18_shapes.yaml``; on the same C5 feature, proposals and ground
  truth the three losses agree (1e-6 rel; OHEM included) and the test-time detections agree
  (boxes, scores 1e-6, labels; the mmdet image masks equal the release's paste of the voted
  masks the detectron2 head returns: 0 differing pixels);
* the shapes yaml builds a whole ``GeneralizedRCNN`` (RPN on res4, the head on res5) that trains
  one step (finite RPN and FCIS losses, gradients reach the head) and predicts image masks;
* the full yaml (ResNet-101, dilated res5) builds with the release's head shapes.
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch  # no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, ImageList, Instances  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from insplug.core.fcis import paste_cv2  # noqa: E402
from insplug.detectron2 import add_insplug_config  # noqa: E402
from insplug.detectron2.fcis import FCISROIHeads  # noqa: E402
from insplug.mmdet.fcis import FCISRoIHead  # noqa: E402

MMDET_CONFIG = osp.join(REPO, 'configs', 'demo', 'fcis_r18_shapes.py')
SHAPES = 'fcis_r18_shapes.yaml'


def yaml_cfg(name, *opts):
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(osp.join(D2_CONFIGS, name))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    return cfg


def test_registered_name():
    assert ROI_HEADS_REGISTRY.get('FCISROIHeads') is FCISROIHeads


def make_case(seed=0, size=128):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(2, 512, size // 16, size // 16, generator=g)
    proposals, gts = [], []
    for i in range(2):
        centre = torch.rand(12, 2, generator=g) * size * 0.8 + size * 0.1
        half = torch.rand(12, 2, generator=g) * size * 0.25 + 6
        boxes = torch.cat([centre - half, centre + half], 1).clamp(0, size - 1)
        gt_boxes = torch.tensor([[10., 12., 60., 70.], [50., 40., 120., 110.]]) - 4 * i
        masks = torch.zeros(2, size, size)
        for j, b in enumerate(gt_boxes.long()):
            masks[j, b[1] + 3:b[3] - 3, b[0] + 2:b[2] - 5] = 1
        proposals.append(torch.cat([boxes, gt_boxes + torch.randn(2, 4, generator=g)]))
        gts.append((gt_boxes, torch.tensor([1, 3]) + i, masks))
    return feat, proposals, gts


@pytest.fixture(scope='module')
def heads():
    cfg = Config.fromfile(MMDET_CONFIG)
    rh = cfg.model.roi_head
    torch.manual_seed(0)
    mm = FCISRoIHead(in_channels=rh.in_channels, num_classes=rh.num_classes,
                     mid_channels=rh.mid_channels, train_cfg=cfg.model.train_cfg.rcnn,
                     test_cfg=cfg.model.test_cfg.rcnn)
    # larger head outputs than the N(0, 0.01) start, so that classes and masks differ
    with torch.no_grad():
        for p in mm.head.parameters():
            p.normal_(0, 0.05)
    d2cfg = yaml_cfg(SHAPES)
    d2 = FCISROIHeads(d2cfg, {'res5': ShapeSpec(channels=512, stride=16)})
    missing, unexpected = d2.load_state_dict(mm.state_dict(), strict=True)
    assert not missing and not unexpected
    return mm, d2


def mm_samples(gts, size):
    samples = []
    for boxes, labels, masks in gts:
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=boxes, labels=labels,
                                      masks=BitmapMasks(masks.numpy().astype('uint8'), size,
                                                        size))
        samples.append(s)
    return samples


def d2_inputs(proposals, gts, size):
    props = [Instances((size, size), proposal_boxes=Boxes(p),
                       objectness_logits=torch.zeros(len(p))) for p in proposals]
    targets = [Instances((size, size), gt_boxes=Boxes(b), gt_classes=l,
                         gt_masks=BitMasks(m.bool())) for b, l, m in gts]
    return props, targets


def test_losses_agree(heads):
    mm, d2 = heads
    feat, proposals, gts = make_case()
    mm.train()
    d2.train()
    rpn = [InstanceData(bboxes=p) for p in proposals]
    ref = mm.loss((None, feat), rpn, mm_samples(gts, 128))
    props, targets = d2_inputs(proposals, gts, 128)
    images = ImageList(torch.zeros(2, 3, 128, 128), [(128, 128)] * 2)
    _, got = d2(images, {'res5': feat}, props, targets)
    assert set(got) == set(ref) == {'loss_cls', 'loss_seg', 'loss_bbox'}
    for k in ref:
        assert torch.isfinite(ref[k]) and float(ref[k]) > 0
        assert abs(float(got[k]) - float(ref[k])) <= 1e-6 * abs(float(ref[k])), k


def test_predictions_agree(heads):
    mm, d2 = heads
    feat, proposals, gts = make_case(seed=1)
    mm.eval()
    d2.eval()
    with torch.no_grad():
        ref = mm.predict((None, feat), [InstanceData(bboxes=p) for p in proposals],
                         mm_samples(gts, 128), rescale=True)
        props, _ = d2_inputs(proposals, gts, 128)
        images = ImageList(torch.zeros(2, 3, 128, 128), [(128, 128)] * 2)
        got, _ = d2(images, {'res5': feat}, props)
    thr = d2.test_cfg['binary_thresh']
    for r, g in zip(ref, got):
        assert len(r) == len(g) > 0
        assert torch.equal(r.bboxes, g.pred_boxes.tensor)
        assert torch.equal(r.labels, g.pred_classes)
        assert (r.scores - g.scores).abs().max() <= 1e-6
        inclusive = torch.cat([g.pred_boxes.tensor[:, :2], g.pred_boxes.tensor[:, 2:] - 1], 1)
        pasted = paste_cv2(g.pred_masks[:, 0] * (thr / 0.5), inclusive, 128, 128, thr)
        assert torch.equal(pasted, r.masks)


def test_shapes_yaml_trains_and_predicts(d2_shapes):
    cfg = d2_cfg(SHAPES, d2_shapes, 'MODEL.RPN.POST_NMS_TOPK_TRAIN', 30,
                 'MODEL.RPN.POST_NMS_TOPK_TEST', 30, 'INPUT.MIN_SIZE_TRAIN', (128,),
                 'INPUT.MAX_SIZE_TRAIN', 128, 'INPUT.MIN_SIZE_TEST', 128,
                 'INPUT.MAX_SIZE_TEST', 128)
    model = build_model(cfg)
    assert isinstance(model.roi_heads, FCISROIHeads)
    batch = first_batch(cfg, train=True, batch_size=2)
    model.train()
    from detectron2.utils.events import EventStorage
    with EventStorage(0):
        losses = model(batch)
    assert {'loss_rpn_cls', 'loss_rpn_loc', 'loss_cls', 'loss_seg', 'loss_bbox'} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_heads.head.fcis_cls_seg.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(first_batch(cfg, train=False, batch_size=1))
    inst = out[0]['instances']
    assert inst.pred_masks.dtype == torch.bool
    assert inst.pred_masks.shape[-2:] == inst.image_size


def test_full_yaml_builds():
    cfg = yaml_cfg('fcis_r101_coco.yaml')
    from detectron2.modeling.backbone import build_backbone
    shapes = build_backbone(cfg).output_shape()
    assert shapes['res5'].stride == 16 and shapes['res4'].stride == 16
    heads = FCISROIHeads(cfg, shapes)
    assert heads.head.fcis_cls_seg.weight.shape == (7 * 7 * 2 * 81, 1024, 1, 1)
    assert heads.head.fcis_bbox.weight.shape == (7 * 7 * 4 * 2, 1024, 1, 1)
