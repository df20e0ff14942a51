"""Golden data of the official PolarMask release (xieenze/PolarMask, mmdet 1.0 based).

Runs, on CPU and in float32 (the release's own dtype: its forward casts with ``.float()`` and its
targets are built in float32), the official

* ``PolarMask_Head`` (mmdet/models/anchor_heads/polarmask_head.py) at small widths (16
  channels, 4 convs per tower, GN with 4 groups, 3 foreground classes, strides 8-128): forward on
  random FPN features of 2 images of 128 x 256;
* ``Coco_Seg_Dataset.polar_target_single`` (mmdet/datasets/coco_seg.py: largest contour,
  integer centroid, mask-centre sampling, ray search, 1e-6 for missing rays) on synthetic masks
  (a ring with a hole, a two-part object, a U whose centroid lies outside it, small and tiny
  objects, overlapping objects, an object on the image border);
* ``PolarMask_Head.loss`` with those targets (focal, IoU, polar IoU and centerness terms);
* ``PolarMask_Head.get_bboxes`` (rescale to a smaller original size, ``multiclass_nms_with_mask``)
  and ``bbox_mask2result`` (mmdet/core/bbox/transforms.py: ``cv2.drawContours``), whose RLE
  masks are decoded here;
* the head at full width (256 channels, 81 classes), the caffe ResNet-50 and the FPN of
  ``configs/polarmask/4gpu/polar_768_1x_r50.py``, instantiated only to record every key and
  shape of a released checkpoint (no weights are saved).

Saves ``tests/fixtures/official/polarmask/golden.pt``::

    python tools/official_parity/make_polarmask_golden.py --official-repo /path/to/PolarMask

Not run in CI; nothing of the official code is copied here: its files are loaded from
``--official-repo``. Run-time shims (written here, not official code): stub modules for
``IPython``, ``Polygon``, ``skimage``, ``imagecorruptions``, ``mmcv`` (0.x names: ``normal_init``
& co. from mmengine, ``DataContainer``, ``load_checkpoint``), ``mmdet.utils`` (a minimal
``Registry`` / ``build_from_cfg``), ``mmdet.ops`` (``sigmoid_focal_loss`` in pure PyTorch with
the CUDA op's label convention, ``nms`` as a pure-PyTorch greedy NMS with the +1 areas and the
``>=`` test of the release's ``nms_cpu.cpp``, dummy DCN / context-block classes),
``mmdet.core.force_fp32`` / ``auto_fp16`` (identity decorators), ``multi_apply``,
the dataset's base classes; ``torch.Tensor.cuda`` as identity; ``cv2.findContours`` returning a
list (OpenCV >= 4.5 returns a tuple, which the release's ``contour.sort`` cannot sort).
"""
import argparse
import importlib.util
import os
import sys
import types
from functools import partial

import cv2
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'polarmask', 'golden.pt')
H, W = 128, 256                    # network input (pad) shape, divisible by 128
ORI = (96, 160)                    # original image (h, w) for the rescaled predictions
STRIDES = [8, 16, 32, 64, 128]
CH = 16
NUM_CLASSES = 4                    # mmdet 1.0 convention: 3 foreground classes + background
TEST_CFG = dict(nms_pre=40, score_thr=0.05, nms=dict(type='nms', iou_thr=0.5), max_per_img=20)


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


def _load(name, path, package_path=None):
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=package_path)
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

    def get(self, key):
        return self.module_dict.get(key)


def build_from_cfg(cfg, registry, default_args=None):
    args = dict(cfg)
    cls = registry.module_dict[args.pop('type')]
    for k, v in (default_args or {}).items():
        args.setdefault(k, v)
    return cls(**args)


def multi_apply(func, *args, **kwargs):
    results = map(partial(func, **kwargs) if kwargs else func, *args)
    return tuple(map(list, zip(*results)))


def identity_decorator(*args, **kwargs):
    return lambda fn: fn


def focal_loss_elementwise(pred, target, gamma=2.0, alpha=0.25):
    """Elementwise sigmoid focal loss; target (N,) with 0 = background, c + 1 = class c."""
    onehot = torch.zeros_like(pred)
    fg = target > 0
    onehot[fg.nonzero()[:, 0], (target[fg] - 1).long()] = 1
    p = pred.sigmoid()
    pt = (1 - p) * onehot + p * (1 - onehot)
    weight = (alpha * onehot + (1 - alpha) * (1 - onehot)) * pt.pow(gamma)
    return torch.nn.functional.binary_cross_entropy_with_logits(
        pred, onehot, reduction='none') * weight


