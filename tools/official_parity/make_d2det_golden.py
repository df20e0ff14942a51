"""Golden data of the official D2Det release (JialeCao001/D2Det, mmdet 1.1 based).

Runs, on CPU in float32 (the release builds its targets in float32), the official

* ``DeformRoIPoolingPack`` (mmdet/ops/dcn/deform_pool.py: coarse 3 x 3 pooling -> ``offset_fc``
  -> 14 x 14 deformable pooling -> ``AWPool``) with ``sample_per_part`` 1 (the mmdet 1.1 configs)
  and 2 (the mmdet 2.1 port's configs), 8 channels, hidden width 16, random weights (the zero
  initialisations replaced so that offsets and weights are not trivial), on RoIs that cross the
  border, are tiny, or sit on half pixels (rounding);
* ``D2DetHead`` (mmdet/models/mask_heads/D2Det_head.py) with ``MASK_ON=True`` at small widths:
  its hard-coded widths 576 / 256 / 1024 / 577 * 7 * 7 / 81 are mapped to 12 / 8 / 16 /
  13 * 7 * 7 / 4 (3 classes + background) by the width shim below, 2 convs, GN 4 groups;
* ``D2Det.forward_train`` (mmdet/models/detectors/D2Det.py) from the dense-regression part on:
  ``_random_jitter`` (offsets recorded), the head, ``get_target_mask`` (official ``mask_target``:
  int crop + ``mmcv.imresize``), the decoded boxes, ``IoULoss`` (weight 2), the overlap BCE, the
  instance ``mask_cross_entropy`` and ``get_target_maskiou`` + ``MSELoss`` (weight 0.5); also the
  detection variant (``MASK_ON=False``: ``get_target``'s box overlap map and its two losses);
* the test path: ``get_bboxes_avg`` on detections, then the head's mask branch on the refined
  boxes, ``get_mask_scores`` and ``get_seg_masks`` (rescaled to a smaller original image; the RLE
  masks are decoded here);
* the R-101 / R-50 instance model's D2Det-specific keys at full width (``DeformRoIPoolingPack``
  per level and ``D2DetHead(num_convs=8, MASK_ON=True)``), instantiated only to record every key and
  shape (no weights saved).

Saves ``tests/fixtures/official/d2det/golden.pt``::

    python tools/official_parity/make_d2det_golden.py --official-repo /path/to/D2Det

Not run in CI; nothing of the official code is copied here: its files are loaded from
``--official-repo``. Run-time shims (written here, not official code): stub modules for ``mmcv``
(``imresize`` = ``cv2.resize`` bilinear, ``kaiming_init`` / ``normal_init``), ``mmdet.core``
(the official ``mask_target`` and ``bbox_overlaps`` files loaded by path; ``bbox2roi``, a fixed
assigner / sampler that returns given assignments), ``mmdet.models`` registry / builder /
``ConvModule`` / ``TwoStageDetector``; ``deform_pool_cuda``: a per-element Python loop written
from the CUDA kernel ``DeformablePSROIPoolForwardKernel`` (float32 scalars, C ``round``), the
tensors handed to it marked ``is_cuda`` by a Tensor subclass; the width shim (``nn.Conv2d`` & co.
in the head's module map the hard-coded widths to small ones; ``AWPool(256)`` replaced
by ``AWPool(8)`` after construction); ``torch.Tensor.cuda`` as identity; ``torch.randperm`` in the detector's module
recorded.
"""
import argparse
import importlib.util
import math
import os
import sys
import types
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'd2det', 'golden.pt')
C = 8                                   # feature channels
NUM_CLASSES = 4                         # mmdet 1.x: 3 foreground classes + background
# the head's hard-coded widths -> small ones
WIDTH = {576: 12, 256: C, 1024: 16, 577 * 7 * 7: 13 * 7 * 7, 81: NUM_CLASSES}
GROUPS = {36: 4, 16: 4}


