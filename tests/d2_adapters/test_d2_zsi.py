"""ZSI's zero-shot Mask R-CNN through detectron2 (``ZSIRCNN``, ``ZSIBackgroundAwareRPN``,
``ZSIROIHeads``, ``ZSISemanticMaskRCNNHead``).

* ``configs/detectron2/zsi_r18_shapes.yaml`` builds; the yacs keys reach the modules (mode,
  label map, class vectors, synchronized background switches, mask trunk);
* agreement with the mmdet adapter (``configs/demo/zsi_r18_shapes.py``): the mmdet model's
  random weights go through ``insplug.converters.zsi.to_detectron2`` and load strictly; on the
  same batch of the seen-class view of the shapes set (``register_class_split``) both give the
  same FPN features, RPN outputs (objectness ``fg - bg`` of the softmax pair, deltas) and
  proposals, the same six training losses (every anchor and RoI sampled, so that no random
  draw differs; 1e-5), and in each of the seen / ZSI / GZSI modes the same detections (labels
  after the GZSI label map, scores and boxes 1e-5) and pasted masks (0 differing pixels);
* the synchronized background: the heads score against the RPN's background (mean of the
  ``vec_fb`` background rows), not the file's.
"""
import os.path as osp

import pytest

# d2_utils imports no detectron2
from d2_utils import (D2_CONFIGS, INSTALL_HINT, REPO, d2_cfg, first_batch,
                      mmdet_samples)

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.modeling import META_ARCH_REGISTRY, build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from insplug.core.zsi.vectors import shapes_demo_vectors  # noqa: E402
from insplug.detectron2.zsi import register_class_split  # noqa: E402
from insplug.detectron2.zsi_model import ZSIRCNN  # noqa: E402

CONFIG = 'zsi_r18_shapes.yaml'
ALL = 100000  # sample every anchor / RoI: no random draw in either framework
# mmdet loss name -> detectron2 loss name
LOSSES = {'loss_rpn_cls': 'loss_rpn_cls', 'loss_rpn_bbox': 'loss_rpn_loc',
          'loss_cls': 'loss_cls', 'loss_bbox': 'loss_box_reg', 'loss_mask': 'loss_mask',
          'loss_mask_ed': 'loss_mask_ed'}
GZSI_LABEL_MAP = [1, 2, 3, 4, 0]  # any permutation: both frameworks apply it after the masks


@pytest.fixture(scope='module')
def seen_split(d2_shapes):
    return dict(train=register_class_split('d2test_zsi_train_seen', d2_shapes['train'],
                                           unseen_names=['ring']),
                val=register_class_split('d2test_zsi_val_seen', d2_shapes['val'],
                                         unseen_names=['ring']))


def zsi_cfg(d2_shapes, split, *opts):
    return d2_cfg(CONFIG, d2_shapes, 'DATASETS.TRAIN', (split['train'],),
                  'DATASETS.TEST', (split['val'],), *opts)


def test_registered_and_yaml_keys(d2_shapes, seen_split):
    assert META_ARCH_REGISTRY.get('ZSIRCNN') is ZSIRCNN
    cfg = zsi_cfg(d2_shapes, seen_split, 'MODEL.INSPLUG.ZSI.MODE', 'gzsi',
                  'MODEL.INSPLUG.ZSI.LABEL_MAP', GZSI_LABEL_MAP,
                  'MODEL.INSPLUG.ZSI.MASK_SYNC_BG', False)
    model = build_model(cfg)
    heads = model.roi_heads
    assert heads.box_predictor.mode == heads.mask_head.mode == 'gzsi'
    assert heads.label_map == GZSI_LABEL_MAP
    assert model.proposal_generator.anchor_matcher.min_pos_iou == 0.3
    assert model.bbox_sync_bg and not model.mask_sync_bg
    assert torch.equal(heads.box_predictor.class_vectors, shapes_demo_vectors())
    assert len(heads.mask_head.semantic.convs) == 2
    assert heads.mask_head.semantic.convs[0].conv.out_channels == 64
    # the RPN's background rows start at the file's background embedding
    w = model.proposal_generator.rpn_head.vec_fb.weight
    assert torch.equal(w[0::2, :, 0, 0], shapes_demo_vectors()[:, 0].expand(3, -1))
    with pytest.raises(ValueError, match='MODE'):
        build_model(zsi_cfg(d2_shapes, seen_split, 'MODEL.INSPLUG.ZSI.MODE', 'unseen'))


