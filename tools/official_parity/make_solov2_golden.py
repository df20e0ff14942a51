"""Golden data of the official SOLOv2 for detectron2 (aim-uofa/AdelaiDet, adet/modeling/solov2).

Runs on CPU, in float64 (the targets are float32 as in the release), the official ``SOLOv2``
meta-architecture with a small head (FPN width 16, instance tower 32, mask tower 32, 32 mask
channels / kernel length, 3 classes; the official grids, strides, scale ranges, sigma, loss and
test settings but at most 20 detections) and a stand-in backbone that returns fixed random
P2-P6 features (so the fixture holds no trunk weights), and saves to
``tests/fixtures/official/solov2/golden.pt``:

* inputs: the features, images' sizes, the gt boxes / classes / bitmasks of two images
  (un-padded, as AdelaiDet's loader gives them);
* ``state_dict``: the official-layout head weights (``ins_head.*``, ``mask_head.*``);
* forward: ``cate_pred``, ``kernel_pred`` (5 levels, saved in float32 to keep the file small)
  and ``mask_pred``;
* targets (``get_ground_truth``): per image and level the category grid, the positive
  indices in order and the mask targets;
* losses: ``loss_ins``, ``loss_cate``;
* inference (eval mode, one image per batch as in the official evaluation): scores, classes and
  masks at the requested output size (bit-packed: ``numpy.packbits`` of the flattened masks);
* ``matrix_nms`` (adet/modeling/solov2/utils.py) on a hand-made candidate set;
* ``release_keys``: every key and shape of the released R-50 model (``SOLOv2_R50_3x.pth``
  layout: the official model built from configs/SOLOv2/R50_3x.yaml), for the converter test.

    PYTHONPATH=. python tools/official_parity/make_solov2_golden.py --official-repo /path/AdelaiDet

Needs detectron2 and fvcore (the official code imports them); AdelaiDet's compiled ops are not
needed: the ``adet`` and ``adet.modeling`` packages are registered without running their
``__init__`` (which imports every AdelaiDet model and its ops). No official code is copied.
"""
import argparse
import os
import sys
import types

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'solov2', 'golden.pt')
NUM_CLASSES, FPN_CH, INS_CH, MASK_CH, NUM_MASKS = 3, 16, 32, 32, 32
MAX_PER_IMG = 20
PAD = (128, 160)                      # padded batch input (divisible by 32)
IMAGE_SIZES = [(128, 160), (112, 136)]
ORI_SIZES = [(192, 240), (140, 170)]  # output sizes requested at inference


def import_official(repo):
    for name, sub in (('adet', 'adet'), ('adet.modeling', 'adet/modeling')):
        mod = types.ModuleType(name)
        mod.__path__ = [os.path.join(repo, sub)]
        sys.modules[name] = mod
    sys.path.insert(0, repo)
    from adet.config import get_cfg
    from adet.modeling.solov2 import solov2, utils
    return get_cfg, solov2, utils