# --------------------------------------------------------------------------- shims
def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _package(name, path=None, **attrs):
    mod = _module(name, **attrs)
    mod.__path__ = [] if path is None else [path]
    return mod


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Registry:
    def __init__(self, name):
        self.name, self.module_dict = name, {}

    def register_module(self, cls):
        self.module_dict[cls.__name__] = cls
        return cls


def kaiming_init(module, a=0, mode='fan_out', nonlinearity='relu', bias=0,
                 distribution='normal'):
    if distribution == 'uniform':
        nn.init.kaiming_uniform_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    else:
        nn.init.kaiming_normal_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


def normal_init(module, mean=0, std=1, bias=0):
    nn.init.normal_(module.weight, mean, std)
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


def imresize(img, size, return_scale=False, interpolation='bilinear'):
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def bbox2roi(bbox_list):
    rois = [torch.cat([b.new_full((b.shape[0], 1), i), b[:, :4]], 1)
            for i, b in enumerate(bbox_list)]
    return torch.cat(rois, 0)


class FixedAssigner:
    """Returns the assignment given in the config: ``cfg['assigned'][image]`` (gt index or -1)."""

    def __init__(self, cfg):
        self.assigned = cfg['assigned']
        self.calls = 0

    def assign(self, proposals, gt_bboxes, gt_bboxes_ignore, gt_labels):
        inds = torch.as_tensor(self.assigned[self.calls])
        self.calls += 1
        return inds


class FixedSampler:
    def __init__(self, cfg, context=None):
        pass

    def sample(self, inds, proposals, gt_bboxes, gt_labels, feats=None):
        pos = inds >= 0
        return types.SimpleNamespace(
            bboxes=proposals, pos_bboxes=proposals[pos], pos_gt_bboxes=gt_bboxes[inds[pos]],
            pos_assigned_gt_inds=inds[pos], pos_gt_labels=gt_labels[inds[pos]])


class AttrDict(dict):
    __getattr__ = dict.__getitem__


class FakeCuda(torch.Tensor):
    """A CPU tensor that says ``is_cuda`` (the release's Function refuses CPU tensors)."""

    @property
    def is_cuda(self):
        return True


def _c_round(v):
    return math.copysign(math.floor(abs(v) + 0.5), v)


def psroi_forward(data, rois, trans, out, top_count, no_trans, spatial_scale, output_dim,
                  group_size, pooled_size, part_size, sample_per_part, trans_std):
    """``DeformablePSROIPoolForwardKernel``, one output bin at a time (float32 scalars)."""
    f32 = np.float32
    data = data.as_subclass(torch.Tensor).detach()
    rois = rois.as_subclass(torch.Tensor).detach().numpy().astype(np.float32)
    trans = trans.as_subclass(torch.Tensor).detach().numpy().astype(np.float32)
    _, channels, height, width = data.shape
    num_classes = 1 if no_trans else trans.shape[1] // 2
    channels_each_class = output_dim if no_trans else output_dim // num_classes
    assert group_size == 1 and num_classes == 1 and channels == output_dim
    scale, tstd = f32(spatial_scale), f32(trans_std)
    result = torch.zeros(out.shape, dtype=torch.float32)
    for n in range(rois.shape[0]):
        b = int(rois[n, 0])
        x_start = f32(_c_round(float(rois[n, 1]))) * scale - f32(0.5)
        y_start = f32(_c_round(float(rois[n, 2]))) * scale - f32(0.5)
        x_end = f32(_c_round(float(rois[n, 3])) + 1.0) * scale - f32(0.5)
        y_end = f32(_c_round(float(rois[n, 4])) + 1.0) * scale - f32(0.5)
        roi_w = max(x_end - x_start, f32(0.1))
        roi_h = max(y_end - y_start, f32(0.1))
        bin_w, bin_h = roi_w / f32(pooled_size), roi_h / f32(pooled_size)
        sub_w, sub_h = bin_w / f32(sample_per_part), bin_h / f32(sample_per_part)
        for ph in range(pooled_size):
            for pw in range(pooled_size):
                part_h = int(math.floor(f32(ph) / f32(pooled_size) * f32(part_size)))
                part_w = int(math.floor(f32(pw) / f32(pooled_size) * f32(part_size)))
                tx = f32(0) if no_trans else trans[n, 0, part_h, part_w] * tstd
                ty = f32(0) if no_trans else trans[n, 1, part_h, part_w] * tstd
                wstart = f32(pw) * bin_w + x_start + tx * roi_w
                hstart = f32(ph) * bin_h + y_start + ty * roi_h
                acc = torch.zeros(channels, dtype=torch.float32)
                count = 0
                for ih in range(sample_per_part):
                    for iw in range(sample_per_part):
                        w = wstart + f32(iw) * sub_w
                        h = hstart + f32(ih) * sub_h
                        if w < -0.5 or w > width - 0.5 or h < -0.5 or h > height - 0.5:
                            continue
                        w = min(max(w, f32(0)), f32(width - 1))
                        h = min(max(h, f32(0)), f32(height - 1))
                        x1, x2 = int(math.floor(w)), int(math.ceil(w))
                        y1, y2 = int(math.floor(h)), int(math.ceil(h))
                        dx, dy = float(w - f32(x1)), float(h - f32(y1))
                        m = data[b]
                        acc += ((1 - dx) * (1 - dy) * m[:, y1, x1] + (1 - dx) * dy * m[:, y2, x1]
                                + dx * (1 - dy) * m[:, y1, x2] + dx * dy * m[:, y2, x2])
                        count += 1
                if count:
                    result[n, :, ph, pw] = acc / count
    out.copy_(result)
    top_count.fill_(0)