def test_rpn_low_quality_matches_need_the_release_min_iou():
    """Hand-worked: ground truth 0's best anchor has IoU 0.2 (< 0.3: stays negative, as the
    release's MaxIoUAssigner), ground truth 1's best has 0.4 (positive by the low-quality rule);
    detectron2's stock matcher would make both positive."""
    from detectron2.modeling.matcher import Matcher

    from insplug.detectron2.zsi_model import MinIoULowQualityMatcher
    iou = torch.tensor([[0.2, 0.1, 0.0, 0.0],
                        [0.0, 0.0, 0.4, 0.8]])
    iou_low = torch.tensor([[0.2, 0.1, 0.0, 0.0],
                            [0.0, 0.0, 0.4, 0.1]])
    ours = MinIoULowQualityMatcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    stock = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    assert ours(iou)[1].tolist() == [0, 0, -1, 1]
    assert ours(iou_low)[1].tolist() == [0, 0, 1, 0]
    assert stock(iou_low)[1].tolist() == [1, 0, 1, 0]
    assert ours(torch.zeros(0, 4))[1].tolist() == [0, 0, 0, 0]


def test_train_step_and_synchronized_background(d2_shapes, seen_split):
    cfg = zsi_cfg(d2_shapes, seen_split)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = first_batch(cfg, train=True, batch_size=2)
    assert all(int(b['instances'].gt_classes.max()) < 4 for b in batch)  # seen labels only
    rpn = model.proposal_generator.rpn_head
    with torch.no_grad():  # as after some learning: the background rows left the file's value
        rpn.vec_fb.weight[0::2] += 0.1 * torch.randn_like(rpn.vec_fb.weight[0::2])
    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == set(LOSSES.values())
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    assert rpn.vec_fb.weight.grad.abs().sum() > 0
    pred = model.roi_heads.box_predictor
    assert pred.fc_semantic.weight.grad.abs().sum() > 0
    assert model.roi_heads.mask_head.semantic.kernel_semantic.weight.grad.abs().sum() > 0
    # the heads' background column is the mean of the RPN's background rows, not the file's
    bg = rpn.vec_fb.weight.detach()[0::2, :, 0, 0].mean(0)
    vec, vec_unseen = pred.split_vectors()
    assert torch.allclose(vec[:, 0], bg, atol=1e-6) and torch.allclose(vec_unseen[:, 0], bg,
                                                                        atol=1e-6)
    assert not torch.allclose(bg, shapes_demo_vectors()[:, 0], atol=1e-3)
    assert torch.equal(vec[:, 1:], shapes_demo_vectors()[:, 1:5])


