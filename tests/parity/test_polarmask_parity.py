"""PolarMask against golden data of the official release (xieenze/PolarMask, mmdet 1.0).

The fixture (``tools/official_parity/make_polarmask_golden.py``) holds the official head's
random weights in the release's key layout, its inputs and its outputs: forward maps, the
dataset's targets (labels, box and ray targets), each loss term, and the post-processed
detections with masks drawn by the release's ``bbox_mask2result``. Here the weights go through
the ``polarmask`` converter (ray permutation included), load strictly into insplug's head, and
insplug runs on the same inputs.

Tolerances: forward and losses 1e-5 (relative, both run in float32), targets exact (labels,
box targets) / 0.0 for rays (float32 both), masks 0 differing pixels.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import insplug.mmdet  # noqa: F401
from insplug.converters import ConversionError, convert_state_dict
from insplug.core.polarmask.targets import official_ray_order, polar_targets_single
from insplug.registry import MODELS

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'polarmask',
                   'golden.pt')
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope='module')
def head(golden):
    init_default_scope('insplug')
    c = golden['config']
    head = MODELS.build(dict(
        type='PolarMaskHead', num_classes=c['num_classes'], in_channels=c['channels'],
        feat_channels=c['channels'], stacked_convs=c['stacked_convs'], strides=c['strides'],
        norm_cfg=dict(type='GN', num_groups=c['gn_groups'], requires_grad=True),
        test_cfg=ConfigDict(nms_pre=c['test_cfg']['nms_pre'],
                            score_thr=c['test_cfg']['score_thr'],
                            nms=dict(type='nms', iou_threshold=c['test_cfg']['iou_threshold']),
                            max_per_img=c['test_cfg']['max_per_img'])))
    converted = convert_state_dict('polarmask', golden['state_dict'])
    prefix = 'bbox_head.'
    head.load_state_dict({k[len(prefix):]: v for k, v in converted.items()}, strict=True)
    return head.eval()


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_forward(golden, head):
    with torch.no_grad():
        cls, box, ctr, rays = head(golden['feats'])
    order = official_ray_order(36)
    for level in range(len(cls)):
        assert _rel(cls[level], golden['forward']['cls'][level]) < 1e-5
        assert _rel(box[level], golden['forward']['bbox'][level]) < 1e-5
        assert _rel(ctr[level], golden['forward']['ctr'][level]) < 1e-5
        # insplug ray j is official ray order[j]
        assert _rel(rays[level], golden['forward']['rays'][level][:, order]) < 1e-5


def _gt_instances(gt):
    h, w = gt['masks'].shape[-2:]
    return InstanceData(bboxes=gt['bboxes'].float(), labels=gt['labels'].long(),
                        masks=BitmapMasks(gt['masks'].numpy(), h, w))


def test_targets(golden, head):
    c = golden['config']
    sizes = [(c['H'] // s, c['W'] // s) for s in c['strides']]
    points = head.prior_generator.grid_priors(sizes, dtype=torch.float32, device='cpu')
    order = official_ray_order(36)
    for gt, ref in zip(golden['gt'], golden['targets']):
        labels, boxes, rays, _ = polar_targets_single(
            points, c['strides'], head.regress_ranges, gt['bboxes'].float(), gt['labels'],
            gt['masks'].numpy(), c['num_classes'])
        ref_labels = torch.where(ref['labels'] < 0, torch.full_like(ref['labels'],
                                                                   c['num_classes']),
                                 ref['labels'])
        assert torch.equal(labels, ref_labels)
        pos = ref['pos']
        assert torch.equal(boxes[pos], ref['boxes'])
        # float32 ray lengths (<= ~100 px): within an ulp or two (7.6e-6 at 64-128 px);
        # bit-equal on the machine that recorded the fixture, one ulp off on another
        assert float((rays[pos] - ref['rays'][:, order]).abs().max()) <= 1.6e-5
        # the fixture exercises the 1e-6 fill of rays with no contour pixel in +-3 degrees
    assert any((t['rays'] == 1e-6).any() for t in golden['targets'])


def test_losses(golden, head):
    f = golden['forward']
    order = official_ray_order(36)
    rays = [r[:, order] for r in f['rays']]
    metas = [dict(img_shape=(golden['config']['H'], golden['config']['W']))] * 2
    losses = head.loss_by_feat(f['cls'], f['bbox'], f['ctr'], rays,
                               [_gt_instances(g) for g in golden['gt']], metas)
    for name, ref in golden['losses'].items():
        assert abs(float(losses[name]) - ref) <= 1e-5 * abs(ref), (name, float(losses[name]), ref)


def _unpack(pred, shape):
    bits = np.unpackbits(pred['masks_packed'].numpy())[:pred['num'] * shape[0] * shape[1]]
    return torch.from_numpy(bits.reshape(pred['num'], *shape).astype(bool))


def test_predictions(golden, head):
    c = golden['config']
    f = golden['forward']
    order = official_ray_order(36)
    rays = [r[:, order] for r in f['rays']]
    ori = tuple(c['ori'])
    metas = [dict(img_shape=(c['H'], c['W']), ori_shape=ori,
                  scale_factor=(c['W'] / ori[1], c['H'] / ori[0]))] * 2
    with torch.no_grad():
        results = head.predict_by_feat(f['cls'], f['bbox'], f['ctr'], rays,
                                       batch_img_metas=metas, rescale=True)
    for res, ref in zip(results, golden['preds']):
        assert len(res) == ref['num'] > 0
        # the release lists detections class by class; compare in (label, score) order
        key_ins = sorted(range(len(res)), key=lambda i: (int(res.labels[i]), -float(res.scores[i])))
        key_ref = sorted(range(ref['num']),
                         key=lambda i: (int(ref['labels'][i]), -float(ref['boxes'][i, 4])))
        ins, off = torch.tensor(key_ins), torch.tensor(key_ref)
        assert torch.equal(res.labels[ins], ref['labels'][off])
        assert _rel(res.scores[ins], ref['boxes'][off, 4]) < 1e-5
        assert float((res.bboxes[ins] - ref['boxes'][off, :4]).abs().max()) < 1e-4
        masks = _unpack(ref, ori)
        assert res.masks.shape[1:] == ori
        assert int((res.masks[ins] != masks[off]).sum()) == 0


@pytest.fixture(scope='module')
def r50_state():
    from insplug.converters import build_model_state
    return build_model_state(osp.join(REPO, 'configs/polarmask/polarmask_r50_1x.py'))


def test_converter_fills_the_r50_config_strictly(golden, r50_state):
    """Every key of a released R-50 checkpoint (recorded from the official modules) converts
    into a tensor of the right shape of ``configs/polarmask/polarmask_r50_1x.py``, strictly."""
    from insplug.checkpoints.fit import check_state_dict_fit
    official = {k: torch.zeros(s) for k, s in golden['release_shapes'].items()}
    converted = convert_state_dict('polarmask', official)
    fit = check_state_dict_fit(r50_state, converted)
    assert fit.ok, fit.summary()
    assert set(converted) == set(r50_state)


def test_converter_rejects_other_checkpoints(golden):
    with pytest.raises(ConversionError, match='not a polarmask checkpoint'):
        convert_state_dict('polarmask', {'backbone.conv1.weight': torch.zeros(1),
                                         'bbox_head.conv_cls.weight': torch.zeros(1)})
    bad = dict(golden['state_dict'])
    bad['bbox_head.cls_convs.0.conv_offset.weight'] = torch.zeros(1)   # a DCN variant
    with pytest.raises(ConversionError, match='conv_offset'):
        convert_state_dict('polarmask', bad)


def test_convert_checkpoint_file_of_the_release_format(golden, tmp_path):
    """A file shaped like an mmdet 1.0 checkpoint (``meta`` + ``state_dict`` saved from a
    DataParallel model) converts through the file API, weights-only."""
    from insplug.converters import convert_checkpoint
    official = {'module.' + k: v for k, v in golden['state_dict'].items()}
    src = tmp_path / 'polar_768_1x_r50.pth'
    torch.save({'meta': {'mmdet_version': '1.0rc0+unknown', 'config': 'model = dict()',
                         'CLASSES': ('person', 'bicycle')},
                'state_dict': official}, src)
    dst = tmp_path / 'converted.pth'
    convert_checkpoint('polarmask', str(src), str(dst))
    out = torch.load(dst, weights_only=True)
    assert out['meta']['converted_from'] == 'polarmask'
    ref = convert_state_dict('polarmask', golden['state_dict'])
    assert set(out['state_dict']) == set(ref)
    assert all(torch.equal(out['state_dict'][k], v) for k, v in ref.items())