def _mapped(cls, *positions):
    class Mapped(cls):
        def __init__(self, *args, **kwargs):
            args = list(args)
            for p in positions:
                if p < len(args) and isinstance(args[p], int):
                    args[p] = WIDTH.get(args[p], args[p])
            super().__init__(*args, **kwargs)

    Mapped.__name__ = cls.__name__
    return Mapped


class _GroupNorm(nn.GroupNorm):
    def __init__(self, num_groups, num_channels, *args, **kwargs):
        super().__init__(GROUPS.get(num_groups, num_groups),
                         WIDTH.get(num_channels, num_channels), *args, **kwargs)


class _NN(types.ModuleType):
    """``torch.nn`` for the head's module: layer widths pass through WIDTH / GROUPS."""

    def __getattr__(self, name):
        return getattr(nn, name)


def _width_nn():
    proxy = _NN('nn_width_shim')
    proxy.Conv2d = _mapped(nn.Conv2d, 0, 1)
    proxy.ConvTranspose2d = _mapped(nn.ConvTranspose2d, 0, 1)
    proxy.Linear = _mapped(nn.Linear, 0, 1)
    proxy.GroupNorm = _GroupNorm
    return proxy


class ConvModule(nn.Module):
    """mmdet 1.x ``ConvModule`` (conv -> norm ``gn`` -> ReLU), widths through WIDTH."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 conv_cfg=None, norm_cfg=None, bias=True, width_map=True):
        super().__init__()
        cin = WIDTH.get(in_channels, in_channels) if width_map else in_channels
        cout = WIDTH.get(out_channels, out_channels) if width_map else out_channels
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=bias)
        groups = norm_cfg['num_groups']
        self.gn = nn.GroupNorm(GROUPS.get(groups, groups) if width_map else groups, cout)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.gn(self.conv(x)))


class _TorchRecorder(types.ModuleType):
    """``torch`` for the detector's module: records ``randperm``."""

    def __init__(self):
        super().__init__('torch_recorder')
        self.perms = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def randperm(self, *args, **kwargs):
        perm = torch.randperm(*args, **kwargs)
        self.perms.append(perm.clone())
        return perm


