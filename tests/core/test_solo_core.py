"""SOLO / SOLOv2 framework-free core (insplug/core/solo) against independent references.

* mmdet 3's ``SOLOHead``, ``DecoupledSOLOHead`` and ``SOLOV2Head`` with the same weights (keys
  shared by design) and features: raw outputs (1e-5), losses (1e-5 relative; SOLOv2 with both
  dice normalisers: mmdet's per-cell sum ``dice_normalizer='cells'`` and the releases' mean over
  targets, checked through the cells / targets ratio), final scores, labels and masks (0 px);
* hand-worked positive cells (center cell +- 1 cut to the sigma box) and the decoupled head's
  (row, column) lookup;
* gradients reach every branch; odd input sizes.
(The official release's numbers are in tests/parity/test_solov2_parity.py.)
"""
import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from insplug.core.solo import (MaskFeatBranch, SOLOInstanceBranch, SOLOv2InstanceBranch,
                               flatten_levels, point_nms, positive_cells, solo_inference_single,
                               solo_losses, solo_mask_probs, solo_targets_single,
                               solo_v1_targets_single, solov2_inference_single, solov2_losses)

TOL = 1e-5
PAD = (128, 128)
GRIDS = [12, 10, 8, 6, 4]
RANGES = ((1, 24), (12, 48), (24, 96), (48, 192), (96, 2048))
STRIDES = [8, 8, 16, 32, 32]
K = 3
TEST = dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05, kernel='gaussian',
            sigma=2.0, max_per_img=30)
GN = dict(type='GN', num_groups=32, requires_grad=True)


