"""Golden data of the official CenterMask release (youngwanLEE/centermask2, detectron2).

Runs, on CPU and in float64, the official

* VoVNet-eSE + FPN (``build_fcos_vovnet_fpn_backbone``, P3-P7, ``top_block`` P6/P7 from P5) at
  a small width (a stage spec of the official form added to ``vovnet._STAGE_SPECS``, norm
  FrozenBN) and detectron2's ResNet-50 + FPN (``build_fcos_resnet_fpn_backbone``, stem 2 and
  bottleneck 2 wide, STRIDE_IN_1X1): stage and pyramid outputs;
* ``assign_boxes_to_levels_by_ratio`` (pooler.py, eq. 2 of the paper) on hand-picked boxes,
  including exact powers of two;
* ``CenterROIHeads`` (center_heads.py) with ``SpatialAttentionMaskHead`` (sam.py) and
  ``MaskIoUHead`` (maskiou_head.py), in training: proposal matching / sampling, RoI levels,
  pooled features, mask logits, polygon mask targets, MaskIoU targets (``mask_rcnn_loss``),
  MaskIoU predictions, ``loss_mask``, ``loss_maskiou`` and the gradient of their sum w.r.t. the
  mask predictor; and in inference: mask probabilities, ``mask_scores`` and detectron2's
  ``detector_postprocess`` (rescaled, clipped boxes, pasted masks >= 0.5);

* the whole official model (``build_model`` of centermask_V_39_eSE_FPN_ms_3x.yaml at the tiny
  VoVNet width, FPN 32, float32): the five training losses on polygon GT, and the detections
  after ``detector_postprocess`` (boxes, scores, mask_scores, classes, packed masks);
* the key names and shapes of the full-size released models (V-39, R-50, Lite V-19);

and saves inputs, the official-layout state_dicts and outputs to
``tests/fixtures/official/centermask/golden.pt``::

    python tools/official_parity/make_centermask_golden.py \\
        --official-repo /path/to/centermask2 --detectron2-repo /path/to/detectron2 \\
        [--deps /path/to/site-packages-with-fvcore-iopath-yacs...]

Not run in CI. Nothing of the official code is copied: centermask2 and detectron2's *Python
sources* are imported from the given paths (detectron2 is not built: every op used here goes
through torchvision). detectron2's ``Boxes`` are always float32, so every box here is float32
(features, weights and masks float64). The only run-time change to the official code is one of width: the
MaskIoU head's FC layers are hard-coded 1024 wide; ``maskiou_head.Linear`` is wrapped so that
1024 becomes ``FC`` (32) and the fixture stays small. Record of the run used for the committed
fixture: centermask2 6adabd66 (2021-12-27), detectron2 02b5c4e2.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

OFFICIAL = None
OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'centermask', 'golden.pt')

NUM_CLASSES = 3
FPN_CH = 8
MASK_CH = 8          # ROI_MASK_HEAD.CONV_DIM
IOU_CH = 8           # ROI_MASKIOU_HEAD.CONV_DIM
FC = 32              # the MaskIoU head's FC width (official: 1024)
TINY_VOV = {         # official spec keys; V-39 layout (5 layers, blocks 1-1-2-2) at small width
    'stem': [8, 8, 16], 'stage_conv_ch': [8, 8, 12, 12], 'stage_out_ch': [16, 24, 32, 40],
    'layer_per_block': 5, 'block_per_stage': [1, 1, 2, 2], 'eSE': True, 'dw': False}
IMG_SIZES = [(128, 192), (120, 176)]   # (h, w) of the two resized images (padded to 128 x 192)
ORI_SIZES = [(100, 150), (96, 140)]    # original sizes for detector_postprocess


def randomize(module, gen):
    """Random parameters and norm statistics (positive variances / scales)."""
    with torch.no_grad():
        for name, t in list(module.state_dict().items()):
            if not t.is_floating_point():
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
            elif name.endswith('scale') or (name.endswith('weight') and t.dim() == 1):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
            else:
                fan = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) / math.sqrt(fan))


def sd(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def setup(args):
    sys.path.insert(0, os.path.abspath(args.detectron2_repo))
    sys.path.insert(0, os.path.abspath(args.official_repo))
    for d in args.deps:
        sys.path.append(os.path.abspath(d))


def base_cfg():
    from centermask.config import get_cfg
    cfg = get_cfg()
    cfg.MODEL.DEVICE = 'cpu'
    return cfg


def backbones(gen):
    from centermask.modeling.backbone import fpn as cm_fpn
    from centermask.modeling.backbone import vovnet
    from detectron2.layers import ShapeSpec
    out = {}
    vovnet._STAGE_SPECS['V-tiny-eSE'] = TINY_VOV
    cfg = base_cfg()
    cfg.MODEL.VOVNET.CONV_BODY = 'V-tiny-eSE'
    cfg.MODEL.VOVNET.OUT_FEATURES = ['stage3', 'stage4', 'stage5']
    cfg.MODEL.VOVNET.NORM = 'FrozenBN'
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.FPN.IN_FEATURES = ['stage3', 'stage4', 'stage5']
    cfg.MODEL.FPN.OUT_CHANNELS = FPN_CH
    net = vovnet.build_fcos_vovnet_fpn_backbone(cfg, ShapeSpec(channels=3)).double().eval()
    randomize(net, gen)
    x = torch.randn(1, 3, 64, 96, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        feats = net(x)
        body = net.bottom_up(x)
    out['vovnet'] = dict(
        spec={k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in TINY_VOV.items()
              if k not in ('eSE', 'dw')},
        state_dict={f'backbone.{k}': v for k, v in sd(net).items()}, input=x,
        stages=[body[f'stage{i}'] for i in (3, 4, 5)],
        pyramid=[feats[f'p{i}'] for i in (3, 4, 5, 6, 7)])

    cfg = base_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.OUT_FEATURES = ['res3', 'res4', 'res5']
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 2
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 8
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 2
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    cfg.MODEL.FPN.IN_FEATURES = ['res3', 'res4', 'res5']
    cfg.MODEL.FPN.OUT_CHANNELS = FPN_CH
    net = cm_fpn.build_fcos_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).double().eval()
    randomize(net, gen)
    with torch.no_grad():
        feats = net(x)
        body = net.bottom_up(x)
    out['resnet'] = dict(
        state_dict={f'backbone.{k}': v for k, v in sd(net).items()}, input=x,
        stages=[body[f'res{i}'] for i in (3, 4, 5)],
        pyramid=[feats[f'p{i}'] for i in (3, 4, 5, 6, 7)])
    return out


def level_assignment():
    from centermask.modeling.centermask import pooler
    from detectron2.structures import Boxes, Instances
    h, w = 128, 192
    area = float(h * w)
    # box areas at A / 2^j for j = 0 .. 12 (exact powers: the ceil boundary), and in between
    js = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 9.0, 12.0, 30.0])
    side_w = torch.sqrt(area / 2 ** js * (w / h))
    side_h = area / 2 ** js / side_w
    boxes = torch.stack([torch.full_like(js, 3.0), torch.full_like(js, 5.0), 3.0 + side_w,
                         5.0 + side_h], 1)
    boxes = torch.cat([boxes, torch.tensor([[10.0, 10.0, 10.0, 30.0],     # zero area
                                            [-20.0, -10.0, 300.0, 200.0]])])  # beyond image
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(boxes)
    inst.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
    levels = pooler.assign_boxes_to_levels_by_ratio([inst], 3, 5, is_train=False)
    return dict(boxes=boxes, image_size=[h, w], levels=levels)


def make_polygon(cx, cy, rx, ry, n, gen, jitter=0.25):
    ang = torch.sort(torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi).values
    r = 1 + jitter * (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1)
    xs, ys = cx + rx * r * torch.cos(ang), cy + ry * r * torch.sin(ang)
    return torch.stack([xs, ys], 1).reshape(-1).numpy()


def scene(gen):
    """Per image: GT polygons (one object with two parts), classes, boxes and proposals."""
    images = []
    specs = [
        [(50, 40, 30, 22, 9), (140, 80, 35, 30, 11), (20, 110, 18, 14, 7)],
        [(60, 60, 40, 45, 10), (130, 30, 25, 18, 8)],
    ]
    for (h, w), objs in zip(IMG_SIZES, specs):
        polys, classes, boxes = [], [], []
        for k, (cx, cy, rx, ry, n) in enumerate(objs):
            obj = [make_polygon(cx, cy, rx, ry, n, gen)]
            if k == 1:  # a second, disjoint part
                obj.append(make_polygon(cx + rx + 12, cy - ry, 6, 5, 6, gen, 0.1))
            xy = np.concatenate([p.reshape(-1, 2) for p in obj])
            boxes.append([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
            polys.append(obj)
            classes.append(k % NUM_CLASSES)
        gt_boxes = torch.tensor(boxes, dtype=torch.float64)
        # proposals: jittered GT boxes (positives and negatives, some partly outside the
        # image) and random boxes
        props = []
        for b in gt_boxes:
            wh = (b[2:] - b[:2]).repeat(2)
            for s in (0.05, 0.1, 0.2, 0.35, 0.6):
                props.append(b + torch.randn(4, generator=gen, dtype=torch.float64) * s * wh)
        props.append(torch.tensor([-15.0, -8.0, 40.0, 30.0], dtype=torch.float64))
        props.append(torch.tensor([w - 30.0, h - 25.0, w + 12.0, h + 9.0], dtype=torch.float64))
        for _ in range(4):
            xy = torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([w, h])
            wh = 8 + torch.rand(2, generator=gen, dtype=torch.float64) * 40
            props.append(torch.cat([xy, xy + wh]))
        props = torch.stack(props)
        props = torch.stack([torch.minimum(props[:, 0], props[:, 2]),
                             torch.minimum(props[:, 1], props[:, 3]),
                             torch.maximum(props[:, 0], props[:, 2]),
                             torch.maximum(props[:, 1], props[:, 3])], 1)
        # detectron2's Boxes hold float32 whatever they are given: store them so
        images.append(dict(polygons=polys, classes=classes, gt_boxes=gt_boxes.float(),
                           proposals=props.float()))
    return images


def roi_heads(gen):
    from centermask.modeling.centermask import center_heads, maskiou_head, pooler
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.structures import Boxes, Instances, PolygonMasks
    from detectron2.utils.events import EventStorage

    orig_linear = maskiou_head.Linear
    maskiou_head.Linear = lambda i, o: orig_linear(FC if i == 1024 else i, FC if o == 1024 else o)

    cfg = base_cfg()
    cfg.merge_from_list([
        'MODEL.MASK_ON', True, 'MODEL.MASKIOU_ON', True,
        'MODEL.ROI_HEADS.NUM_CLASSES', NUM_CLASSES, 'MODEL.ROI_HEADS.IN_FEATURES',
        ['p3', 'p4', 'p5'], 'MODEL.ROI_MASK_HEAD.NAME', 'SpatialAttentionMaskHead',
        'MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION', 'ratio', 'MODEL.ROI_MASK_HEAD.NUM_CONV', 4,
        'MODEL.ROI_MASK_HEAD.CONV_DIM', MASK_CH, 'MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION', 14,
        'MODEL.ROI_MASKIOU_HEAD.CONV_DIM', IOU_CH, 'MODEL.ROI_MASKIOU_HEAD.NUM_CONV', 4])
    shapes = {f'p{i}': ShapeSpec(channels=FPN_CH, stride=2 ** i) for i in (3, 4, 5)}
    heads = center_heads.CenterROIHeads(cfg, shapes).double()
    randomize(heads, gen)
    state = {f'roi_heads.{k}': v for k, v in sd(heads).items()}

    pad_h, pad_w = 128, 192
    feats = {f'p{i}': torch.randn(2, FPN_CH, pad_h // 2 ** i, pad_w // 2 ** i, generator=gen,
                                  dtype=torch.float64) for i in (3, 4, 5)}
    imgs = scene(gen)

    # ---- recorders (wrappers that call the official functions unchanged)
    rec = {}
    orig_assign = pooler.assign_boxes_to_levels_by_ratio

    def assign(*a, **k):
        rec['levels'] = orig_assign(*a, **k)
        return rec['levels']
    pooler.assign_boxes_to_levels_by_ratio = assign
    orig_loss = center_heads.mask_iou_loss

    def iou_loss(labels, pred, gt, w):
        rec.update(iou_labels=labels, iou_pred=pred, iou_targets=gt)
        return orig_loss(labels, pred, gt, w)
    center_heads.mask_iou_loss = iou_loss
    orig_crop = PolygonMasks.crop_and_resize

    def crop(self, boxes, size):
        out = orig_crop(self, boxes, size)
        rec.setdefault('mask_targets', []).append(out)
        return out
    PolygonMasks.crop_and_resize = crop
    hooks = [heads.mask_pooler.register_forward_hook(
                 lambda m, i, o: rec.update(pooled=o, roi_boxes=[
                     x.proposal_boxes.tensor if x.has('proposal_boxes') else x.pred_boxes.tensor
                     for x in i[1]])),
             heads.mask_head.register_forward_hook(lambda m, i, o: rec.update(mask_logits=o))]

    # ---- training
    proposals, targets = [], []
    for (h, w), im in zip(IMG_SIZES, imgs):
        p = Instances((h, w))
        p.pred_boxes = Boxes(im['proposals'].clone())
        p.scores = torch.rand(len(im['proposals']), generator=gen, dtype=torch.float64)
        p.pred_classes = torch.zeros(len(im['proposals']), dtype=torch.long)
        p.locations = torch.zeros(len(im['proposals']), 2, dtype=torch.float64)
        proposals.append(p)
        t = Instances((h, w))
        t.gt_boxes = Boxes(im['gt_boxes'].clone())
        t.gt_classes = torch.tensor(im['classes'], dtype=torch.long)
        t.gt_masks = PolygonMasks([[q.copy() for q in obj] for obj in im['polygons']])
        targets.append(t)
    heads.train()
    torch.manual_seed(0)
    with EventStorage():
        sampled, losses = heads(None, feats, proposals, targets)
    total = losses['loss_mask'] + losses['loss_maskiou']
    total.backward()
    # fg RoIs in the order the official pooled them, with their GT object index
    fg_boxes, fg_gt = [], []
    for s, im in zip(sampled, imgs):
        fg = (s.gt_classes != NUM_CLASSES).nonzero().squeeze(1)
        fg_boxes.append(s.proposal_boxes.tensor[fg])
        gtb = s.gt_boxes.tensor[fg]
        match = [(im['gt_boxes'] == b).all(1).nonzero() for b in gtb]
        if any(len(m) != 1 for m in match):
            raise RuntimeError(f'cannot recover GT index: {gtb} vs {im["gt_boxes"]}')
        fg_gt.append(torch.cat([m[0] for m in match]).long())
    assert all(torch.equal(a, b) for a, b in zip(fg_boxes, rec['roi_boxes']))
    train = dict(
        fg_boxes=fg_boxes, fg_gt_index=fg_gt, levels=rec['levels'], pooled=rec['pooled'].detach(),
        mask_logits=rec['mask_logits'].detach(),
        mask_targets=torch.cat(rec['mask_targets']).to(torch.uint8),
        maskiou_labels=rec['iou_labels'], maskiou_pred=rec['iou_pred'].detach(),
        maskiou_targets=rec['iou_targets'], loss_mask=losses['loss_mask'].detach(),
        loss_maskiou=losses['loss_maskiou'].detach(),
        grad_predictor_weight=heads.mask_head.predictor.weight.grad.clone(),
        grad_predictor_bias=heads.mask_head.predictor.bias.grad.clone())

    # ---- inference on given detections (unclipped boxes, some partly outside the image)
    rec.clear()
    heads.eval()
    dets = []
    for (h, w), im in zip(IMG_SIZES, imgs):
        d = Instances((h, w))
        # every other proposal, plus one box entirely right of the image (dropped after
        # clipping by detector_postprocess)
        boxes = torch.cat([im['proposals'][::2],
                           torch.tensor([[w + 5.0, 10.0, w + 30.0, 40.0]])])
        d.pred_boxes = Boxes(boxes)
        d.scores = torch.rand(len(boxes), generator=gen, dtype=torch.float64) * 0.9 + 0.05
        d.pred_classes = torch.randint(0, NUM_CLASSES, (len(boxes),), generator=gen)
        dets.append(d)
    inputs = [dict(boxes=d.pred_boxes.tensor.clone(), scores=d.scores.clone(),
                   labels=d.pred_classes.clone()) for d in dets]
    with torch.no_grad():
        out = heads.forward_with_given_boxes(feats, dets)
        post = [detector_postprocess(o, oh, ow) for o, (oh, ow) in zip(out, ORI_SIZES)]
    test = dict(
        detections=inputs, levels=rec['levels'],
        mask_probs=[o.pred_masks[:, 0] for o in out], mask_scores=[o.mask_scores for o in out],
        post_boxes=[p.pred_boxes.tensor for p in post], post_scores=[p.scores for p in post],
        post_mask_scores=[p.mask_scores for p in post], post_labels=[p.pred_classes for p in post],
        post_masks=[p.pred_masks.to(torch.uint8) for p in post])
    for hk in hooks:
        hk.remove()
    scene_out = [dict(polygons=[[torch.from_numpy(q) for q in obj] for obj in im['polygons']],
                      classes=torch.tensor(im['classes']), gt_boxes=im['gt_boxes'],
                      proposals=im['proposals']) for im in imgs]
    return dict(state_dict=state, features=[feats[f'p{i}'] for i in (3, 4, 5)],
                image_sizes=[list(s) for s in IMG_SIZES], ori_sizes=[list(s) for s in ORI_SIZES],
                scene=scene_out, train=train, test=test, fc_channels=FC,
                widths=dict(fpn=FPN_CH, mask=MASK_CH, maskiou=IOU_CH, num_convs=4,
                            num_classes=NUM_CLASSES))


DET_CH = 32                            # GN(32) in the FCOS towers needs >= 32 channels
DET_SIZES = [(96, 128), (80, 112)]     # resized (unpadded) images; batch padded to 96 x 128
DET_ORI = [(120, 160), (100, 140)]     # original sizes (detector_postprocess)


def detector(gen):
    """The whole official model (VoVNet-tiny + FPN + FCOS + CenterROIHeads): training losses on
    polygon GT and test-time detections after detector_postprocess. float32: in float64 the
    official ``ml_nms`` fails (float32 Boxes vs float64 scores in torchvision's NMS)."""
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances, PolygonMasks
    from detectron2.utils.events import EventStorage
    cfg = base_cfg()
    cfg.merge_from_file(os.path.join(OFFICIAL, 'configs', 'centermask',
                                     'centermask_V_39_eSE_FPN_ms_3x.yaml'))
    cfg.merge_from_list([
        'MODEL.WEIGHTS', '', 'MODEL.VOVNET.CONV_BODY', 'V-tiny-eSE',
        'MODEL.FPN.OUT_CHANNELS', DET_CH, 'MODEL.FCOS.NUM_CLASSES', NUM_CLASSES,
        'MODEL.ROI_HEADS.NUM_CLASSES', NUM_CLASSES, 'MODEL.ROI_MASK_HEAD.CONV_DIM', DET_CH,
        'MODEL.ROI_MASKIOU_HEAD.CONV_DIM', DET_CH])
    model = build_model(cfg)
    randomize(model, gen)
    with torch.no_grad():  # a class prior that lets some scores pass the 0.05 threshold
        model.proposal_generator.fcos_head.cls_logits.bias.fill_(-1.0)
    images, batched = [], []
    for k, ((h, w), (oh, ow)) in enumerate(zip(DET_SIZES, DET_ORI)):
        img = torch.randint(0, 256, (3, h, w), generator=gen).float()  # stored as uint8
        images.append(img)
        polys, boxes, classes = [], [], []
        for j, (cx, cy, rx, ry, n) in enumerate([(30 + 10 * k, 30, 18, 14, 8),
                                                 (80, 50 + 5 * k, 25, 20, 10)]):
            obj = [make_polygon(cx, cy, rx, ry, n, gen)]
            xy = obj[0].reshape(-1, 2)
            polys.append(obj)
            boxes.append([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
            classes.append((j + k) % NUM_CLASSES)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        inst.gt_masks = PolygonMasks([[q.copy() for q in o] for o in polys])
        batched.append(dict(image=img, height=oh, width=ow, instances=inst, polygons=polys,
                            gt_boxes=inst.gt_boxes.tensor.clone(), classes=inst.gt_classes))
    model.train()
    torch.manual_seed(0)
    with EventStorage():
        losses = model([{k: v for k, v in b.items() if k in ('image', 'height', 'width',
                                                              'instances')} for b in batched])
    model.eval()
    with torch.no_grad():
        outs = model([dict(image=b['image'], height=b['height'], width=b['width'])
                      for b in batched])
    res = [o['instances'] for o in outs]
    return dict(
        state_dict=sd(model), pixel_mean=model.pixel_mean.flatten().clone(),
        pixel_std=model.pixel_std.flatten().clone(), spec=dict(stem=TINY_VOV['stem'], stage_ch=TINY_VOV['stage_conv_ch'],
                                        out_ch=TINY_VOV['stage_out_ch'],
                                        layers=TINY_VOV['layer_per_block'],
                                        blocks=TINY_VOV['block_per_stage']),
        channels=DET_CH, fc_channels=FC, num_classes=NUM_CLASSES,
        images=[i.to(torch.uint8) for i in images], image_sizes=[list(s) for s in DET_SIZES],
        ori_sizes=[list(s) for s in DET_ORI],
        gt=[dict(polygons=[[torch.from_numpy(q) for q in o] for o in b['polygons']],
                 boxes=b['gt_boxes'], classes=b['classes']) for b in batched],
        losses={k: v.detach() for k, v in losses.items()},
        boxes=[r.pred_boxes.tensor for r in res], scores=[r.scores for r in res],
        mask_scores=[r.mask_scores for r in res], labels=[r.pred_classes for r in res],
        masks=[pack(r.pred_masks) for r in res])


def pack(masks):
    """(N, H, W) bool -> flat uint8 bits (numpy packbits order); unpack with the shape."""
    return torch.from_numpy(np.packbits(masks.numpy().astype(bool).reshape(-1)))


def full_size_keys():
    """Key names and shapes of the released models' state_dicts (no tensors), for the
    converter's strict check against insplug's full-size configs."""
    from detectron2.modeling import build_model
    out = {}
    for name in ('centermask_V_39_eSE_FPN_ms_3x', 'centermask_R_50_FPN_ms_3x',
                 'centermask_lite_V_19_eSE_FPN_ms_4x'):
        cfg = base_cfg()
        cfg.merge_from_file(os.path.join(OFFICIAL, 'configs', 'centermask', name + '.yaml'))
        cfg.MODEL.WEIGHTS = ''
        model = build_model(cfg)
        out[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--official-repo', required=True, help='centermask2 checkout')
    ap.add_argument('--detectron2-repo', required=True, help='detectron2 source checkout '
                    '(Python sources only; not built)')
    ap.add_argument('--deps', nargs='*', default=[], help='extra sys.path entries (fvcore, '
                    'iopath, yacs, omegaconf, ...)')
    ap.add_argument('--out', default=OUT)
    args = ap.parse_args()
    setup(args)
    global OFFICIAL
    OFFICIAL = os.path.abspath(args.official_repo)
    torch.set_num_threads(1)
    import centermask.modeling  # noqa: F401  (registers the official heads)
    gen = torch.Generator().manual_seed(20200601)
    golden = dict(full_size_keys=full_size_keys(), backbones=backbones(gen),
                  levels=level_assignment(), roi=roi_heads(gen), detector=detector(gen),
                  source='youngwanLEE/centermask2 + facebookresearch/detectron2 (Python sources)')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    torch.load(args.out, weights_only=True)
    print('wrote', args.out, os.path.getsize(args.out), 'bytes')


if __name__ == '__main__':
    main()