def install_shims(repo):
    root = os.path.join(repo, 'mmdet')
    torch.Tensor.cuda = lambda self, *a, **k: self
    mmcv = _module('mmcv', imresize=imresize)
    mmcv.cnn = _module('mmcv.cnn', kaiming_init=kaiming_init, normal_init=normal_init)
    _package('mmdet', root)
    core = _package('mmdet.core', os.path.join(root, 'core'))
    geometry = _load('mmdet_core_geometry', os.path.join(root, 'core', 'bbox', 'geometry.py'))
    mask_target = _load('mmdet_core_mask_target',
                        os.path.join(root, 'core', 'mask', 'mask_target.py'))
    core.__dict__.update(
        bbox_overlaps=geometry.bbox_overlaps, mask_target=mask_target.mask_target,
        bbox2roi=bbox2roi, build_assigner=FixedAssigner, build_sampler=FixedSampler,
        bbox2result=None, multiclass_nms1=None, bbox2roi_expand=None)
    models = _package('mmdet.models', os.path.join(root, 'models'))
    reg = _module('mmdet.models.registry', HEADS=Registry('head'), LOSSES=Registry('loss'),
                  DETECTORS=Registry('detector'))
    models.registry = reg
    _module('mmdet.models.builder', build_loss=None, build_head=None, build_roi_extractor=None)
    _module('mmdet.models.utils', ConvModule=ConvModule)
    _package('mmdet.models.losses', os.path.join(root, 'models', 'losses'))
    _load('mmdet.models.losses.utils', os.path.join(root, 'models', 'losses', 'utils.py'))
    losses = {}
    for name in ('iou_loss', 'cross_entropy_loss', 'mse_loss'):
        losses[name] = _load(f'mmdet.models.losses.{name}',
                             os.path.join(root, 'models', 'losses', f'{name}.py'))
    _package('mmdet.models.mask_heads', os.path.join(root, 'models', 'mask_heads'))
    head_mod = _load('mmdet.models.mask_heads.D2Det_head',
                     os.path.join(root, 'models', 'mask_heads', 'D2Det_head.py'))
    _package('mmdet.models.detectors', os.path.join(root, 'models', 'detectors'))
    _module('mmdet.models.detectors.two_stage', TwoStageDetector=nn.Module)
    det_mod = _load('mmdet.models.detectors.D2Det',
                    os.path.join(root, 'models', 'detectors', 'D2Det.py'))
    _package('mmdet.ops', os.path.join(root, 'ops'))
    _package('mmdet.ops.dcn', os.path.join(root, 'ops', 'dcn'))
    _module('mmdet.ops.dcn.deform_pool_cuda', deform_psroi_pooling_cuda_forward=psroi_forward,
            deform_psroi_pooling_cuda_backward=None)
    pool_mod = _load('mmdet.ops.dcn.deform_pool', os.path.join(root, 'ops', 'dcn',
                                                                'deform_pool.py'))
    return head_mod, det_mod, pool_mod, losses


def _randomise(module, gen, scale=0.1):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


# --------------------------------------------------------------------------- parts
def pooling_golden(pool_mod, gen):
    feat = torch.randn(2, C, 20, 28, generator=gen)
    rois = torch.tensor([[0, 4.0, 6.0, 60.0, 50.0],
                         [0, 10.5, 20.5, 40.5, 31.5],      # halves: C round (away from 0)
                         [1, -12.0, 30.0, 70.0, 95.0],     # crosses the left / bottom border
                         [1, 90.0, 2.0, 118.0, 20.0],      # crosses the right border
                         [0, 50.0, 40.0, 51.0, 41.0],      # tiny
                         [1, 0.0, 0.0, 111.0, 79.0]])      # whole image
    out = {'pool_feat': feat, 'pool_rois': rois}
    for spp in (1, 2):
        torch.manual_seed(0)
        layer = pool_mod.DeformRoIPoolingPack(
            spatial_scale=0.25, out_size=7, out_channels=C, no_trans=False, group_size=1,
            sample_per_part=spp, trans_std=0.1, deform_fc_channels=16)
        layer.awp = pool_mod.AWPool(C)   # the release hard-codes AWPool(256)
        _randomise(layer, gen)
        with torch.no_grad():  # offsets of a few bins in size
            layer.offset_fc[-1].weight.mul_(10.0)
        with torch.no_grad():
            res = layer(feat.as_subclass(FakeCuda), rois.as_subclass(FakeCuda))
            # the kernel alone, with random offsets (14 x 14, parts 14)
            offset = torch.randn(rois.shape[0], 2, 14, 14, generator=gen)
            raw = pool_mod.deform_roi_pooling(
                feat.as_subclass(FakeCuda), rois.as_subclass(FakeCuda),
                offset.as_subclass(FakeCuda), 0.25, (14, 14), C, False, 1, 14, spp, 0.1)
        out[f'pool_spp{spp}_state_dict'] = {k: v.clone() for k, v in layer.state_dict().items()}
        out[f'pool_spp{spp}_out'] = res.as_subclass(torch.Tensor).clone()
        out[f'kernel_spp{spp}_offset'] = offset
        out[f'kernel_spp{spp}_out'] = raw.as_subclass(torch.Tensor).clone()
    return out


