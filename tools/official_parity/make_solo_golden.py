"""Golden data of the official SOLO heads (WXinlong/SOLO, mmdet 1.x): ``SOLOHead`` (vanilla)
and ``DecoupledSOLOHead`` (mmdet/models/anchor_heads/{solo,decoupled_solo}_head.py).

Runs both heads on CPU in float64 at small widths (16 input channels, towers 2 x 32, 3 classes,
grids 12/10/8/6/4 with scale ranges scaled to 96 px inputs, strides 8/8/16/32/32, sigma 0.2,
dice 3.0, focal, the release's Matrix NMS test settings with at most 20 detections) on fixed
random P2-P6 features of a 2-image batch padded to 96 x 96, and saves to
``tests/fixtures/official/solo/golden.pt`` per head: the official-layout state_dict
(``bbox_head.*`` as in the released checkpoints), the training-mode outputs (float32), the
targets (``solo_target_single``: category grids with 1-based labels, positive cells in the
order of the mask targets, mask targets), the two losses and the inference (``get_seg``) of
each image (scores, 0-based labels, bit-packed masks).

Also ``solov2_release_head_keys``: every key and shape of the released SOLOv2 R-50 heads
(``SOLOv2Head`` + ``MaskFeatHead`` built at the size of configs/solov2/solov2_r50_fpn_8gpu_3x.py),
for the converter test.

    python tools/official_parity/make_solo_golden.py --official-repo /path/to/SOLO

Not run in CI. No official code is copied: the head modules are imported from
``--official-repo``. Run-time stubs written here: the packages ``mmdet``, ``mmdet.models``,
``mmdet.models.anchor_heads``, ``mmdet.models.mask_heads`` (registered without running
their ``__init__``), ``mmdet.ops``
(unused DeformConv / roi_align), ``mmdet.core`` (``multi_apply``; ``matrix_nms`` loaded from the
release's own file mmdet/core/post_processing/matrix_nms.py), ``..registry.HEADS``,
``..builder.build_loss`` (a pure-PyTorch sigmoid focal loss standing in for mmdet 1.x's CUDA op:
labels 1..C against columns 0..C-1, 0 = background, sum / avg_factor x loss_weight) and
``..utils`` (mmcv 2's ``ConvModule``, ``bias_init_with_prob``); ``mmcv.cnn.normal_init`` is
mmengine's. ``mmcv.imrescale`` is mmcv 2's (the same OpenCV resize).
"""
import argparse
import importlib.util
import math
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'solo', 'golden.pt')
K, CH, FEAT = 3, 16, 32
PAD = (96, 96)
GRIDS = [12, 10, 8, 6, 4]
RANGES = ((1, 24), (12, 48), (24, 96), (48, 192), (96, 2048))
STRIDES = [8, 8, 16, 32, 32]
TEST = dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, update_thr=0.05, kernel='gaussian',
            sigma=2.0, max_per_img=20)
IMG_SHAPES = [(96, 96), (80, 72)]
ORI_SHAPES = [(120, 130), (70, 60)]


class FocalLoss(torch.nn.Module):
    def __init__(self, use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0, **kwargs):
        super().__init__()
        self.gamma, self.alpha, self.loss_weight = gamma, alpha, loss_weight

    def forward(self, pred, labels, avg_factor=None):
        target = torch.zeros_like(pred)
        pos = labels > 0
        target[pos, labels[pos] - 1] = 1
        p = pred.sigmoid()
        pt = (1 - p) * target + p * (1 - target)
        weight = (self.alpha * target + (1 - self.alpha) * (1 - target)) * pt.pow(self.gamma)
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none') * weight
        return self.loss_weight * loss.sum() / avg_factor


