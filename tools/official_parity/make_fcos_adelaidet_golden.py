"""Golden data of AdelaiDet's FCOS (aim-uofa/AdelaiDet, adet/modeling/fcos/), the FCOS that
BlendMask (and, with other settings, CondInst/MEInst) runs on.

Runs, on CPU in float64, the official ``FCOS`` proposal generator (``FCOSHead`` forward,
``FCOSOutputs._get_ground_truth`` targets, ``fcos_losses``, ``predict_proposals``) at small
widths (32 channels, 2 tower convs, 3 classes, 128 x 160 input, sizes of interest
[16, 32, 64, 128]) on 3 images (one without objects), for two
settings:

* ``blendmask``: Base-BlendMask.yaml (``USE_SCALE: False``, ``THRESH_WITH_CTR: True``), GIoU;
* ``default``: AdelaiDet's defaults (``USE_SCALE: True``, ``THRESH_WITH_CTR: False``) with
  ``LOC_LOSS_TYPE: iou``;

with a BlendMask-style top module (conv3x3 on the box tower). Saves inputs, the official-layout
state_dict (``proposal_generator.fcos_head.*``, ``top_layer.*``, as in a BlendMask checkpoint)
and outputs to ``tests/fixtures/official/fcos_adelaidet/{blendmask,default}.pt``::

    python tools/official_parity/make_fcos_adelaidet_golden.py \\
        --official-repo /path/to/AdelaiDet --detectron2-repo /path/to/detectron2 \\
        [--extra-path /path/with/fvcore:iopath:cloudpickle:omegaconf]

Not run in CI. Nothing official is copied here: AdelaiDet and detectron2 are imported from
their source trees (detectron2 is NOT built: its pure-Python modules suffice on CPU, torchvision
provides NMS / RoIAlign). The only run-time stubs are empty modules for AdelaiDet's compiled
``adet._C`` and for ``skimage`` (imported by CondInst/BoxInst, unused here).
"""
import argparse
import os
import sys
import types

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', 'tests', 'fixtures', 'official')

NUM_CLASSES = 3
CH = 32
NUM_CONVS = 2
TOP_CH = 8
STRIDES = [8, 16, 32, 64, 128]
PAD_H, PAD_W = 128, 160
IMAGE_SIZES = [(128, 150), (115, 160), (128, 160)]
SIZES_OF_INTEREST = [16, 32, 64, 128]  # official [64, 128, 256, 512], scaled to the small images
# (x1, y1, x2, y2, class); the third image has no object
GT = [
    [(5, 6, 20, 25, 0), (15, 10, 125, 120, 1), (50, 30, 95, 70, 2), (52, 35, 85, 65, 0),
     (100, 75, 148, 125, 1), (60.5, 15.25, 71.75, 30.5, 2)],
    [(2, 2, 150, 112, 2), (30, 20, 50, 35, 1), (75, 50, 115, 105, 0)],
    [],
]


def setup_official(adelaidet, detectron2, extra_paths=()):
    """Put the official trees on sys.path with the two empty stub modules."""
    for p in (detectron2, adelaidet):
        sys.path.insert(0, os.path.abspath(p))
    sys.path.extend(extra_paths)
    for name in ('adet._C', 'skimage', 'skimage.color'):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules['skimage'].color = sys.modules['skimage.color']
    import detectron2.modeling  # noqa: F401  (registries)
    import adet.modeling  # noqa: F401