def nms_plus_one(dets, iou_thr, device_id=None):
    """Greedy NMS, areas (x2 - x1 + 1) * (y2 - y1 + 1), suppress when IoU >= thr."""
    if dets.shape[0] == 0:
        return dets, dets.new_zeros(0, dtype=torch.long)
    x1, y1, x2, y2, s = dets.unbind(1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = s.sort(descending=True)[1]
    suppressed = torch.zeros(len(dets), dtype=torch.bool)
    for a in range(len(order)):
        i = order[a]
        if suppressed[i]:
            continue
        for b in range(a + 1, len(order)):
            j = order[b]
            if suppressed[j]:
                continue
            w = (torch.min(x2[i], x2[j]) - torch.max(x1[i], x1[j]) + 1).clamp(min=0)
            h = (torch.min(y2[i], y2[j]) - torch.max(y1[i], y1[j]) + 1).clamp(min=0)
            inter = w * h
            if inter / (areas[i] + areas[j] - inter) >= iou_thr:
                suppressed[j] = True
    inds = (~suppressed).nonzero()[:, 0]
    return dets[inds], inds


class _Dummy:
    def __init__(self, *a, **k):
        raise RuntimeError('compiled op not available in the golden run')


def install_shims(repo):
    from mmengine.model import weight_init as wi
    mm = os.path.join(repo, 'mmdet')
    _module('IPython', embed=lambda *a, **k: None)
    _module('Polygon')
    _package('skimage')
    _module('skimage.io')
    _module('pylab')
    _module('imagecorruptions', corrupt=None)
    for name in [k for k in sys.modules if k == 'mmcv' or k.startswith('mmcv.')]:
        del sys.modules[name]
    _package('mmcv', is_str=lambda x: isinstance(x, str))
    _module('mmcv.cnn', normal_init=wi.normal_init, constant_init=wi.constant_init,
            kaiming_init=wi.kaiming_init, xavier_init=wi.xavier_init,
            uniform_init=wi.uniform_init)
    _module('mmcv.runner', load_checkpoint=lambda *a, **k: None)
    _module('mmcv.parallel', DataContainer=lambda x, **k: x)
    _package('mmdet')
    _module('mmdet.utils', Registry=Registry, build_from_cfg=build_from_cfg)
    _package('mmdet.ops', sigmoid_focal_loss=focal_loss_elementwise,
             ModulatedDeformConvPack=_Dummy, DeformConvPack=_Dummy, ContextBlock=_Dummy,
             DeformConv=_Dummy, ModulatedDeformConv=_Dummy)
    _package('mmdet.ops.nms')
    _module('mmdet.ops.nms.nms_wrapper', nms=nms_plus_one)
    sys.modules['mmdet.ops.nms'].nms_wrapper = sys.modules['mmdet.ops.nms.nms_wrapper']
    core = _package('mmdet.core', force_fp32=identity_decorator, auto_fp16=identity_decorator,
                    multi_apply=multi_apply)
    geometry = _load('mmdet.core.geometry', os.path.join(mm, 'core/bbox/geometry.py'))
    transforms = _load('mmdet.core.transforms', os.path.join(mm, 'core/bbox/transforms.py'))
    core.bbox_overlaps = geometry.bbox_overlaps
    core.distance2bbox = transforms.distance2bbox
    core.bbox_mask2result = transforms.bbox_mask2result
    nms = _load('mmdet.core.bbox_nms', os.path.join(mm, 'core/post_processing/bbox_nms.py'))
    core.multiclass_nms = nms.multiclass_nms
    core.multiclass_nms_with_mask = nms.multiclass_nms_with_mask
    _package('mmdet.models', os.path.join(mm, 'models'))
    _load('mmdet.models.registry', os.path.join(mm, 'models/registry.py'))
    _load('mmdet.models.builder', os.path.join(mm, 'models/builder.py'))
    _load('mmdet.models.utils', os.path.join(mm, 'models/utils/__init__.py'),
          [os.path.join(mm, 'models/utils')])
    _package('mmdet.models.plugins', GeneralizedAttention=_Dummy)
    _package('mmdet.models.losses', os.path.join(mm, 'models/losses'))
    for name in ('utils', 'focal_loss', 'iou_loss', 'mask_iou_loss', 'cross_entropy_loss'):
        _load(f'mmdet.models.losses.{name}', os.path.join(mm, f'models/losses/{name}.py'))
    _package('mmdet.models.anchor_heads', os.path.join(mm, 'models/anchor_heads'))
    head = _load('mmdet.models.anchor_heads.polarmask_head',
                 os.path.join(mm, 'models/anchor_heads/polarmask_head.py'))
    _package('mmdet.models.backbones', os.path.join(mm, 'models/backbones'))
    resnet = _load('mmdet.models.backbones.resnet', os.path.join(mm, 'models/backbones/resnet.py'))
    _package('mmdet.models.necks', os.path.join(mm, 'models/necks'))
    fpn = _load('mmdet.models.necks.fpn', os.path.join(mm, 'models/necks/fpn.py'))
    _package('mmdet.datasets', os.path.join(mm, 'datasets'))
    _module('mmdet.datasets.custom', CustomDataset=object)
    _module('mmdet.datasets.registry', DATASETS=Registry('dataset'))
    _module('mmdet.datasets.extra_aug', ExtraAugmentation=None)
    _module('mmdet.datasets.transforms', BboxTransform=None, ImageTransform=None,
            MaskTransform=None, Numpy2Tensor=None, SegMapTransform=None, SegmapTransform=None)
    _module('mmdet.datasets.utils', random_scale=None, to_tensor=None)
    coco_seg = _load('mmdet.datasets.coco_seg', os.path.join(mm, 'datasets/coco_seg.py'))
    torch.Tensor.cuda = lambda self, *a, **k: self
    real_find = cv2.findContours
    coco_seg.cv2 = types.SimpleNamespace(
        findContours=lambda *a, **k: tuple(list(r) if i == 0 else r
                                           for i, r in enumerate(real_find(*a, **k))),
        contourArea=cv2.contourArea, RETR_TREE=cv2.RETR_TREE,
        CHAIN_APPROX_NONE=cv2.CHAIN_APPROX_NONE)
    return head, coco_seg, resnet, fpn, transforms


# --------------------------------------------------------------------------- inputs
def synthetic_images():
    """Two images of (H, W): lists of uint8 masks and labels (1-based, mmdet 1.0)."""
    yy, xx = np.mgrid[:H, :W]

    def disk(cx, cy, r):
        return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)

    ring = disk(70, 60, 38) - disk(72, 58, 16)                      # object with a hole
    two_parts = np.zeros((H, W), np.uint8)
    two_parts[20:70, 150:200] = 1                                   # larger part
    two_parts[90:110, 215:240] = 1                                  # smaller part
    small = disk(200, 100, 6)
    tiny = np.zeros((H, W), np.uint8)
    tiny[10:13, 20:23] = 1                                          # 3 x 3
    u_shape = np.zeros((H, W), np.uint8)
    u_shape[30:110, 20:36] = 1
    u_shape[30:110, 84:100] = 1
    u_shape[94:110, 20:100] = 1                                     # centroid outside the U
    border = np.zeros((H, W), np.uint8)
    border[60:128, 200:256] = 1                                     # touches right/bottom
    overlap_a = disk(150, 64, 30)
    overlap_b = np.zeros((H, W), np.uint8)
    overlap_b[40:90, 125:185] = 1
    img0 = ([ring, two_parts, small, tiny], [1, 2, 3, 1])
    img1 = ([u_shape, border, overlap_a, overlap_b], [2, 3, 1, 3])
    return [img0, img1]


