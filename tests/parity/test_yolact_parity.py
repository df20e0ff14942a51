"""YOLACT / YOLACT++ parity with the official release (dbolya/yolact), on golden data recorded by
``tools/official_parity/make_yolact_golden.py`` (official code on CPU, float64, small widths).

The official-layout state_dict is converted with ``convert_state_dict('yolact', ...)`` and loaded
strictly into insplug's mmdet ``YOLACT`` (mmdet ResNet with 1 block per stage and widths / 8,
``YOLACTFPN``, ``YOLACTBoxHead``, ``ProtoMaskHead``). Compared: training-mode forward (prototypes,
semantic logits, box / class / coefficient predictions, priors), matching targets (labels and
matched GT of every prior), every loss term (B, C, M, S, I), gradients, eval-mode forward and the
post-processed detections (classes, box and mask scores, integer boxes, full-size masks).
Tolerances: 1e-5 relative (float tensors stored as float32 in the fixture: 1e-6 relative for
those); targets and masks exactly.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.models.backbones.resnet import Bottleneck, ResNet
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

FIX = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'yolact')


class TinyResNet(ResNet):
    """mmdet's ResNet with one bottleneck per stage (the fixture's official backbone)."""
    arch_settings = {50: (Bottleneck, (1, 1, 1, 1))}


def unpack(d):
    n = int(np.prod(d['shape']))
    bits = np.unpackbits(d['bits'].numpy())[:n]
    return torch.from_numpy(bits.astype(bool)).reshape(d['shape'])


def reversed_randperm(n, *args, **kwargs):
    return torch.arange(n - 1, -1, -1)


def close(a, b, rtol=1e-5, atol=1e-6):
    a, b = a.double(), b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f'max abs diff {diff}'
    return diff


def build_model(cfg):
    from mmengine.registry import init_default_scope
    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS
    init_default_scope('insplug')
    k = cfg['num_fg']
    fpn = cfg['fpn_channels']
    model = MODELS.build(dict(
        type='YOLACT',
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(type='ResNet', depth=50, out_indices=(1, 2, 3), frozen_stages=-1,
                      norm_eval=False, style='pytorch'),
        neck=dict(type='YOLACTFPN', in_channels=[64, 128, 256], out_channels=fpn, num_extra=2),
        bbox_head=dict(type='YOLACTBoxHead', num_classes=k, in_channels=fpn, feat_channels=fpn,
                       num_protos=cfg['num_protos'], prior_scales=cfg['pred_scales'],
                       prior_ratios=cfg['aspect_ratios'], prior_max_size=cfg['img'],
                       square_anchors=cfg['square_anchors'],
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     reduction='none')),
        mask_head=dict(type='ProtoMaskHead', num_classes=k, in_channels=fpn,
                       protonet=dict(type='ProtoNetEncoder', in_channels=fpn,
                                     feat_channels=cfg['proto_channels'],
                                     num_protos=cfg['num_protos']),
                       max_masks_to_train=cfg['masks_to_train'], with_mask_iou=cfg['plus']),
        train_cfg=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, crowd_iou_thr=0.7, neg_pos_ratio=3),
        test_cfg=dict(score_thr=0.05, iou_thr=0.5, top_k=200, max_per_img=100)))
    model.backbone = TinyResNet(depth=50, stem_channels=64, base_channels=8,
                                out_indices=(1, 2, 3), norm_eval=False, style='pytorch')
    return model


@pytest.fixture(scope='module', params=['base', 'plus'])
def run(request):
    from insplug.converters import convert_state_dict
    torch.set_num_threads(1)
    g = torch.load(osp.join(FIX, f'{request.param}.pt'), weights_only=True)
    cfg = g['config']
    model = build_model(cfg)
    sd = {k: v.double() if v.is_floating_point() else v
          for k, v in convert_state_dict('yolact', g['state_dict']).items()}
    model.load_state_dict(sd, strict=True)
    model.double()
    img = g['inputs']['img'].double()
    return g, cfg, model, img


def gt_instances(g, cfg):
    n = cfg['img']
    gts, ignores, metas = [], [], []
    for b, (t, m, nc) in enumerate(zip(g['inputs']['targets'], g['inputs']['masks'],
                                       g['inputs']['num_crowds'])):
        masks = unpack(m)
        keep = len(t) - nc
        gt = InstanceData()
        gt.bboxes = t[:keep, :4] * n
        gt.labels = t[:keep, 4].long()
        gt.masks = BitmapMasks(masks[:keep].numpy().astype(np.uint8), n, n)
        gts.append(gt)
        ign = InstanceData()
        ign.bboxes = t[keep:, :4] * n
        ign.labels = t[keep:, 4].long()
        ignores.append(ign)
        oh, ow = cfg['ori_shapes'][b]
        metas.append(dict(batch_input_shape=(n, n), img_shape=(n, n), ori_shape=(oh, ow),
                          scale_factor=(n / ow, n / oh)))
    return gts, ignores, metas


def test_training_forward_targets_losses_and_grads(run, monkeypatch):
    from insplug.core.prototypes import yolact as Y
    g, cfg, model, img = run
    model.train()
    model.zero_grad()
    feats = model.extract_feat(img)
    head, mhead = model.bbox_head, model.mask_head
    cls_scores, bbox_preds, coeff_preds = head(feats)
    protos, segm = mhead(feats)
    t = g['train']
    diffs = {}
    diffs['proto'] = close(protos.permute(0, 2, 3, 1), t['proto'])
    diffs['segm'] = close(segm, t['segm'])
    k = cfg['num_fg']
    cls = head._flatten(cls_scores, k + 1)
    diffs['conf'] = close(torch.cat([cls[..., -1:], cls[..., :-1]], -1), t['conf'])
    diffs['loc'] = close(head._flatten(bbox_preds, 4), t['loc'])
    diffs['coeff'] = close(head._flatten(coeff_preds, cfg['num_protos']), t['mask'])
    priors = head.priors([tuple(c.shape[-2:]) for c in cls_scores], img.device, img.dtype)
    if 'priors' in t:
        diffs['priors'] = close(priors, t['priors'], rtol=1e-6, atol=1e-7)

    # matching targets: labels (official: 0 background, c + 1, -1 neutral) and matched GT
    gts, ignores, metas = gt_instances(g, cfg)
    n_neutral_crowd = 0
    for b in range(2):
        rel = gts[b].bboxes / cfg['img']
        crowd = ignores[b].bboxes / cfg['img'] if len(ignores[b]) else None
        labels, inds = Y.match_priors(rel, gts[b].labels, priors, k, crowd)
        conf_t = g['targets']['conf_t'][b].long()
        official = torch.where(conf_t == 0, torch.full_like(conf_t, k),
                               torch.where(conf_t > 0, conf_t - 1, conf_t))
        assert torch.equal(labels, official)
        pos = labels < k
        pos &= labels >= 0
        assert torch.equal(inds[pos], g['targets']['idx_t'][b].long()[pos])
        if crowd is not None:
            no_crowd, _ = Y.match_priors(rel, gts[b].labels, priors, k, None)
            n_neutral_crowd += int(((labels == -1) & (no_crowd == k)).sum())
    assert n_neutral_crowd > 0, 'the fixture should exercise the crowd rule'

    monkeypatch.setattr(torch, 'randperm', reversed_randperm)
    losses = head.loss_by_feat(cls_scores, bbox_preds, coeff_preds, gts, metas, ignores)
    infos = head.get_positive_infos()
    assert max(len(i) for i in infos) > cfg['masks_to_train'], 'subsampling not exercised'
    losses.update(mhead.loss_by_feat(protos, segm, gts, metas, infos))
    names = dict(B='loss_bbox', C='loss_cls', M='loss_mask', S='loss_segm', I='loss_mask_iou')
    assert set(g['losses']) == {k for k, v in names.items() if v in losses}
    for key, ref in g['losses'].items():
        diffs['loss_' + key] = close(losses[names[key]], ref, rtol=1e-9, atol=1e-10)
    sum(losses.values()).backward()
    gr = g['grads']
    diffs['grad_proto0'] = close(mhead.protonet.convs[0][0].weight.grad,
                                 gr['proto_net.0.weight'])
    diffs['grad_coeff'] = close(head.conv_coeff.weight.grad,
                                gr['prediction_layers.0.mask_layer.weight'])
    if cfg['plus']:   # the mask-IoU loss alone reaches the prototypes (not detached)
        model.zero_grad()
        feats = model.extract_feat(img)     # the official ran a second training forward
        cls_scores, bbox_preds, coeff_preds = head(feats)
        protos, segm = mhead(feats)
        head.loss_by_feat(cls_scores, bbox_preds, coeff_preds, gts, metas, ignores)
        li = mhead.loss_by_feat(protos, segm, gts, metas, head.get_positive_infos())
        li['loss_mask_iou'].backward()
        assert mhead.protonet.proto_conv.weight.grad.abs().sum() > 0
        diffs['grad_I_proto'] = close(mhead.protonet.proto_conv.weight.grad,
                                      gr['I:proto_net.10.weight'])
    print({k: f'{v:.2e}' for k, v in diffs.items()})

    # ------------------------------------------------------------------ eval + postprocess
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(img)
        cls_scores, bbox_preds, coeff_preds = head(feats)
        protos, _ = mhead(feats)
        e = g['eval']
        close(protos.permute(0, 2, 3, 1), e['proto'])
        if 'conf' in e:
            cls = torch.softmax(head._flatten(cls_scores, k + 1), -1)
            close(torch.cat([cls[..., -1:], cls[..., :-1]], -1), e['conf'])
        results = head.predict_by_feat(cls_scores, bbox_preds, coeff_preds, metas,
                                       rescale=False)
        out = mhead.predict_by_feat(protos, None, results, metas, rescale=True)
    for b, (res, post) in enumerate(zip(out, g['post'])):
        boxes = post['boxes']
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        assert torch.equal(res.labels, post['classes'][keep])
        close(res.scores, post['box_scores'][keep], rtol=1e-9, atol=1e-12)
        if cfg['plus']:
            close(res.mask_scores, post['mask_scores'][keep], rtol=1e-9, atol=1e-12)
            assert not torch.allclose(post['box_scores'], post['mask_scores'])
        assert torch.equal(res.bboxes.long(), boxes[keep])
        masks = unpack(post['masks'])[keep]
        assert res.masks.shape == masks.shape
        assert int((res.masks != masks).sum()) == 0
        assert tuple(masks.shape[-2:]) == tuple(cfg['ori_shapes'][b])
