"""Golden data of the official RefineMask release (zhanggang001/RefineMask, mmdet 2.3).

Runs, on CPU, the official

* ``RefineMaskHead`` (mmdet/models/roi_heads/mask_heads/refine_mask_head.py): forward (every
  stage's logits and the semantic logits) at small widths, ``get_targets`` (per-stage targets of
  bitmap AND polygon masks, semantic target) and ``get_seg_masks`` (pasting);
* ``RefineRoIHead`` (mmdet/models/roi_heads/refine_roi_head.py): the semantic-target resize of
  ``_mask_forward_train`` and ``simple_test_mask`` (boundary-aware stage merging + pasting);
* ``RefineCrossEntropyLoss`` and ``generate_block_target``
  (mmdet/models/losses/cross_entropy_loss.py): each stage's loss term and the semantic loss;

and saves inputs, the official-layout state_dict and outputs to
``tests/fixtures/official/refinemask/golden.pt``::

    python tools/official_parity/make_refinemask_golden.py --official-repo /path/to/RefineMask

Not run in CI. Nothing of the official code is copied here: the official files are imported from
``--official-repo``. What this script adds are run-time stubs of the framework they import
(mmcv 1.x and the parts of mmdet 2.3 outside those files), written here from scratch:

* ``mmcv.cnn.ConvModule`` (conv with bias + optional ReLU, keys ``conv.*`` as in mmcv),
  ``build_upsample_layer`` (``nn.Upsample``, mmcv's 'bilinear' type);
* ``mmcv.ops.roi_align`` / ``RoIAlign`` -> ``torchvision.ops.roi_align`` (avg mode, aligned);
* ``mmdet.models.builder`` (``HEADS``/``LOSSES`` registries, ``build_loss`` builds the official
  loss class, ``build_roi_extractor`` a one-level RoIAlign, which is what mmdet 2.3's
  ``SingleRoIExtractor`` does with one feature level);
* ``mmcv.impad`` (bottom/right padding), ``mmdet.core.bbox2roi`` and no-op decorators;
  ``StandardRoIHead`` as an empty base class.

The mmdet 2.3 package ``__init__`` files are not executed (the packages are registered empty, with
their ``__path__`` on the official tree), so only the files named above are loaded, plus the
official ``mmdet/core/mask/structures.py`` (BitmapMasks / PolygonMasks), ``fcn_mask_head.py``
(``_do_paste_mask``) and ``mmdet/models/losses/utils.py``.
"""
import argparse
import importlib
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torchvision

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'refinemask', 'golden.pt')

# small widths (official: 256 everywhere, 80 classes)
NUM_CLASSES = 3
IN_CH = 16          # FPN channels (instance and semantic inputs)
INST_CH = 32        # conv_out_channels_instance: stages run at 32 -> 16 -> 8 -> 4
SEM_CH = 16         # conv_out_channels_semantic
STAGE_SUP_SIZE = [14, 28, 56, 112]
STAGE_WEIGHTS = [0.25, 0.5, 0.75, 1.0]
PAD_H, PAD_W = 96, 128   # padded batch input; semantic map at stride 4: 24 x 32


# ------------------------------------------------------------------ run-time stubs
class _Any:
    """Placeholder for names the official files import but never use here."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        if len(a) == 1 and callable(a[0]) and not k:
            return a[0]          # used as a decorator
        return lambda f: f       # used as a decorator factory, e.g. @auto_fp16()


class _Registry:
    def __init__(self):
        self.modules = {}

    def register_module(self, *a, **k):
        def deco(cls):
            self.modules[cls.__name__] = cls
            return cls
        if a and isinstance(a[0], type):
            return deco(a[0])
        return deco

    def build(self, cfg):
        cfg = dict(cfg)
        return self.modules[cfg.pop('type')](**cfg)


class ConvModule(nn.Module):
    """mmcv.cnn.ConvModule without norm: conv (bias) then ReLU unless act_cfg is None."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias='auto', conv_cfg=None, norm_cfg=None,
                 act_cfg=dict(type='ReLU'), **kwargs):
        super().__init__()
        assert norm_cfg is None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                              groups, bias=True)
        self.act = nn.ReLU() if act_cfg is not None else None

    def forward(self, x):
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