# --------------------------------------------------------------------------- mmdet agreement
def make_twins(d2_shapes, seen_split, vocabulary_size=0):
    """mmdet demo model (random weights) and the detectron2 yaml model with its converted
    weights; every anchor and RoI sampled in training."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from insplug.converters.zsi import to_detectron2
    from insplug.registry import MODELS
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', 'zsi_r18_shapes.py'))
    mm_cfg.model.train_cfg.rpn.sampler.num = ALL
    mm_cfg.model.train_cfg.rcnn.sampler.num = ALL
    opts = ['MODEL.RPN.BATCH_SIZE_PER_IMAGE', ALL, 'MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE', ALL]
    if vocabulary_size:
        mm_cfg.model.roi_head.bbox_head.update(vocabulary_size=vocabulary_size,
                                               with_decoder=True)
        opts += ['MODEL.INSPLUG.ZSI.VOCABULARY_SIZE', vocabulary_size,
                 'MODEL.INSPLUG.ZSI.BBOX_WITH_DECODER', True]
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(mm_cfg.model)
    mm.init_weights()
    gen = torch.Generator().manual_seed(3)
    head = mm.roi_head.bbox_head
    with torch.no_grad():  # spread the semantic scores (no near-uniform class probabilities)
        head.fc_semantic.weight.normal_(0, 0.05, generator=gen)
        head.fc_reg.weight.normal_(0, 0.01, generator=gen)
        if vocabulary_size:
            head.load_vocabulary(torch.randn(head.voc.shape, generator=gen))
            head.kernel_semantic.weight.normal_(0, 0.1, generator=gen)
    cfg = zsi_cfg(d2_shapes, seen_split, *opts)
    d2 = build_model(cfg)
    state = to_detectron2(mm.state_dict())
    missing, unexpected = d2.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    batch = first_batch(cfg, train=True, batch_size=2)
    for item in batch:
        item['height'], item['width'] = item['image'].shape[-2:]
    images = d2.preprocess_image(batch)
    return dict(mm=mm, d2=d2, batch=batch, images=images,
                pad=tuple(images.tensor.shape[-2:]))


@pytest.fixture(scope='module')
def twins(d2_shapes, seen_split):
    pytest.importorskip('mmdet')
    return make_twins(d2_shapes, seen_split)


def losses_of(t):
    t['mm'].train()
    t['d2'].train()
    with EventStorage(0):
        l_d2 = t['d2'](t['batch'])
    l_mm = t['mm'].loss(t['images'].tensor, mmdet_samples(t['batch'], t['pad']))
    l_mm = {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in l_mm.items()
            if k != 'acc'}
    return l_mm, l_d2


def assert_same_losses(l_mm, l_d2, names):
    assert set(l_mm) == set(names) and set(l_d2) == set(names.values())
    for k_mm, k_d2 in names.items():
        a, b = float(l_mm[k_mm]), float(l_d2[k_d2])
        assert b > 0 and abs(a - b) <= 1e-5 * max(1.0, abs(a)), (k_mm, a, b)


def test_agreement_features_rpn_and_losses(twins):
    mm, d2, images = twins['mm'], twins['d2'], twins['images']
    mm.train()
    d2.train()
    with torch.no_grad():
        feats_mm = mm.extract_feat(images.tensor)
        feats_d2 = d2.backbone(images.tensor)
        feats_d2 = [feats_d2[f] for f in d2.proposal_generator.in_features]
        for a, b in zip(feats_mm, feats_d2):
            assert float((a - b).abs().max()) < 1e-5
        cls_mm, reg_mm = mm.rpn_head(feats_mm)
        obj_d2, reg_d2 = d2.proposal_generator.rpn_head(feats_d2)
    for c, o in zip(cls_mm, obj_d2):  # mmdet (fg, bg) pairs; detectron2 fg - bg
        assert float((c[:, 0::2] - c[:, 1::2] - o).abs().max()) < 1e-5
    for a, b in zip(reg_mm, reg_d2):
        assert float((a - b).abs().max()) < 1e-5
    assert_same_losses(*losses_of(twins), LOSSES)


def test_agreement_vocabulary_and_decoder_losses(d2_shapes, seen_split):
    """The release's full box head: vocabulary path and encoder-decoder (``loss_bbox_ed``)."""
    pytest.importorskip('mmdet')
    t = make_twins(d2_shapes, seen_split, vocabulary_size=16)
    assert t['d2'].roi_heads.box_predictor.voc.shape == (8, 16)
    assert_same_losses(*losses_of(t), dict(LOSSES, loss_bbox_ed='loss_bbox_ed'))