def _masks(height, width):
    """Three GT instances: a disc, an L shape, a rectangle touching the border."""
    yy, xx = np.mgrid[:height, :width]
    disc = ((yy - 40) ** 2 + (xx - 50) ** 2 <= 22 ** 2)
    ell = np.zeros((height, width), bool)
    ell[60:100, 80:95] = True
    ell[85:100, 80:130] = True
    rect = np.zeros((height, width), bool)
    rect[5:50, 100:width] = True
    masks = np.stack([disc, ell, rect]).astype(np.uint8)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return masks, torch.tensor(boxes, dtype=torch.float32)


def train_golden(head_mod, det_mod, losses, gen):
    height, width = 112, 144
    masks, gt_boxes = _masks(height, width)
    gt_labels = torch.tensor([1, 3, 2])           # 1-based (mmdet 1.x)
    # proposals: GT boxes shifted / scaled, plus negatives; image 2 = the same scene flipped
    props = []
    for shift in ([0, 0, 0, 0], [-4, 3, 5, -2], [6, -5, -3, 8], [2, 2, 12, 10]):
        props.append(gt_boxes + torch.tensor(shift, dtype=torch.float32))
    props = torch.cat(props + [torch.tensor([[0, 80, 30, 110.0], [110, 60, 140, 100.0]])])
    assigned = [list(range(3)) * 4 + [-1, -1]]
    props2 = props.clone()
    props2[:, [0, 2]] = width - 1 - props[:, [2, 0]]
    masks2 = masks[:, :, ::-1].copy()
    gt_boxes2 = gt_boxes.clone()
    gt_boxes2[:, [0, 2]] = width - 1 - gt_boxes[:, [2, 0]]
    assigned.append(list(range(3)) * 4 + [-1, -1])
    img_meta = [dict(img_shape=(height, width, 3)), dict(img_shape=(height, width, 3))]

    torch.manual_seed(0)
    head = head_mod.D2DetHead(num_convs=2, in_channels=256, norm_cfg=dict(type='GN',
                                                                           num_groups=36),
                              MASK_ON=True)
    head.init_weights()
    _randomise(head, gen, 0.05)
    with torch.no_grad():  # overlap logits spread around 0, positive ltrb
        head.D2Det_mask.bias.fill_(0.0)
        head.D2Det_reg.bias.fill_(0.3)
        head.D2Det_instance.bias.fill_(0.55)   # own-class logits on both sides of 0.5
    num_pos = sum(sum(1 for a in img if a >= 0) for img in assigned)
    reg_feats = torch.randn(num_pos, C, 14, 14, generator=gen)

    records = {}
    torch_rec = _TorchRecorder()
    det_mod.torch = torch_rec

    class Recorder(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, x, idx=None):
            res = self.head(x, idx)
            records['head_out'] = [r.detach().clone() for r in res]
            return res

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.head, name)

    def reg_extractor(feats, rois):
        records['pos_rois'] = rois.clone()
        return reg_feats

    reg_extractor.num_inputs = 1
    results = {}
    for mask_on in (True, False):
        stub = types.SimpleNamespace()
        stub.extract_feat = lambda img: [torch.zeros(2, C, 8, 8)]
        stub.with_rpn, stub.with_bbox, stub.with_shared_head = False, True, False
        stub.train_cfg = AttrDict(rcnn=AttrDict(assigner=dict(assigned=assigned), sampler={},
                                                mask_size=28, max_num_reg=20, pos_radius=1))
        stub.bbox_roi_extractor = types.SimpleNamespace(
            num_inputs=1, __call__=None)
        stub.bbox_roi_extractor = lambda feats, rois: torch.zeros(rois.shape[0], 1)
        stub.bbox_roi_extractor.num_inputs = 1
        stub.bbox_head = types.SimpleNamespace(
            get_target=lambda *a: (), loss=lambda *a: {})
        stub.bbox_head.__call__ = None
        bbox_head = stub.bbox_head
        stub.bbox_head = lambda feats: (None, None)
        stub.bbox_head.get_target = bbox_head.get_target
        stub.bbox_head.loss = bbox_head.loss
        stub.reg_roi_extractor = reg_extractor
        stub.D2Det_head = Recorder(head)
        stub._random_jitter = partial(det_mod.D2Det._random_jitter, stub)
        stub.loss_roi_reg = losses['iou_loss'].IoULoss(loss_weight=2.0)
        stub.loss_roi_mask = losses['cross_entropy_loss'].CrossEntropyLoss(use_sigmoid=True,
                                                                            loss_weight=1.0)
        stub.loss_roi_instance = losses['cross_entropy_loss'].CrossEntropyLoss(use_mask=True,
                                                                                loss_weight=1.0)
        stub.loss_iou = losses['mse_loss'].MSELoss(loss_weight=0.5)
        stub.MASK_ON = mask_on
        orig_get_target_mask = head.get_target_mask
        orig_get_target = head.get_target

        def get_target_mask(*args, **kwargs):
            res = orig_get_target_mask(*args, **kwargs)
            records['targets'] = [r.clone() for r in res]
            return res

        def get_target(*args, **kwargs):
            res = orig_get_target(*args, **kwargs)
            records['targets'] = [r.clone() for r in res]
            return res

        head.get_target_mask = get_target_mask
        head.get_target = get_target
        torch.manual_seed(123)
        gen_state = torch.get_rng_state()
        with torch.no_grad():
            loss = det_mod.D2Det.forward_train(
                stub, torch.zeros(2, 3, 8, 8), img_meta, [gt_boxes, gt_boxes2], [gt_labels, gt_labels],
                gt_masks=[masks, masks2], proposals=[props, props2])
        del head.get_target_mask, head.get_target
        # the jitter offsets: the first RNG draws after the seed, one (n_pos, 4) per image
        torch.set_rng_state(gen_state)
        offsets = [torch.empty(len([a for a in img if a >= 0]), 4).uniform_(-0.15, 0.15)
                   for img in assigned]
        tag = 'inst' if mask_on else 'det'
        results[f'{tag}_losses'] = {k: v.reshape(()).clone() for k, v in loss.items()}
        results[f'{tag}_sample_idx'] = torch_rec.perms[-1]
        results[f'{tag}_jitter_offsets'] = torch.cat(offsets)
        results[f'{tag}_pos_rois'] = records['pos_rois']
        results[f'{tag}_head_out'] = records['head_out']
        results[f'{tag}_targets'] = records['targets']
    results.update(
        train_gt_boxes=[gt_boxes, gt_boxes2], train_gt_labels=gt_labels,
        train_gt_masks=[torch.from_numpy(masks), torch.from_numpy(masks2)],
        train_proposals=[props, props2], train_assigned=[torch.tensor(a) for a in assigned],
        train_img_shape=[height, width], reg_feats=reg_feats,
        head_state_dict={k: v.clone() for k, v in head.state_dict().items()})
    return head, results