def randomize_(module, gen, cls_bias=-2.0, reg_bias=1.5):
    """Non-degenerate random weights so that thresholds, top-k and NMS all bite."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if name.endswith('scale'):
                p.copy_(1 + 0.2 * torch.rand(p.shape, generator=gen, dtype=p.dtype))
            elif p.dim() == 1 and ('tower' in name and '.weight' in name):   # GN weight
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    head = module.fcos_head
    with torch.no_grad():
        head.cls_logits.bias.add_(cls_bias)
        head.bbox_pred.bias.add_(reg_bias)


def make_case(name, use_scale, thresh_with_ctr, loc_loss, seed):
    from adet.config import get_cfg
    from adet.modeling.fcos.fcos import FCOS
    from detectron2.layers import ShapeSpec
    from detectron2.structures import Boxes, ImageList, Instances

    cfg = get_cfg()
    f = cfg.MODEL.FCOS
    f.NUM_CLASSES = NUM_CLASSES
    f.NUM_CLS_CONVS = NUM_CONVS
    f.NUM_BOX_CONVS = NUM_CONVS
    f.USE_SCALE = use_scale
    f.THRESH_WITH_CTR = thresh_with_ctr
    f.LOC_LOSS_TYPE = loc_loss
    f.PRE_NMS_TOPK_TEST = 40
    f.SIZES_OF_INTEREST = SIZES_OF_INTEREST
    f.POST_NMS_TOPK_TEST = 15
    gen = torch.Generator().manual_seed(seed)
    shapes = {f'p{i + 3}': ShapeSpec(channels=CH, stride=s) for i, s in enumerate(STRIDES)}
    fcos = FCOS(cfg, shapes)
    top_layer = nn.Conv2d(CH, TOP_CH, 3, padding=1)
    holder = nn.Module()
    holder.proposal_generator, holder.top_layer = fcos, top_layer
    randomize_(fcos, gen)
    holder.double()
    feats = {}
    for i, s in enumerate(STRIDES):
        h, w = -(-PAD_H // s), -(-PAD_W // s)
        feats[f'p{i + 3}'] = torch.randn(len(IMAGE_SIZES), CH, h, w, generator=gen,
                                         dtype=torch.float64)
    images = ImageList(torch.zeros(len(IMAGE_SIZES), 3, PAD_H, PAD_W, dtype=torch.float64),
                       IMAGE_SIZES)
    gts = []
    for size, objs in zip(IMAGE_SIZES, GT):
        inst = Instances(size)
        inst.gt_boxes = Boxes(torch.tensor([o[:4] for o in objs], dtype=torch.float64)
                              .reshape(-1, 4))
        inst.gt_classes = torch.tensor([o[4] for o in objs], dtype=torch.long)
        gts.append(inst)

    fcos.train()
    results, losses = fcos(images, feats, gts, top_layer)
    locations = fcos.compute_locations([feats[k] for k in fcos.in_features])
    tt = fcos.fcos_outputs._get_ground_truth(locations, gts)
    n = len(IMAGE_SIZES)
    labels = torch.cat([x.reshape(n, -1) for x in tt['labels']], 1)
    reg_t = torch.cat([x.reshape(n, -1, 4) for x in tt['reg_targets']], 1)
    inds = torch.cat([x.reshape(n, -1) for x in tt['target_inds']], 1)
    offsets = torch.tensor([0] + [len(g) for g in gts[:-1]]).cumsum(0)
    inds = torch.where(labels == NUM_CLASSES, torch.full_like(inds, -1), inds - offsets[:, None])
    inst = results['instances']
    out = dict(
        config=dict(num_classes=NUM_CLASSES, channels=CH, num_convs=NUM_CONVS,
                    top_channels=TOP_CH, strides=STRIDES, use_scale=use_scale,
                    thresh_with_ctr=thresh_with_ctr, loc_loss_type=loc_loss,
                    score_thr=f.INFERENCE_TH_TEST, nms_pre=f.PRE_NMS_TOPK_TEST,
                    nms_thr=f.NMS_TH, max_per_img=f.POST_NMS_TOPK_TEST,
                    sizes_of_interest=list(f.SIZES_OF_INTEREST), radius=f.POS_RADIUS),
        state_dict={k: v.clone() for k, v in holder.state_dict().items()},  # float64
        features=[feats[k] for k in fcos.in_features],
        image_sizes=[list(s) for s in IMAGE_SIZES],
        gt_boxes=[g.gt_boxes.tensor for g in gts], gt_labels=[g.gt_classes for g in gts],
        # targets, image-major: (N, P) / (N, P, 4), P = all levels' points
        target_labels=labels, target_reg=reg_t, target_gt_inds=inds,
        locations=torch.cat(locations),
        losses={k: v.detach() for k, v in losses.items()},
        pos_inds=inst.pos_inds, pos_gt_inds=inst.gt_inds, pos_im_inds=inst.im_inds,
        pos_ctr_targets=inst.gt_ctrs.detach(), pos_top_feats=inst.top_feats.detach(),
        loss_denorm=float(results['loss_denorm']),
    )
    # inference in float32: detectron2's batched_nms casts the boxes (not the scores) to float32
    fcos.eval()
    holder.float()
    with torch.no_grad():
        preds, _ = fcos(images, {k: v.float() for k, v in feats.items()}, None, top_layer)
    out['pred'] = [dict(boxes=p.pred_boxes.tensor, scores=p.scores, labels=p.pred_classes,
                        locations=p.locations, levels=p.fpn_levels, top_feats=p.top_feat)
                   for p in preds]
    path = os.path.join(FIXTURES, 'fcos_adelaidet', f'{name}.pt')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(out, path)
    print(name, {k: float(v) for k, v in losses.items()},
          [len(p) for p in preds], 'positives', len(inst.pos_inds), '->', path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--official-repo', required=True, help='AdelaiDet source tree')
    ap.add_argument('--detectron2-repo', required=True, help='detectron2 source tree')
    ap.add_argument('--extra-path', default='', help='extra sys.path entries (os.pathsep)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    setup_official(args.official_repo, args.detectron2_repo,
                   [p for p in args.extra_path.split(os.pathsep) if p])
    make_case('blendmask', use_scale=False, thresh_with_ctr=True, loc_loss='giou', seed=0)
    make_case('default', use_scale=True, thresh_with_ctr=False, loc_loss='iou', seed=1)


if __name__ == '__main__':
    main()