def test_full_config_weights_load_strictly():
    """The R-101 48/17 mmdet config's weights (vocabulary V = 4071, decoders) load strictly into
    the model of ``configs/detectron2/zsi_r101_fpn_1x_coco_48_17.yaml``."""
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from insplug.converters.zsi import to_detectron2
    from insplug.detectron2.train_net import setup_cfg
    from insplug.registry import MODELS
    mm_cfg = Config.fromfile(osp.join(REPO, 'configs', 'zsi',
                                      'zsi_mask_rcnn_r101_fpn_1x_coco_48_17.py'))
    mm_cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('insplug'):
        mm = MODELS.build(mm_cfg.model)
    d2 = build_model(setup_cfg(osp.join(D2_CONFIGS, 'zsi_r101_fpn_1x_coco_48_17.yaml'),
                               ['MODEL.DEVICE', 'cpu']))
    state = to_detectron2(mm.state_dict())
    missing, unexpected = d2.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    ours = d2.state_dict()
    assert all(ours[k].shape == v.shape for k, v in state.items())
    pred = d2.roi_heads.box_predictor
    assert pred.voc.shape == (300, 4071) and pred.with_decoder and pred.num_classes == 48
    assert not d2.mask_sync_bg and d2.bbox_sync_bg


@pytest.mark.parametrize('mode', ['seen', 'zsi', 'gzsi'])
def test_agreement_inference(twins, mode):
    from detectron2.structures import ImageList
    mm, d2, batch = twins['mm'], twins['d2'], twins['batch']
    label_map = GZSI_LABEL_MAP if mode == 'gzsi' else None
    mm.roi_head.bbox_head.mode = mm.roi_head.mask_head.mode = mode
    mm.label_map = label_map
    d2.roi_heads.set_mode(mode, label_map)
    mm.eval()
    d2.eval()
    images = twins['images']
    test = [dict(image=x['image'], height=x['height'], width=x['width']) for x in batch]
    with torch.no_grad():
        # RPN proposals: the same boxes, scores sigmoid(fg - bg) = softmax foreground
        feats = d2.backbone(images.tensor)
        props, _ = d2.proposal_generator(ImageList(images.tensor, images.image_sizes), feats)
        samples = mmdet_samples(batch, twins['pad'], with_gt=False)
        mm_props = mm.rpn_head.predict(mm.extract_feat(images.tensor), samples, rescale=False)
        for a, b in zip(props, mm_props):
            assert len(a) == len(b) > 0
            assert float((a.objectness_logits.sigmoid() - b.scores).abs().max()) < 1e-5
            # the same set of boxes (an untrained RPN ties many scores: order within a tie
            # is the sort's)
            dist = (a.proposal_boxes.tensor[:, None] - b.bboxes[None]).abs().amax(-1)
            assert float(dist.amin(1).max()) < 1e-4 and float(dist.amin(0).max()) < 1e-4
        out_d2 = d2(test)
        out_mm = mm.predict(images.tensor, samples, rescale=True)
    num_labels = {'seen': 4, 'zsi': 1, 'gzsi': 5}[mode]
    total = 0
    for a, b in zip(out_d2, out_mm):
        a, b = a['instances'], b.pred_instances
        assert len(a) == len(b)
        total += len(a)
        assert torch.equal(a.pred_classes, b.labels)
        assert int(a.pred_classes.max()) < num_labels
        assert float((a.scores - b.scores).abs().max()) < 1e-5
        assert float((a.pred_boxes.tensor - b.bboxes).abs().max()) < 1e-4
        assert int((a.pred_masks != b.masks).sum()) == 0 and int(a.pred_masks.sum()) > 0
    assert total > 0
    if mode == 'gzsi':  # both label sets present: seen (mapped 1..4) and the unseen ring (0)
        labels = torch.cat([o['instances'].pred_classes for o in out_d2])
        assert (labels == 0).any() and (labels > 0).any()