def build_upsample_layer(cfg):
    cfg = dict(cfg)
    mode = cfg.pop('type')
    return nn.Upsample(mode=mode, **cfg)


def mmcv_roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=0,
                   pool_mode='avg', aligned=True):
    assert pool_mode == 'avg'
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    return torchvision.ops.roi_align(input, rois.to(input.dtype), tuple(output_size),
                                     spatial_scale, sampling_ratio, aligned)


class OneLevelRoIExtractor(nn.Module):
    """mmdet 2.3 SingleRoIExtractor with one level: RoIAlign(out, 1/stride, 0, aligned)."""

    def __init__(self, roi_layer, out_channels, featmap_strides):
        super().__init__()
        assert len(featmap_strides) == 1
        self.out_size = roi_layer['output_size']
        self.scale = 1.0 / featmap_strides[0]
        self.sampling_ratio = roi_layer.get('sampling_ratio', 0)

    def forward(self, feats, rois):
        return mmcv_roi_align(feats[0], rois, self.out_size, self.scale, self.sampling_ratio)


def impad(img, shape, pad_val=0):
    """mmcv.impad(img, shape=...): pad bottom/right to ``shape``."""
    out = np.full(tuple(shape) + img.shape[2:], pad_val, dtype=img.dtype)
    out[:img.shape[0], :img.shape[1]] = img
    return out


def bbox2roi(bbox_list):
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        inds = bboxes.new_full((bboxes.size(0), 1), img_id)
        rois.append(torch.cat([inds, bboxes[:, :4]], dim=-1))
    return torch.cat(rois, 0)


def _pkg(name, path=None, **attrs):
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [path]
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


def install_stubs(repo):
    any_ = _Any()
    HEADS, LOSSES = _Registry(), _Registry()
    # mmcv 1.x
    mmcv = _pkg('mmcv', None, impad=impad)
    mmcv.__path__ = []
    _pkg('mmcv.cnn', None, ConvModule=ConvModule, build_upsample_layer=build_upsample_layer,
         Conv2d=nn.Conv2d)
    ops = _pkg('mmcv.ops', None, Conv2d=nn.Conv2d, SimpleRoIAlign=_Any, roi_align=mmcv_roi_align)
    ops.__path__ = []
    _pkg('mmcv.ops.roi_align', None, roi_align=mmcv_roi_align)
    _pkg('mmcv.ops.carafe', None, CARAFEPack=_Any)
    # mmdet 2.3: packages registered empty (their __init__ is not run), files loaded from repo
    root = os.path.join(repo, 'mmdet')
    _pkg('mmdet', root)
    _pkg('mmdet.core', os.path.join(root, 'core'), bbox2roi=bbox2roi, auto_fp16=any_,
         force_fp32=any_, mask_target=any_)
    _pkg('mmdet.core.mask', os.path.join(root, 'core', 'mask'))
    _pkg('mmdet.models', os.path.join(root, 'models'))
    _pkg('mmdet.models.builder', None, HEADS=HEADS, LOSSES=LOSSES, build_loss=LOSSES.build,
         build_roi_extractor=lambda cfg: OneLevelRoIExtractor(
             **{k: v for k, v in cfg.items() if k != 'type'}))
    _pkg('mmdet.models.losses', os.path.join(root, 'models', 'losses'))
    _pkg('mmdet.models.roi_heads', os.path.join(root, 'models', 'roi_heads'))
    _pkg('mmdet.models.roi_heads.standard_roi_head', None, StandardRoIHead=type(
        'StandardRoIHead', (nn.Module,), {}))
    _pkg('mmdet.models.roi_heads.mask_heads',
         os.path.join(root, 'models', 'roi_heads', 'mask_heads'))
    imp = importlib.import_module
    return dict(
        head=imp('mmdet.models.roi_heads.mask_heads.refine_mask_head'),
        roi_head=imp('mmdet.models.roi_heads.refine_roi_head'),
        loss=imp('mmdet.models.losses.cross_entropy_loss'),
        structures=imp('mmdet.core.mask.structures'))


