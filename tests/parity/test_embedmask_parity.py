"""EmbedMask parity with the official release (yinghdb/EmbedMask "new version", e9d6142).

``tests/fixtures/official/embedmask/golden.pt`` was written by
``tools/official_parity/make_embedmask_golden.py`` from the official head, loss, post-processor
and COCO mask resizing (CPU, float64). Here the official-layout state_dict is converted with
``insplug.converters.convert_state_dict('embedmask', ...)``, loaded strictly into insplug's
``EmbedMaskHead`` built with the same settings, and run on the same inputs:

* forward (training and test mode): every output within 1e-5 (absolute; the fixture stores
  float32-rounded forward outputs, insplug runs in float64);
* targets: labels, regression targets, matched objects, the sampled point of each object and
  the mask targets: exact;
* losses (classification, GIoU, centerness, mask): within 1e-5 relative;
* post-processing: scores within 1e-5, boxes within float32 rounding (1e-6 relative: the
  official ``BoxList`` keeps boxes in float32), labels exact, the low-resolution
  log-probability maps within 1e-5 and the final masks at the original image size with 0
  differing pixels.

``golden_rev2.pt`` (same script, ``--revision 2`` on commit 28427b6) checks the options of the
earlier revision (one margin per proposal, loss inside the box padded by 10 % + 1 cell,
EMBED_DIM 8): targets, sampled points and the four losses.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.converters import convert_state_dict
from insplug.registry import MODELS

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'embedmask',
                   'golden.pt')


def unpack(packed, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy())[:n].reshape(shape).astype(bool))


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def build_head(golden):
    c = golden['config']
    interest = c['interest']
    init_default_scope('insplug')
    head = MODELS.build(dict(
        type='EmbedMaskHead', num_classes=c['num_classes'], in_channels=c['channels'],
        feat_channels=c['channels'], stacked_convs=c['num_convs'], strides=c['strides'],
        sizes_of_interest=interest, embed_dim=c['embed_dim'], prior_margin=c['prior_margin'],
        per_dim_margin=c['per_dim_margin'],
        mask_scale_factor=c['mask_scale_factor'], box_padding=c['box_padding'],
        loss_mask_weight=c['loss_mask_alpha'], mask_thr=c['mask_th'],
        margin_reduce_factor=c['margin_reduce_factor'],
        embed_reduce_factor=c['embed_reduce_factor'],
        center_sample_radius=c['center_radius'],
        test_cfg=dict(score_thr=c['inference_th'], nms_pre=c['pre_nms_top_n'],
                      nms=dict(type='nms', iou_threshold=c['nms_th']),
                      max_per_img=c['detections_per_img'])))
    sd = convert_state_dict('embedmask', golden['state_dict'])
    sd = {k[len('bbox_head.'):]: v.double() for k, v in sd.items()}
    head.load_state_dict(sd, strict=True)
    return head.double()


@pytest.fixture(scope='module')
def head(golden):
    return build_head(golden)


def gt_instances(golden):
    out = []
    for boxes, labels, packed, shape in zip(golden['gt_boxes'], golden['gt_labels'],
                                            golden['gt_masks_packed'], golden['gt_masks_shape']):
        masks = unpack(packed, shape)
        out.append(InstanceData(bboxes=boxes.double(), labels=labels - 1,  # official 1..K
                                masks=BitmapMasks(masks.numpy().astype(np.uint8), *shape[1:])))
    return out


def metas(golden):
    ph, pw = golden['pad_shape']
    return [dict(img_shape=tuple(s), ori_shape=tuple(o), pad_shape=(ph, pw),
                 batch_input_shape=(ph, pw),
                 scale_factor=(s[1] / o[1], s[0] / o[0]))
            for s, o in zip(golden['image_sizes'], golden['original_sizes'])]


def feats(golden):
    return [f.double() for f in golden['features']]


def max_abs(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def test_forward_train_and_test(golden, head):
    head.train()
    outs = head(feats(golden))
    ref = golden['train']
    for name, got in zip(['cls', 'reg', 'ctr', 'embed', 'margin'], outs[:5]):
        for lvl, (g, r) in enumerate(zip(got, ref[name])):
            assert g.shape == r.shape, (name, lvl)
            assert max_abs(g, r) < 1e-5, (name, lvl, max_abs(g, r))
    assert max_abs(outs[5], ref['pixel']) < 1e-5
    head.eval()
    with torch.no_grad():
        reg = head(feats(golden))[1]
    for g, r in zip(reg, golden['test']['reg']):
        assert max_abs(g, r) < 1e-5 * max(1.0, float(r.abs().max()))


def test_targets_sampling_and_mask_targets(golden, head):
    head.train()
    f = feats(golden)
    outs = head(f)
    sizes = [c.shape[-2:] for c in outs[0]]
    points = head._points(sizes, torch.float64, 'cpu')
    gts = gt_instances(golden)
    targets = head.get_targets(points, gts)
    ref = golden['targets']
    k = head.num_classes
    strides = head._last_targets['strides']
    for i, (labels, reg, inds) in enumerate(targets):
        official = ref['labels'][i]  # 0 background, 1..K
        assert torch.equal(torch.where(labels == k, 0, labels + 1), official)
        assert torch.equal(inds, ref['matched'][i])
        pos = inds >= 0
        # official reg targets are in pixels per image before the per-level normalisation
        assert max_abs(reg[pos] * strides[pos, None], ref['reg_targets'][i][pos]) < 1e-9
    samples = head.sample_embeddings(outs[1], outs[3], outs[4], gts)
    for i, (point, _, _) in enumerate(samples):
        assert torch.equal(point, ref['sample_index'][i]), (point, ref['sample_index'][i])
    from insplug.core.embedmask.embedding import mask_targets
    h0, w0 = outs[5].shape[-2:]
    for i, gt in enumerate(gts):
        masks = torch.from_numpy(gt.masks.masks).bool()
        got = mask_targets(masks, h0 * 8, w0 * 8, 2 * h0, 2 * w0)
        assert torch.equal(got, ref['mask_targets'][i])


def test_losses(golden, head):
    head.train()
    outs = head(feats(golden))
    losses = head.loss_by_feat(*outs, batch_gt_instances=gt_instances(golden),
                               batch_img_metas=metas(golden))
    ref = golden['losses']
    pairs = [('loss_cls', 'loss_cls'), ('loss_bbox', 'loss_reg'),
             ('loss_centerness', 'loss_centerness'), ('loss_mask', 'loss_mask')]
    for ours, theirs in pairs:
        got, want = float(losses[ours]), float(ref[theirs])
        assert got == pytest.approx(want, rel=1e-5), (ours, got, want)


def test_postprocessed_detections_and_masks(golden, head):
    head.eval()
    with torch.no_grad():
        outs = head(feats(golden))
        res = head.predict_by_feat(*outs, batch_img_metas=metas(golden), rescale=True)
    for i, (r, ref) in enumerate(zip(res, golden['detections'])):
        assert len(r) == len(ref['scores']), (i, len(r), len(ref['scores']))
        assert torch.equal(r.labels + 1, ref['labels'])
        assert max_abs(r.scores, ref['scores']) < 1e-5
        oh, ow = golden['original_sizes'][i]
        ih, iw = golden['image_sizes'][i]
        scale = torch.tensor([ow / iw, oh / ih] * 2, dtype=torch.float64)
        want = ref['boxes'].double() * scale
        # the official BoxList stores boxes in float32: agreement to float32 rounding
        assert max_abs(r.bboxes, want) < 1e-6 * float(want.abs().max())
        masks = unpack(ref['masks_packed'], ref['masks_shape'])
        assert r.masks.shape == masks.shape
        assert int((r.masks != masks).sum()) == 0


def test_low_resolution_log_probability_maps(golden, head):
    from insplug.core.embedmask.embedding import box_log_prob
    from insplug.core.embedmask.pipeline import fcos_official_detect, gather_rows
    head.eval()
    with torch.no_grad():
        outs = head(feats(golden))
    pix = torch.nn.functional.interpolate(outs[5], scale_factor=2, mode='bilinear',
                                          align_corners=False)
    for i, ref in enumerate(golden['detections']):
        # the official detections' boxes with insplug's embeddings at the same points are
        # covered by the end-to-end test above; here the map of each official detection is
        # recomputed from its box and the embeddings insplug predicts for the same point
        det = fcos_official_detect(
            [c[i].permute(1, 2, 0).reshape(-1, head.cls_out_channels) for c in outs[0]],
            [b[i].permute(1, 2, 0).reshape(-1, 4) for b in outs[1]],
            [t[i].reshape(-1) for t in outs[2]],
            head._points([c.shape[-2:] for c in outs[0]], torch.float64, 'cpu'),
            golden['image_sizes'][i], score_thr=0.05, nms_pre=30, score='product',
            nms_thr=0.6, max_per_img=10)
        logp = box_log_prob(pix[i], gather_rows(outs[3], det['point_inds'], i),
                            gather_rows(outs[4], det['point_inds'], i), det['bboxes'] / 4.0)
        assert max_abs(logp, ref['logprob']) < 1e-5


def test_converter_fills_the_released_config_strictly(golden, tmp_path):
    """A file shaped like a released checkpoint (maskrcnn-benchmark's ``{'model': ...,
    'iteration': ...}``, ``module.`` keys of the R-50 model, EMBED_DIM 16, 4 tower convs)
    converts 1:1 through ``convert_checkpoint`` with the config check, and the result loads
    strictly into the model of configs/embedmask/embedmask_r50_1x.py."""
    from mmengine.config import Config

    from insplug.converters import convert_checkpoint
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=gen) if s else torch.randn((), generator=gen)
                for k, s in golden['full_key_shapes'].items()}
    src, dst = tmp_path / 'embed_mask_R50_1x.pth', tmp_path / 'converted.pth'
    torch.save({'model': official, 'iteration': 90000}, src)
    cfg = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'embedmask',
                   'embedmask_r50_1x.py')
    converted = convert_checkpoint('embedmask', str(src), str(dst), config=cfg)
    assert len(converted) == len(official)
    init_default_scope('insplug')
    model = MODELS.build(Config.fromfile(cfg).model)
    state = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.margin_scales[3].scale.reshape(1),
                       official['module.rpn.head.margin_scales.3.scale'])
    assert torch.equal(model.neck.fpn_convs[4].conv.weight,
                       official['module.backbone.fpn.top_blocks.p7.weight'])
    assert torch.equal(model.backbone.layer4[2].bn3.running_var,
                       official['module.backbone.body.layer4.2.bn3.running_var'])


def test_converter_refuses_other_checkpoints(golden):
    from insplug.converters import ConversionError
    sd = dict(golden['state_dict'])
    with pytest.raises(ConversionError, match='not a embedmask checkpoint'):
        convert_state_dict('embedmask', {k: v for k, v in sd.items()
                                         if 'proposal_margin_pred' not in k})
    sd['rpn.head.unknown_layer.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match='unknown_layer'):
        convert_state_dict('embedmask', sd)


def test_earlier_revision_options_match_its_official_losses(golden):
    g2 = torch.load(FIXTURE.replace('golden.pt', 'golden_rev2.pt'), weights_only=True)
    assert g2['config']['per_dim_margin'] is False and g2['config']['box_padding'] == 0.1
    assert g2['inputs_from'] == 'golden.pt' and g2['feature_seed'] == golden['feature_seed']
    for key in ('features', 'gt_boxes', 'gt_labels', 'gt_masks_packed', 'gt_masks_shape'):
        g2[key] = golden[key]
    head = build_head(g2)
    assert head.conv_margin.out_channels == 1 and not hasattr(head, 'margin_scales')
    head.train()
    outs = head(feats(g2))
    gts = gt_instances(g2)
    losses = head.loss_by_feat(*outs, batch_gt_instances=gts, batch_img_metas=metas(g2))
    for i, (point, _, _) in enumerate(head.sample_embeddings(outs[1], outs[3], outs[4], gts)):
        assert torch.equal(point, g2['targets']['sample_index'][i])
    pairs = [('loss_cls', 'loss_cls'), ('loss_bbox', 'loss_reg'),
             ('loss_centerness', 'loss_centerness'), ('loss_mask', 'loss_mask')]
    for ours, theirs in pairs:
        got, want = float(losses[ours]), float(g2['losses'][theirs])
        assert got == pytest.approx(want, rel=1e-5), (ours, got, want)