def test_golden(head, det_mod, gen):
    ori_h, ori_w, scale = 90, 120, 1.25
    img_meta = [dict(img_shape=(112, 150, 3), ori_shape=(ori_h, ori_w, 3), scale_factor=scale)]
    det_bboxes = torch.tensor([[10.0, 12.0, 70.0, 66.0, 0.9],
                               [40.5, 30.2, 120.7, 100.1, 0.7],
                               [5.0, 60.0, 30.0, 104.0, 0.6],
                               [100.0, 5.0, 148.0, 50.0, 0.3]])
    det_labels = torch.tensor([0, 2, 1, 0])     # 0-based, as simple_test_bboxes returns them
    feats1 = torch.randn(4, C, 14, 14, generator=gen)
    feats2 = torch.randn(4, C, 14, 14, generator=gen)
    with torch.no_grad():
        reg_pred, reg_mask = head(feats1)
        refined = head.get_bboxes_avg(det_bboxes.clone(), reg_pred, reg_mask, img_meta)
        _, _, inst, iou = head(feats2, det_labels + 1)
    stub = types.SimpleNamespace()
    scores = det_mod.D2Det.get_mask_scores(stub, iou, refined, det_labels)
    segms = det_mod.D2Det.get_seg_masks(stub, inst, refined[:, :4], det_labels,
                                        img_meta[0]['ori_shape'], scale, rescale=True)
    import pycocotools.mask as mask_util
    masks = torch.zeros(4, ori_h, ori_w, dtype=torch.uint8)
    mask_scores = torch.zeros(4)
    seen = {}
    for i, label in enumerate(det_labels.tolist()):   # RLEs are grouped per class, in order
        j = seen.get(label, 0)
        seen[label] = j + 1
        masks[i] = torch.from_numpy(mask_util.decode(segms[label][j]))
        mask_scores[i] = float(scores[label][j])
    return dict(test_det_bboxes=det_bboxes, test_det_labels=det_labels, test_feats1=feats1,
                test_feats2=feats2, test_reg_pred=reg_pred, test_reg_mask=reg_mask,
                test_refined=refined, test_mask_logits=inst, test_iou=iou,
                test_mask_scores=mask_scores, test_masks=masks,
                test_ori_shape=[ori_h, ori_w], test_scale_factor=scale,
                test_img_shape=[112, 150])


