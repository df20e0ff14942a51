"""Converted RefineMask / SparseInst checkpoints in insplug's detectron2 adapters.

An mmdet-layout state_dict (what ``tools/convert_checkpoint.py refinemask|sparseinst`` writes;
here the R50 mmdet models of ``configs/refinemask_r50.py`` and
``configs/sparseinst/sparseinst_r50_giam.py`` with random weights) is mapped by
``insplug.converters.<method>.to_detectron2``, written by ``save_detectron2_checkpoint`` and
loaded with detectron2's ``DetectionCheckpointer`` into the models of
``configs/detectron2/refinemask_r50_fpn_1x.yaml`` / ``sparseinst_r50_giam.yaml``: every tensor is
placed (strict) and both frameworks compute the same features, RPN / box / mask outputs
(RefineMask) and decoder outputs (SparseInst).

RefineMask's official weights are torchvision-style (stride in the 3x3 conv, RGB input with the
torchvision mean/std); the detectron2 config then needs ``MODEL.RESNETS.STRIDE_IN_1X1 False``,
``MODEL.PIXEL_MEAN/STD`` and ``INPUT.FORMAT RGB`` (passed below as overrides).
"""
import os.path as osp

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT, REPO  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402

RGB_OPTS = ['MODEL.RESNETS.STRIDE_IN_1X1', False,
            'MODEL.PIXEL_MEAN', [123.675, 116.28, 103.53],
            'MODEL.PIXEL_STD', [58.395, 57.12, 57.375], 'INPUT.FORMAT', 'RGB']


def build_pair(mm_config, d2_config, opts=()):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from insplug.detectron2.train_net import setup_cfg
    from insplug.registry import MODELS
    cfg = setup_cfg(osp.join(D2_CONFIGS, d2_config),
                    ['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', '', *opts])
    d2_model = build_model(cfg).eval()
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', mm_config))
    with DefaultScope.overwrite_default_scope('insplug'):
        mm_model = MODELS.build(mm_cfg.model).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random weights, positive BN variances
        for name, t in mm_model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
                if name.endswith('running_var') or name.endswith('bn1.weight'):
                    t.abs_().add_(0.5)
    return d2_model, mm_model


def load_converted(d2_model, mm_model, module, tmp_path):
    state = module.to_detectron2(mm_model.state_dict())
    d2_keys = set(d2_model.state_dict())
    assert set(state) == d2_keys, (sorted(set(state) - d2_keys)[:5],
                                   sorted(d2_keys - set(state))[:5])
    path = str(tmp_path / 'converted_d2.pth')
    from insplug.converters.to_detectron2 import save_detectron2_checkpoint
    from insplug.detectron2.checkpoint import SafeDetectionCheckpointer
    save_detectron2_checkpoint(state, path)
    # detectron2's own checkpointer, then insplug's (used by tools/d2_train_net.py)
    for checkpointer in (DetectionCheckpointer, SafeDetectionCheckpointer):
        with torch.no_grad():
            for value in d2_model.state_dict().values():
                value.zero_()
        checkpointer(d2_model).load(path)
        for key, value in d2_model.state_dict().items():
            assert torch.equal(value, state[key]), (checkpointer.__name__, key)


def test_sparseinst_converted_checkpoint(tmp_path):
    from insplug.converters import sparseinst
    d2_model, mm_model = build_pair('sparseinst/sparseinst_r50_giam.py', 'sparseinst_r50_giam.yaml')
    load_converted(d2_model, mm_model, sparseinst, tmp_path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = d2_model.forward_outputs(x)
        ref = mm_model.decoder(mm_model.extract_feat(x))
    for key in ('cls_logits', 'obj_logits', 'mask_logits'):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-5, msg=key)


def test_refinemask_converted_checkpoint(tmp_path):
    from mmdet.structures.bbox import bbox2roi

    from insplug.converters import refinemask
    from insplug.core.refinemask import RefineMaskNet
    d2_model, mm_model = build_pair('refinemask_r50.py', 'refinemask_r50_fpn_1x.yaml', RGB_OPTS)
    load_converted(d2_model, mm_model, refinemask, tmp_path)
    x = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        d2_feats = d2_model.backbone(x)
        mm_feats = mm_model.neck(mm_model.backbone(x))
        names = ['p2', 'p3', 'p4', 'p5', 'p6']
        for name, ref in zip(names, mm_feats):
            torch.testing.assert_close(d2_feats[name], ref, rtol=1e-4, atol=1e-5, msg=name)
        # RPN head
        obj, deltas = d2_model.proposal_generator.rpn_head([d2_feats[n] for n in names])
        cls_scores, bbox_preds = mm_model.rpn_head(mm_feats)
        for a, b in zip(obj + deltas, list(cls_scores) + list(bbox_preds)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        # box head on fixed boxes (sizes away from the FPN level boundaries)
        boxes = torch.tensor([[10.0, 12.0, 40.0, 50.0], [20.0, 8.0, 140.0, 120.0],
                              [60.0, 30.0, 100.0, 70.0]])
        levels = ['p2', 'p3', 'p4', 'p5']
        d2_box = d2_model.roi_heads.box_pooler([d2_feats[n] for n in levels], [Boxes(boxes)])
        rois = bbox2roi([boxes])
        mm_box = mm_model.roi_head.bbox_roi_extractor(mm_feats[:4], rois)
        torch.testing.assert_close(d2_box, mm_box, rtol=1e-4, atol=1e-5)
        scores, reg = d2_model.roi_heads.box_predictor(d2_model.roi_heads.box_head(d2_box))
        mm_scores, mm_reg = mm_model.roi_head.bbox_head(mm_box)
        torch.testing.assert_close(scores, mm_scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(reg, mm_reg, rtol=1e-4, atol=1e-5)
        # mask head: pooled features, semantic branch and every stage
        d2_mask = d2_model.roi_heads.mask_pooler([d2_feats[n] for n in levels], [Boxes(boxes)])
        mm_mask = mm_model.roi_head.mask_roi_extractor(mm_feats[:4], rois)
        torch.testing.assert_close(d2_mask, mm_mask, rtol=1e-4, atol=1e-5)
        labels = torch.tensor([0, 5, 79])
        # the detectron2 head's own forward takes Instances; its network is RefineMaskNet's
        d2_stages, d2_sem = RefineMaskNet.forward(d2_model.roi_heads.mask_head, d2_mask,
                                                  d2_feats['p2'], rois, labels)
        mm_stages, mm_sem = mm_model.roi_head.mask_head(mm_mask, mm_feats[0], rois, labels)
        torch.testing.assert_close(d2_sem, mm_sem, rtol=1e-4, atol=1e-5)
        for a, b in zip(d2_stages, mm_stages):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