def legacy_box(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]   # x1 + w - 1, y1 + h - 1


def randomise(module, gen):
    """Random parameters with a spread that gives non-trivial predictions."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith('scales'):
                p.copy_(1.0 + 0.2 * torch.rand(p.shape, generator=gen))
            elif 'gn' in name and name.endswith('weight'):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        module.polar_cls.bias.add_(-1.5)
        module.polar_reg.bias.add_(float(np.log(20.0)))
        module.polar_mask.bias.add_(float(np.log(15.0)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    head_mod, coco_seg, resnet_mod, fpn_mod, transforms = install_shims(
        os.path.abspath(args.official_repo))

    # ---- head at small width
    norm = dict(type='GN', num_groups=4, requires_grad=True)
    head = head_mod.PolarMask_Head(
        num_classes=NUM_CLASSES, in_channels=CH, feat_channels=CH, stacked_convs=4,
        strides=STRIDES, norm_cfg=norm,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0))
    gen = torch.Generator().manual_seed(0)
    randomise(head, gen)
    feats = [torch.randn(2, CH, H // s, W // s, generator=gen) for s in STRIDES]
    with torch.no_grad():
        cls_scores, bbox_preds, centernesses, mask_preds = head(feats)

    # ---- targets (the dataset's code, per image)
    ds = coco_seg.Coco_Seg_Dataset.__new__(coco_seg.Coco_Seg_Dataset)
    ds.center_sample, ds.use_mask_center, ds.radius = True, True, 1.5
    ds.strides = STRIDES
    ds.regress_ranges = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, coco_seg.INF))
    featmap_sizes = ds.get_featmap_size((H, W))
    points = ds.get_points(featmap_sizes)
    ds.num_points_per_level = [p.size(0) for p in points]
    ranges = torch.cat([points[i].new_tensor(ds.regress_ranges[i])[None].expand_as(points[i])
                        for i in range(len(points))])
    all_points = torch.cat(points)
    images = synthetic_images()
    t_labels, t_boxes, t_rays, gt = [], [], [], []
    for masks, labels in images:
        boxes = np.array([legacy_box(m) for m in masks], np.float32)
        lab, box_t, ray_t = ds.polar_target_single(
            torch.Tensor(boxes), list(masks), torch.Tensor(labels), all_points, ranges)
        t_labels.append(lab)
        t_boxes.append(box_t)
        t_rays.append(ray_t)
        gt.append(dict(masks=torch.from_numpy(np.stack(masks)),
                       labels=torch.tensor(labels) - 1,
                       bboxes=torch.from_numpy(boxes) + torch.tensor([0., 0., 1., 1.])))
    extra = dict(_gt_labels=t_labels, _gt_bboxes=t_boxes, _gt_masks=t_rays)
    losses = head.loss(cls_scores, bbox_preds, centernesses, mask_preds, None, None, None, None,
                       None, extra_data=extra)

    # ---- predictions, rescaled to ORI (keep_ratio=False: per-axis scale factors)
    sx, sy = W / ORI[1], H / ORI[0]
    scale = np.array([sx, sy, sx, sy], dtype=np.float32)
    metas = [dict(img_shape=(H, W, 3), ori_shape=(ORI[0], ORI[1], 3), scale_factor=scale)
             for _ in range(2)]
    dets = head.get_bboxes(cls_scores, bbox_preds, centernesses, mask_preds, metas,
                           types.SimpleNamespace(**TEST_CFG, get=TEST_CFG.get), rescale=True)
    import pycocotools.mask as mask_util
    preds = []
    for (det_bboxes, det_labels, det_masks), meta in zip(dets, metas):
        bbox_res, mask_res = transforms.bbox_mask2result(det_bboxes, det_masks, det_labels,
                                                         NUM_CLASSES, meta)
        boxes, labels, masks = [], [], []
        for c in range(NUM_CLASSES - 1):   # per class, in detection order
            for b, rle in zip(bbox_res[c], mask_res[c]):
                boxes.append(torch.from_numpy(np.asarray(b)))
                labels.append(c)
                masks.append(mask_util.decode(rle).reshape(ORI))
        masks = np.stack(masks).astype(bool) if masks else np.zeros((0,) + ORI, bool)
        preds.append(dict(boxes=torch.stack(boxes) if boxes else torch.zeros(0, 5),
                          labels=torch.tensor(labels, dtype=torch.long),
                          masks_packed=torch.from_numpy(np.packbits(masks.reshape(-1))),
                          num=len(labels), contours=det_masks.clone()))

    # ---- full-width key layout of a released checkpoint (no weights saved)
    full_head = head_mod.PolarMask_Head(num_classes=81, in_channels=256, feat_channels=256,
                                        stacked_convs=4, strides=STRIDES,
                                        loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                                        loss_bbox=dict(type='IoULoss'),
                                        loss_centerness=dict(type='CrossEntropyLoss',
                                                             use_sigmoid=True))
    backbone = resnet_mod.ResNet(depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                                 frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
                                 style='caffe')
    neck = fpn_mod.FPN(in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,
                       add_extra_convs=True, extra_convs_on_inputs=False, num_outs=5,
                       relu_before_extra_convs=True)
    shapes = {}
    for prefix, mod in (('backbone.', backbone), ('neck.', neck), ('bbox_head.', full_head)):
        for k, v in mod.state_dict().items():
            shapes[prefix + k] = list(v.shape)

    golden = dict(
        config=dict(H=H, W=W, ori=list(ORI), strides=STRIDES, channels=CH,
                    num_classes=NUM_CLASSES - 1, gn_groups=4, stacked_convs=4,
                    test_cfg=dict(nms_pre=40, score_thr=0.05, iou_threshold=0.5,
                                  max_per_img=20)),
        state_dict={'bbox_head.' + k: v.clone() for k, v in head.state_dict().items()},
        feats=feats,
        forward=dict(cls=list(cls_scores), bbox=list(bbox_preds), ctr=list(centernesses),
                     rays=list(mask_preds)),
        gt=gt,
        targets=[dict(labels=lab.long() - 1, boxes=b, rays=r)
                 for lab, b, r in zip(t_labels, t_boxes, t_rays)],
        losses={k: float(v) for k, v in losses.items()},
        preds=preds,
        release_shapes=shapes,
    )
    # keep the fixture small: ray / box targets only at positive points
    for t in golden['targets']:
        pos = t['labels'] >= 0
        t['pos'] = pos.nonzero()[:, 0]
        t['boxes'], t['rays'] = t['boxes'][pos].clone(), t['rays'][pos].clone()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(golden, args.out)
    print('saved', args.out, {k: round(v, 6) for k, v in golden['losses'].items()},
          [int(t['pos'].numel()) for t in golden['targets']], [p['num'] for p in preds])


if __name__ == '__main__':
    main()