def install_stubs(repo):
    import mmcv.cnn
    from mmcv.cnn import ConvModule
    from mmengine.model import normal_init, xavier_init
    mmcv.cnn.normal_init, mmcv.cnn.xavier_init = normal_init, xavier_init

    def module(name, path=None, **attrs):
        mod = types.ModuleType(name)
        if path is not None:
            mod.__path__ = [os.path.join(repo, path)]
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    def multi_apply(func, *args, **kwargs):
        from functools import partial
        results = map(partial(func, **kwargs), *args)
        return tuple(map(list, zip(*results)))

    spec = importlib.util.spec_from_file_location(
        'official_matrix_nms', os.path.join(repo, 'mmdet/core/post_processing/matrix_nms.py'))
    nms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nms)

    class Registry:
        def register_module(self, cls):
            return cls

    module('mmdet', 'mmdet')
    module('mmdet.ops', DeformConv=None, roi_align=None)
    module('mmdet.core', multi_apply=multi_apply, bbox2roi=None, matrix_nms=nms.matrix_nms)
    module('mmdet.models', 'mmdet/models')
    module('mmdet.models.anchor_heads', 'mmdet/models/anchor_heads')
    module('mmdet.models.mask_heads', 'mmdet/models/mask_heads')
    module('mmdet.models.registry', HEADS=Registry())
    module('mmdet.models.builder', build_loss=lambda cfg: FocalLoss(
        **{k: v for k, v in cfg.items() if k != 'type'}))
    module('mmdet.models.utils', ConvModule=ConvModule,
           bias_init_with_prob=lambda p: float(-math.log((1 - p) / p)))
    from mmdet.models.anchor_heads import decoupled_solo_head, solo_head, solov2_head
    from mmdet.models.mask_heads import mask_feat_head
    return (solo_head.SOLOHead, decoupled_solo_head.DecoupledSOLOHead, solov2_head.SOLOv2Head,
            mask_feat_head.MaskFeatHead)


def solov2_release_keys(solov2_cls, mask_feat_cls):
    """Keys and shapes of the released SOLOv2 R-50 heads (configs/solov2/
    solov2_r50_fpn_8gpu_3x.py: ``bbox_head`` SOLOv2Head, ``mask_feat_head`` MaskFeatHead)."""
    loss = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    bbox_head = solov2_cls(num_classes=81, in_channels=256, stacked_convs=4,
                           seg_feat_channels=512, strides=[8, 8, 16, 32, 32],
                           scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
                           sigma=0.2, num_grids=[40, 36, 24, 16, 12], ins_out_channels=256,
                           loss_ins=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
                           loss_cate=loss)
    mask_feat_head = mask_feat_cls(in_channels=256, out_channels=128, start_level=0,
                                   end_level=3, num_classes=256, norm_cfg=gn)
    return ([[f'bbox_head.{k}', list(v.shape)] for k, v in bbox_head.state_dict().items()]
            + [[f'mask_feat_head.{k}', list(v.shape)]
               for k, v in mask_feat_head.state_dict().items()])


def pack_bits(masks):
    return torch.from_numpy(np.packbits(masks.numpy().reshape(-1)))