class FixedFeatures(nn.Module):
    """Stand-in backbone: returns the given P2-P6 features whatever the image."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats
        self.size_divisibility = 32

    def forward(self, x):
        return dict(self.feats)


def make_masks(gen):
    """Gt instances of two images (boxes of the masks, classes) covering levels 0-2."""
    from detectron2.structures import BitMasks, Instances
    out = []
    specs = [
        [(10, 20, 60, 90, 0), (40, 30, 120, 150, 1), (70, 5, 100, 40, 2), (0, 100, 127, 159, 1),
         (5, 5, 9, 9, 2)],
        [(20, 10, 50, 60, 2), (15, 40, 110, 130, 0), (60, 60, 70, 75, 1)],
    ]
    for (h, w), boxes in zip(IMAGE_SIZES, specs):
        masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
        cls = []
        for i, (y0, x0, y1, x1, c) in enumerate(boxes):
            yy = torch.arange(h)[:, None].double()
            xx = torch.arange(w)[None, :].double()
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            ry, rx = max((y1 - y0) / 2, 1), max((x1 - x0) / 2, 1)
            ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            noise = torch.rand(h, w, generator=gen) < 0.9
            masks[i] = ell & noise & (yy < h) & (xx < w)
            cls.append(c)
        inst = Instances((h, w))
        bm = BitMasks(masks)
        inst.gt_boxes = bm.get_bounding_boxes()
        inst.gt_classes = torch.tensor(cls, dtype=torch.int64)
        inst.gt_masks = bm
        out.append(inst)
    return out


def pack_bits(masks):
    """bool (N, H, W) -> uint8 of numpy.packbits over the flattened masks (8x smaller)."""
    import numpy as np
    return torch.from_numpy(np.packbits(masks.numpy().reshape(-1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--official-repo', required=True)
    ap.add_argument('--out', default=OUT)
    args = ap.parse_args()
    get_cfg, solov2, utils = import_official(args.official_repo)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    # the released model's full key layout
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(args.official_repo, 'configs/SOLOv2/R50_3x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    release = solov2.SOLOv2(cfg)
    release_keys = [[k, list(v.shape)] for k, v in release.state_dict().items()]
    del release

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(args.official_repo, 'configs/SOLOv2/R50_3x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = FPN_CH
    s = cfg.MODEL.SOLOV2
    s.NUM_CLASSES = NUM_CLASSES
    s.INSTANCE_IN_CHANNELS = s.MASK_IN_CHANNELS = FPN_CH
    s.INSTANCE_CHANNELS, s.MASK_CHANNELS = INS_CH, MASK_CH
    s.NUM_KERNELS = s.NUM_MASKS = NUM_MASKS
    s.MAX_PER_IMG = MAX_PER_IMG
    model = solov2.SOLOv2(cfg)
    shapes = [(PAD[0] // st, PAD[1] // st) for st in (4, 8, 16, 32)]
    shapes.append(((shapes[-1][0] - 1) // 2 + 1, (shapes[-1][1] - 1) // 2 + 1))
    feats = {f'p{i + 2}': torch.randn(2, FPN_CH, h, w, generator=gen, dtype=torch.float64)
             for i, (h, w) in enumerate(shapes)}
    model.backbone = FixedFeatures(feats)
    with torch.no_grad():  # varied weights so that scores pass the thresholds
        for name, p in model.named_parameters():
            if name.endswith('weight') and p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            elif 'norm' in name or p.dim() == 1:
                base = 1.0 if name.endswith('weight') and 'pred' not in name else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
        model.ins_head.cate_pred.bias.add_(-1.5)
    model = model.double()
    state_dict = {k: v.clone() for k, v in model.state_dict().items()}

    instances = make_masks(gen)
    images = [torch.zeros(3, h, w) for h, w in IMAGE_SIZES]
    batched = [dict(image=im, instances=inst, height=oh, width=ow)
               for im, inst, (oh, ow) in zip(images, instances, ORI_SIZES)]

    # forward of the heads
    ins_feats = model.split_feats([feats[f] for f in s.INSTANCE_IN_FEATURES])
    cate_pred, kernel_pred = model.ins_head(ins_feats)
    mask_pred = model.mask_head([feats[f] for f in s.MASK_IN_FEATURES])

    # targets and losses (train mode: model.forward)
    model.train()
    targets = model.get_ground_truth([b['instances'] for b in batched], mask_pred.shape[-2:])
    ins_label_list, cate_label_list, ins_ind_label_list, grid_order_list = targets
    losses = model(batched)

    # inference, one image per batch (the official evaluation)
    model.eval()
    results = []
    with torch.no_grad():
        for i, b in enumerate(batched):
            one = FixedFeatures({k: v[i:i + 1, :, :(PAD[0] if i == 0 else v.shape[2]),
                                     :v.shape[3]] for k, v in feats.items()})
            model.backbone = one
            r = model([dict(image=b['image'], height=b['height'], width=b['width'])])[0]
            r = r['instances']
            masks = r.pred_masks.bool()
            results.append(dict(scores=r.scores.double(), classes=r.pred_classes.long(),
                                masks_packed=pack_bits(masks), mask_shape=list(masks.shape)))

    # Matrix NMS on a hand-made set
    nms_masks = torch.rand(12, 20, 20, generator=gen) > 0.5
    nms_masks[3] = nms_masks[1]
    nms_masks[5, :, :10] = False
    nms_labels = torch.tensor([0, 1, 1, 1, 0, 2, 2, 0, 1, 1, 2, 0])
    nms_scores = torch.rand(12, generator=gen, dtype=torch.float64).sort(descending=True)[0]
    nms_areas = nms_masks.sum((1, 2)).double()
    nms_out = {k: utils.matrix_nms(nms_labels, nms_masks, nms_areas, nms_scores, sigma=2.0,
                                   kernel=k) for k in ('gaussian', 'linear')}

    out = dict(
        config=dict(num_classes=NUM_CLASSES, fpn_channels=FPN_CH, instance_channels=INS_CH,
                    mask_channels=MASK_CH, num_masks=NUM_MASKS, max_per_img=MAX_PER_IMG,
                    num_grids=list(s.NUM_GRIDS),
                    strides=list(s.FPN_INSTANCE_STRIDES),
                    scale_ranges=[list(r) for r in s.FPN_SCALE_RANGES], sigma=s.SIGMA),
        features=[feats[f'p{i}'] for i in range(2, 7)],
        image_sizes=[list(x) for x in IMAGE_SIZES], ori_sizes=[list(x) for x in ORI_SIZES],
        gt_boxes=[b['instances'].gt_boxes.tensor for b in batched],
        gt_classes=[b['instances'].gt_classes for b in batched],
        gt_masks=[b['instances'].gt_masks.tensor for b in batched],
        state_dict=state_dict,
        cate_pred=[c.detach() for c in cate_pred],
        kernel_pred=[k.detach().float() for k in kernel_pred],
        mask_pred=mask_pred.detach(),
        targets=[[dict(labels=cate_label_list[i][lvl],
                       pos_index=torch.tensor(grid_order_list[i][lvl], dtype=torch.int64),
                       mask_targets=ins_label_list[i][lvl])
                  for lvl in range(len(s.NUM_GRIDS))] for i in range(len(batched))],
        losses={k: v.detach() for k, v in losses.items()},
        results=results,
        nms=dict(masks=nms_masks, labels=nms_labels, scores=nms_scores,
                 gaussian=nms_out['gaussian'], linear=nms_out['linear']),
        release_keys=release_keys,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(out, args.out)
    print('saved', args.out, {k: float(v) for k, v in out['losses'].items()},
          [len(r['scores']) for r in results])


if __name__ == '__main__':
    main()