def features(gen, batch=2, size=PAD, channels=32):
    h, w = size
    shapes = [(h // 4, w // 4), (h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
    shapes.append(((shapes[-1][0] - 1) // 2 + 1, (shapes[-1][1] - 1) // 2 + 1))
    return [torch.randn(batch, channels, a, b, generator=gen, dtype=torch.float64)
            for a, b in shapes]


def redraw(module, gen, cls_bias=-1.5):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
            else:
                p.copy_((1.0 if name.endswith('gn.weight') else 0.0)
                        + 0.1 * torch.randn(p.shape, generator=gen))
        module.conv_cls.bias.add_(cls_bias)
    return module.double()


def gt(gen, specs, size=PAD):
    h, w = size
    yy, xx = torch.arange(h)[:, None].double(), torch.arange(w)[None, :].double()
    masks = torch.stack([(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
                         & (torch.rand(h, w, generator=gen) < 0.95)
                         for cy, cx, ry, rx in specs])
    ys, xs = masks.any(2), masks.any(1)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    boxes = torch.stack([torch.where(xs, ar_w, w).min(1).values,
                         torch.where(ys, ar_h, h).min(1).values,
                         torch.where(xs, ar_w + 1, 0).max(1).values,
                         torch.where(ys, ar_h + 1, 0).max(1).values], 1).double()
    labels = torch.randint(0, K, (len(specs),), generator=gen)
    return boxes, labels, masks


SPECS = [[(30, 35, 15, 20), (75, 80, 40, 35), (100, 20, 5, 6), (64, 64, 60, 62)],
         [(20, 100, 10, 15), (50, 45, 25, 30), (115, 115, 3, 4)]]


def instance_data(boxes, labels, masks):
    return InstanceData(bboxes=boxes, labels=labels,
                        masks=BitmapMasks(masks.numpy().astype(np.uint8), *PAD))


def compare_predictions(ours, theirs):
    s, lab, m = ours
    assert len(s) == len(theirs.scores) > 0
    assert (s - theirs.scores).abs().max() <= TOL
    assert torch.equal(lab, theirs.labels)
    assert int((m != theirs.masks).sum()) == 0


@pytest.mark.parametrize('decoupled', [False, True], ids=['vanilla', 'decoupled'])
def test_solo_core_equals_mmdet(decoupled):
    from mmdet.models.dense_heads import DecoupledSOLOHead, SOLOHead
    gen = torch.Generator().manual_seed(0)
    core = redraw(SOLOInstanceBranch(32, 32, K, GRIDS, 2, decoupled), gen)
    head = (DecoupledSOLOHead if decoupled else SOLOHead)(
        num_classes=K, in_channels=32, feat_channels=32, stacked_convs=2, strides=STRIDES,
        scale_ranges=RANGES, pos_scale=0.2, num_grids=GRIDS,
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, activate=not decoupled,
                       loss_weight=3.0),
        norm_cfg=GN, test_cfg=TEST).double()
    head.test_cfg = ConfigDict(head.test_cfg)
    head.load_state_dict(core.state_dict(), strict=True)
    feats = features(gen)
    head.train()
    ours, theirs = core(feats), head(tuple(feats))
    for a_list, b_list in zip(ours, theirs):
        for a, b in zip(a_list, b_list):
            assert (a - b).abs().max() <= TOL
    gts = [gt(gen, s) for s in SPECS]
    sizes = [tuple(m.shape[-2:]) for m in ours[0]]
    targets = [solo_v1_targets_single(b, lab, m, sizes, K, GRIDS, RANGES, STRIDES)
               for b, lab, m in gts]
    if decoupled:
        losses = solo_losses(ours[0], ours[2], targets, K, mask_logits_y=ours[1])
    else:
        losses = solo_losses(ours[0], ours[1], targets, K)
    metas = [dict(img_shape=PAD, pad_shape=PAD) for _ in gts]
    ref = head.loss_by_feat(*theirs, [instance_data(*g) for g in gts], metas)
    for a, b in (('loss_ins', 'loss_mask'), ('loss_cate', 'loss_cls')):
        assert abs(float(losses[a]) - float(ref[b])) <= TOL * max(1.0, abs(float(ref[b])))
    sum(losses.values()).backward()
    for name, p in core.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # inference
    head.eval()
    sizes_in, oris = [(128, 128), (112, 96)], [(150, 160), (90, 70)]
    with torch.no_grad():
        ours = core(feats)
        cls_scores = [point_nms(c.sigmoid()) for c in ours[-1]]
        scores, _, strides = flatten_levels(cls_scores, cls_scores, STRIDES)
        probs = [solo_mask_probs(m, ours[0][0].shape[-2:]) for m in ours[:-1]]
        metas = [dict(img_shape=s, ori_shape=o) for s, o in zip(sizes_in, oris)]
        ref = head.predict_by_feat(*[list(x) for x in head(tuple(feats))], batch_img_metas=metas)
    test = dict(mask_thr=0.5, nms_pre=500, update_thr=0.05, max_per_img=30)
    for i in range(2):
        masks_in = (dict(probs_x=probs[0][i], probs_y=probs[1][i], num_grids=GRIDS) if decoupled
                    else dict(mask_probs=probs[0][i]))
        compare_predictions(solo_inference_single(scores[i], strides, img_shape=sizes_in[i],
                                                  ori_shape=oris[i], **masks_in, **test), ref[i])


def test_solov2_core_equals_mmdet():
    from mmdet.models.dense_heads import SOLOV2Head
    gen = torch.Generator().manual_seed(1)
    ins = redraw(SOLOv2InstanceBranch(32, 32, K, 32, GRIDS, 2), gen)
    mask = MaskFeatBranch(32, 32, 32, 4).double()
    head = SOLOV2Head(
        num_classes=K, in_channels=32, feat_channels=32, stacked_convs=2, strides=STRIDES,
        scale_ranges=RANGES, pos_scale=0.2, num_grids=GRIDS,
        mask_feature_head=dict(feat_channels=32, start_level=0, end_level=3, out_channels=32,
                               mask_stride=4, norm_cfg=GN),
        norm_cfg=GN, test_cfg=TEST).double()
    head.test_cfg = ConfigDict(head.test_cfg)
    sd = dict(ins.state_dict(), **{'mask_feature_head.' + k: v
                                   for k, v in mask.state_dict().items()})
    head.load_state_dict(sd, strict=True)
    feats = features(gen)
    cate, kernels = ins(feats)
    feat = mask(feats[:4])
    m_kernels, m_cate, m_feat = head(tuple(feats))
    for a, b in zip(cate + kernels + [feat], list(m_cate) + list(m_kernels) + [m_feat]):
        assert (a - b).abs().max() <= TOL
    gts = [gt(gen, s) for s in SPECS]
    targets = [solo_targets_single(b, lab, m, feat.shape[-2:], K, GRIDS, RANGES)
               for b, lab, m in gts]
    metas = [dict(img_shape=PAD, pad_shape=PAD) for _ in gts]
    ref = head.loss_by_feat(m_kernels, m_cate, m_feat, [instance_data(*g) for g in gts], metas)
    cells = solov2_losses(cate, kernels, feat, targets, K, dice_normalizer='cells')
    default = solov2_losses(cate, kernels, feat, targets, K)
    num_targets = sum(len(t['pos_index']) for img in targets for t in img)
    num_cells = sum(int(t['pos_mask'].sum()) for img in targets for t in img)
    assert num_targets > num_cells
    assert abs(float(cells['loss_ins']) - float(ref['loss_mask'])) <= TOL
    assert abs(float(default['loss_ins'])
               - float(ref['loss_mask']) * num_cells / num_targets) <= TOL
    assert abs(float(default['loss_cate']) - float(ref['loss_cls'])) <= TOL
    sum(default.values()).backward()
    assert ins.conv_kernel.weight.grad.abs().sum() > 0
    assert mask.conv_pred.conv.weight.grad.abs().sum() > 0
    sizes_in, oris = [(128, 128), (112, 96)], [(150, 160), (90, 70)]
    with torch.no_grad():
        cate, kernels = ins(feats)
        feat = mask(feats[:4])
        scores, rows, strides = flatten_levels([point_nms(c.sigmoid()) for c in cate], kernels,
                                               STRIDES)
        metas = [dict(img_shape=s, ori_shape=o) for s, o in zip(sizes_in, oris)]
        ref = head.predict_by_feat([k.detach() for k in m_kernels],
                                   [c.detach() for c in m_cate], m_feat.detach(), metas)
    for i in range(2):
        compare_predictions(solov2_inference_single(scores[i], rows[i], strides, feat[i],
                                                    sizes_in[i], oris[i], max_per_img=30),
                            ref[i])


def test_positive_cells_hand_worked():
    # 10 x 10 grid over 100 px: center (55, 31) is cell (5, 3); sigma box +- 12 px (rows) /
    # +- 2 px (columns): rows 4..6 (43 -> 4, 67 -> 6), columns 2.9 -> 2 .. 3.3 -> 3 cut to 2..3
    t = torch.tensor
    assert positive_cells(t(55.), t(31.), t(12.), t(2.), 100, 100, 10) == (4, 6, 2, 3)
    # a tiny box: only the center cell; at the border: clipped to the grid
    assert positive_cells(t(55.), t(31.), t(1.), t(1.), 100, 100, 10) == (5, 5, 3, 3)
    assert positive_cells(t(2.), t(98.), t(30.), t(30.), 100, 100, 10) == (0, 1, 8, 9)


def test_decoupled_lookup_hand_worked():
    """Cell (i, j) of level l uses row offset_l + i of y and column offset_l + j of x."""
    grids = [3, 2]
    h = w = 4
    probs_x = torch.arange(5.)[:, None, None].expand(5, h, w) / 10 + 0.5
    probs_y = torch.ones(5, h, w)
    scores = torch.zeros(13, 1)
    scores[9 + 1 * 2 + 0, 0] = 0.9  # level 1 (2 x 2), cell (1, 0): x column 3 + 0 = 3
    scores[1 * 3 + 2, 0] = 0.8  # level 0, cell (1, 2): x column 2
    strides = torch.zeros(13)
    s, lab, m = solo_inference_single(scores, strides, probs_x=probs_x, probs_y=probs_y,
                                      num_grids=grids, img_shape=(16, 16), ori_shape=(16, 16),
                                      mask_thr=0.5, nms_pre=10, update_thr=0.0, max_per_img=10)
    # maskness = the column's probability (0.8 for column 3, 0.7 for column 2)
    assert torch.allclose(s.sort(descending=True).values,
                          torch.tensor([0.9 * 0.8, 0.8 * 0.7 * np.exp(-2.0)]).float()
                          .sort(descending=True).values, atol=1e-6)


@pytest.mark.parametrize('size', [(96, 160), (160, 96)])
def test_odd_sizes(size):
    gen = torch.Generator().manual_seed(2)
    feats = features(gen, 1, size)
    cate, kernels = SOLOv2InstanceBranch(32, 32, K, 32, GRIDS, 2).double()(feats)
    feat = MaskFeatBranch(32, 32, 32, 4).double()(feats[:4])
    assert feat.shape[-2:] == (size[0] // 4, size[1] // 4)
    assert [c.shape[-1] for c in cate] == GRIDS and [k.shape[1] for k in kernels] == [32] * 5
    outs = SOLOInstanceBranch(32, 32, K, GRIDS, 2, True).double()(feats)
    assert [m.shape[1] for m in outs[0]] == GRIDS