def make_gt(gen):
    specs = [[(20, 25, 10, 14), (55, 60, 30, 26), (75, 15, 4, 5), (48, 48, 45, 46)],
             [(15, 70, 8, 11), (40, 35, 18, 22), (85, 85, 3, 3)]]
    h, w = PAD
    yy, xx = np.arange(h)[:, None], np.arange(w)[None, :]
    out = []
    for spec in specs:
        masks = np.stack([((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1)
                          & (torch.rand(h, w, generator=gen).numpy() < 0.95)
                          for cy, cx, ry, rx in spec]).astype(np.uint8)
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels = torch.randint(1, K + 1, (len(spec),), generator=gen)  # 1-based (mmdet 1.x)
        out.append((torch.tensor(boxes, dtype=torch.float64), labels, masks))
    return out


def redraw(head, gen):
    with torch.no_grad():
        for name, p in head.named_parameters():
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            else:
                p.copy_((1.0 if '.gn.' in name and name.endswith('weight') else 0.0)
                        + 0.1 * torch.randn(p.shape, generator=gen))
        cate = head.dsolo_cate if hasattr(head, 'dsolo_cate') else head.solo_cate
        cate.bias.add_(-1.5)


def run(head_cls, gen, feats, gts):
    head = head_cls(num_classes=K + 1, in_channels=CH, seg_feat_channels=FEAT, stacked_convs=2,
                    strides=STRIDES, scale_ranges=RANGES, sigma=0.2, num_grids=GRIDS,
                    cate_down_pos=0, loss_ins=dict(type='DiceLoss', use_sigmoid=True,
                                                   loss_weight=3.0),
                    loss_cate=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                   loss_weight=1.0),
                    norm_cfg=dict(type='GN', num_groups=32, requires_grad=True))
    redraw(head, gen)
    head = head.double()
    state_dict = {f'bbox_head.{k}': v.clone() for k, v in head.state_dict().items()}
    outs = head(feats)
    featmap_sizes = [m.size()[-2:] for m in outs[0]]
    targets = [head.solo_target_single(b, lab, m, featmap_sizes=featmap_sizes)
               for b, lab, m in gts]
    metas = [dict(img_shape=PAD + (3,), ori_shape=PAD + (3,), scale_factor=1.0) for _ in gts]
    cfg = types.SimpleNamespace(**TEST)
    losses = head.loss(*outs, [g[0] for g in gts], [g[1] for g in gts], [g[2] for g in gts],
                       metas, cfg)
    results = []
    with torch.no_grad():
        eval_outs = head(feats, eval=True)
        metas = [dict(img_shape=s + (3,), ori_shape=o + (3,), scale_factor=1.0)
                 for s, o in zip(IMG_SHAPES, ORI_SHAPES)]
        for res in head.get_seg(*eval_outs, metas, cfg):
            masks, labels, scores = res
            results.append(dict(scores=scores.double(), labels=labels.long(),
                                masks_packed=pack_bits(masks.bool()),
                                mask_shape=list(masks.shape)))
    return dict(
        state_dict=state_dict,
        outputs=[[t.detach().float() for t in level_list] for level_list in outs],
        targets=[dict(labels=list(tg[1]),
                      pos_index=[ind_xy[:, 0] * g + ind_xy[:, 1] if len(tg) == 4
                                 else ind.nonzero().flatten()
                                 for ind, ind_xy, g in zip(tg[2], tg[-1], GRIDS)],
                      mask_targets=[ins[ind] for ins, ind in zip(tg[0], tg[2])])
                 for tg in targets],
        losses={k: v.detach() for k, v in losses.items()},
        results=results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--official-repo', required=True)
    ap.add_argument('--out', default=OUT)
    args = ap.parse_args()
    solo_cls, decoupled_cls, solov2_cls, mask_feat_cls = install_stubs(args.official_repo)
    gen = torch.Generator().manual_seed(0)
    h, w = PAD
    shapes = [(h // 4, w // 4), (h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
    shapes.append(((shapes[-1][0] - 1) // 2 + 1, (shapes[-1][1] - 1) // 2 + 1))
    feats = [torch.randn(2, CH, a, b, generator=gen, dtype=torch.float64) for a, b in shapes]
    gts = make_gt(gen)
    out = dict(
        config=dict(num_classes=K, in_channels=CH, feat_channels=FEAT, num_grids=GRIDS,
                    scale_ranges=[list(r) for r in RANGES], strides=STRIDES, sigma=0.2,
                    test=dict(TEST), img_shapes=[list(s) for s in IMG_SHAPES],
                    ori_shapes=[list(s) for s in ORI_SHAPES], pad=list(PAD)),
        features=feats,
        gt_boxes=[g[0] for g in gts], gt_labels=[g[1] for g in gts],
        gt_masks=[torch.from_numpy(g[2]) for g in gts],
        vanilla=run(solo_cls, gen, feats, gts),
        decoupled=run(decoupled_cls, gen, feats, gts),
        solov2_release_head_keys=solov2_release_keys(solov2_cls, mask_feat_cls),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(out, args.out)
    print('saved', args.out, {h: {k: float(v) for k, v in out[h]['losses'].items()}
                              for h in ('vanilla', 'decoupled')},
          [len(r['scores']) for h in ('vanilla', 'decoupled') for r in out[h]['results']])


if __name__ == '__main__':
    main()