# ------------------------------------------------------------------ inputs
def random_state(module, gen, dtype):
    """Every parameter ~ N(0, 0.1^2) (biases non-zero), so no weight is a trivial init."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) * 0.1)


def make_gt(gen):
    """Two images (sizes inside the padded batch) with polygon instances."""
    images = [
        dict(size=(96, 120), polys=[
            [[10.0, 12.0, 60.0, 8.0, 70.0, 50.0, 30.0, 70.0, 8.0, 40.0]],
            [[62.0, 30.0, 110.0, 28.0, 114.0, 90.0, 66.0, 80.0]],
            [[20.0, 60.0, 44.0, 58.0, 50.0, 90.0, 18.0, 92.0],
             [70.0, 82.0, 80.0, 82.0, 80.0, 92.0, 70.0, 92.0]]]),   # two parts
        dict(size=(80, 100), polys=[
            [[5.0, 5.0, 45.0, 10.0, 40.0, 60.0, 10.0, 55.0]],
            [[50.5, 20.5, 95.0, 15.0, 90.0, 75.0, 55.0, 70.0, 60.0, 40.0]]]),
    ]
    for img in images:
        img['polys'] = [[np.array(p, dtype=np.float64) for p in inst] for inst in img['polys']]
    return images


def proposals(gt_boxes, gen, count, size):
    """Jittered copies of GT boxes inside the image (as RPN proposals and GT boxes are)."""
    n = gt_boxes.shape[0]
    inds = torch.arange(count) % n
    jitter = torch.randn(count, 4, generator=gen, dtype=torch.float64) * 6.0
    boxes = gt_boxes[inds] + jitter
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 4)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, size[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, size[0])
    return boxes.float(), inds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    mods = install_stubs(os.path.abspath(args.official_repo))
    structures = mods['structures']
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dtype = torch.float64

    loss_cfg = dict(type='RefineCrossEntropyLoss', stage_instance_loss_weight=STAGE_WEIGHTS,
                    semantic_loss_weight=1.0, boundary_width=2, start_stage=1)
    head_cfg = dict(
        num_convs_instance=2, num_convs_semantic=4, conv_in_channels_instance=IN_CH,
        conv_in_channels_semantic=IN_CH, conv_out_channels_instance=INST_CH,
        conv_out_channels_semantic=SEM_CH, dilations=[1, 3, 5], semantic_out_stride=4,
        mask_use_sigmoid=True, stage_num_classes=[NUM_CLASSES] * 4,
        stage_sup_size=STAGE_SUP_SIZE, upsample_cfg=dict(type='bilinear', scale_factor=2),
        loss_cfg=loss_cfg)
    head = mods['head'].RefineMaskHead(**head_cfg).to(dtype)
    random_state(head, gen, dtype)
    head.eval()

    # ---- ground truth: polygons and their bitmaps. mmdet 2.3's Pad(size_divisor=32) pads the
    # masks of each image to its pad shape (here both images pad to 96 x 128); insplug (mmdet
    # 3.x) gets the unpadded masks, saved below.
    images = make_gt(gen)
    poly_masks, bit_masks, gt_boxes, gt_labels, unpadded = [], [], [], [], []
    for i, img in enumerate(images):
        h, w = img['size']
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        pm = structures.PolygonMasks(img['polys'], h, w)
        unpadded.append(pm.to_ndarray())
        poly_masks.append(pm.pad((ph, pw)))
        bit_masks.append(structures.BitmapMasks(pm.to_ndarray(), h, w).pad((ph, pw)))
        boxes = torch.tensor(np.stack([np.concatenate(
            [np.min(np.concatenate([p.reshape(-1, 2) for p in inst]), 0),
             np.max(np.concatenate([p.reshape(-1, 2) for p in inst]), 0)])
            for inst in img['polys']]))
        gt_boxes.append(boxes)
        gt_labels.append(torch.arange(len(img['polys'])) % NUM_CLASSES)
    pos_bboxes, pos_inds = [], []
    for i, boxes in enumerate(gt_boxes):
        b, inds = proposals(boxes, gen, 3, images[i]['size'])
        pos_bboxes.append(b)
        pos_inds.append(inds)
    pos_labels = [gt_labels[i][pos_inds[i]] for i in range(len(images))]

    # ---- targets (official get_targets on bitmap and on polygon masks)
    stage_t_bit, sem_t_bit = head.get_targets(pos_bboxes, pos_inds, bit_masks)
    stage_t_poly, sem_t_poly = head.get_targets(pos_bboxes, pos_inds, poly_masks)

    # ---- forward (float64): RoI features of the positive boxes, finest FPN level
    finest = torch.randn(2, IN_CH, PAD_H // 4, PAD_W // 4, generator=gen, dtype=dtype)
    rois = bbox2roi([b.to(dtype) for b in pos_bboxes])
    roi_feats = torch.randn(rois.shape[0], IN_CH, 14, 14, generator=gen, dtype=dtype)
    labels = torch.cat(pos_labels)
    with torch.no_grad():
        stage_preds, semantic_pred = head(roi_feats, finest, rois, labels)

    # ---- semantic target resize of RefineRoIHead._mask_forward_train, then the losses
    # (the official function body, run on a stand-in ``self`` that only has ``mask_head``)
    captured = {}

    class _Head:  # forwards to the official head, records the loss inputs
        stage_num_classes = head.stage_num_classes

        def get_targets(self, *a):
            return head.get_targets(*a)

        def loss(self, *a):
            captured['loss_inputs'] = a
            return head.loss(*a)

    class _Self:
        mask_head = _Head()

        def _mask_forward(self, x, rois_, labels_):
            with torch.no_grad():
                s, p = head(roi_feats, x[0], rois_, labels_)
            return dict(stage_instance_preds=s, semantic_pred=p)

    class _Res:
        def __init__(self, b, inds, lab):
            self.pos_bboxes, self.pos_assigned_gt_inds, self.pos_gt_labels = b, inds, lab

    sampling = [_Res(b, inds, lab) for b, inds, lab in zip(pos_bboxes, pos_inds, pos_labels)]
    RefineRoIHead = mods['roi_head'].RefineRoIHead
    results = RefineRoIHead._mask_forward_train(_Self(), [finest], sampling, None, gt_boxes,
                                                bit_masks, gt_labels, None)
    stage_preds_l, semantic_pred_l, stage_targets_l, semantic_target_l = captured['loss_inputs']
    semantic_target = semantic_target_l
    total_loss_instance = results['loss_mask']['loss_instance']
    loss_semantic = results['loss_semantic']['loss_semantic']
    LossCls = mods['loss'].RefineCrossEntropyLoss
    assert all(torch.equal(a, b) for a, b in zip(stage_targets_l, stage_t_bit))
    # each stage's term (float64 targets): the official loss with one-hot stage weights
    stage_losses = []
    for k in range(len(STAGE_SUP_SIZE)):
        onehot = [1.0 if j == k else 0.0 for j in range(len(STAGE_SUP_SIZE))]
        fn = LossCls(stage_instance_loss_weight=onehot, semantic_loss_weight=1.0,
                     boundary_width=2, start_stage=1)
        li, loss_semantic64 = fn(stage_preds_l, semantic_pred_l,
                                 [t.to(dtype) for t in stage_targets_l],
                                 semantic_target_l.to(dtype))
        stage_losses.append(li)

    # ---- boundary ("block") targets of the official loss
    gbt = mods['loss'].generate_block_target
    block_targets = {f'w{w}_stage{k}': gbt(stage_t_bit[k], boundary_width=w).to(torch.uint8)
                     for w in (1, 2) for k in range(3)}

    # ---- test time: simple_test_mask (float32, as at inference) on one image, rescaled
    head32 = mods['head'].RefineMaskHead(**head_cfg)
    head32.load_state_dict({k: v.float() for k, v in head.state_dict().items()})
    head32.eval()
    scale = np.array([1.25, 1.2, 1.25, 1.2], dtype=np.float32)   # w, h, w, h
    ori_shape = (80, 96, 3)
    det = torch.tensor([[4.0, 6.0, 40.0, 50.0, 0.9], [30.5, 10.2, 75.3, 70.8, 0.8],
                        [0.0, 0.0, 96.0, 80.0, 0.7], [50.0, 40.0, 52.0, 43.0, 0.6],
                        [60.2, 5.1, 95.9, 79.5, 0.5]], dtype=torch.float32)
    det_labels = torch.tensor([0, 1, 2, 1, 0])
    finest32 = finest[:1].float()
    test_rois = bbox2roi([det[:, :4] * torch.from_numpy(scale)])
    test_feats = mmcv_roi_align(finest32, test_rois, 14, 0.25, 0)

    class _TestSelf:
        mask_head = head32
        test_cfg = types.SimpleNamespace(mask_thr_binary=0.5)

        def _mask_forward(self, x, rois_, labels_):
            with torch.no_grad():
                s, p = head32(test_feats, x[0], rois_, labels_)
            return dict(stage_instance_preds=s, semantic_pred=p)

    img_metas = [dict(ori_shape=ori_shape, scale_factor=scale)]
    with torch.no_grad():
        segm = RefineRoIHead.simple_test_mask(_TestSelf(), [finest32], img_metas, det,
                                              det_labels, rescale=True)
    # per-class lists back to detection order
    order, masks_by_det = {}, []
    for c in range(NUM_CLASSES):
        order[c] = iter(segm[c])
    for c in det_labels.tolist():
        masks_by_det.append(torch.from_numpy(next(order[c])))
    test_masks = torch.stack(masks_by_det)

    out = dict(
        config=dict(num_classes=NUM_CLASSES, in_channels=IN_CH, inst_channels=INST_CH,
                    sem_channels=SEM_CH, stage_sup_size=STAGE_SUP_SIZE,
                    stage_weights=STAGE_WEIGHTS, boundary_width=2, start_stage=1,
                    pad_shape=[PAD_H, PAD_W]),
        state_dict={k: v.clone() for k, v in head.state_dict().items()},
        # ground truth
        gt_sizes=[list(img['size']) for img in images],
        gt_polygons=[[[p.tolist() for p in inst] for inst in img['polys']] for img in images],
        gt_bitmaps=[torch.from_numpy(m.astype(np.uint8)) for m in unpadded],
        gt_labels=gt_labels,
        pos_bboxes=pos_bboxes, pos_assigned_gt_inds=pos_inds, pos_labels=pos_labels,
        # targets
        stage_targets_bitmap=[t.to(torch.uint8) for t in stage_t_bit],
        stage_targets_polygon=[t.to(torch.uint8) for t in stage_t_poly],
        semantic_target_full=sem_t_bit.to(torch.uint8),
        semantic_target=semantic_target.to(torch.uint8),
        block_targets=block_targets,
        # forward
        finest=finest, rois=rois, roi_feats=roi_feats, roi_labels=labels,
        stage_preds=[p[:, 0] for p in stage_preds], semantic_pred=semantic_pred[:, 0],
        # losses
        # loss_instance_roi_head / loss_semantic_roi_head: the RefineRoIHead path, whose targets
        # are float32 (so the official loss runs partly in float32); the float64 terms:
        stage_losses=stage_losses, loss_semantic=loss_semantic64,
        loss_instance_roi_head=total_loss_instance, loss_semantic_roi_head=loss_semantic,
        # test
        test_finest=finest32, test_det=det, test_labels=det_labels,
        test_scale_factor=torch.from_numpy(scale), test_ori_shape=list(ori_shape[:2]),
        test_rois=test_rois, test_roi_feats=test_feats, test_masks=test_masks,
    )
    # key layout and shapes of the official head at the released size (configs/refinemask/coco/
    # r50-refinemask-1x.py: 256 channels, 80 classes), for the converter's strict-load test
    full = mods['head'].RefineMaskHead(**dict(
        head_cfg, conv_in_channels_instance=256, conv_in_channels_semantic=256,
        conv_out_channels_instance=256, conv_out_channels_semantic=256,
        stage_num_classes=[80] * 4))
    out['full_size_shapes'] = {k: list(v.shape) for k, v in full.state_dict().items()}

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(out, args.out)
    print('saved', os.path.abspath(args.out), f'{os.path.getsize(args.out) / 1e6:.2f} MB')
    print('losses', [float(x) for x in stage_losses], float(total_loss_instance),
          float(loss_semantic64), float(loss_semantic))
    print('test mask pixels', test_masks.sum((1, 2)).tolist())


if __name__ == '__main__':
    main()