def full_keys(head_mod, pool_mod):
    """Key -> shape of the released instance model's D2Det-specific modules (R-50 / R-101)."""
    global WIDTH, GROUPS
    saved = WIDTH, GROUPS
    WIDTH, GROUPS = {}, {}
    head_mod.nn = nn
    keys = {}
    for lvl, stride in enumerate([4, 8, 16, 32]):
        layer = pool_mod.DeformRoIPoolingPack(
            spatial_scale=1.0 / stride, out_size=7, out_channels=256, no_trans=False,
            group_size=1, sample_per_part=1, trans_std=0.1)
        for k, v in layer.state_dict().items():
            keys[f'bbox_roi_extractor.roi_layers.{lvl}.{k}'] = list(v.shape)
    head = head_mod.D2DetHead(num_convs=8, in_channels=256,
                              norm_cfg=dict(type='GN', num_groups=36), MASK_ON=True)
    for k, v in head.state_dict().items():
        keys[f'D2Det_head.{k}'] = list(v.shape)
    WIDTH, GROUPS = saved
    head_mod.nn = _width_nn()
    return keys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    head_mod, det_mod, pool_mod, losses = install_shims(os.path.abspath(args.official_repo))
    head_mod.nn = _width_nn()
    gen = torch.Generator().manual_seed(2020)
    golden = {}
    golden.update(pooling_golden(pool_mod, gen))
    head, train = train_golden(head_mod, det_mod, losses, gen)
    golden.update(train)
    golden.update(test_golden(head, det_mod, gen))
    golden['full_keys'] = full_keys(head_mod, pool_mod)
    golden['widths'] = dict(channels=C, conv_channels=12, num_groups=4, deconv_channels=C,
                            deconv_groups=4, fc_channels=16, num_classes=NUM_CLASSES - 1,
                            num_convs=2, deform_fc_channels=16)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    print('saved', os.path.abspath(args.out), os.path.getsize(args.out), 'bytes')
    for k, v in golden.items():
        if k.endswith('losses'):
            print(k, {n: float(t) for n, t in v.items()})


if __name__ == '__main__':
    main()
