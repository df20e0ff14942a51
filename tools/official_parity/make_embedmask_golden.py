"""Golden data of the official EmbedMask release (yinghdb/EmbedMask, maskrcnn-benchmark/FCOS).

The repository holds three revisions of the method; the released code and checkpoints are the
last one ("new version", commit e9d6142, May 2021: one margin per embedding dimension with a
learned per-level scale of the two spatial margins, ``EMBED_DIM: 16``, ``BOX_PADDING: -1``,
log-probability masks thresholded at ``log(MASK_TH)``). This script runs its head
(``fcos_core/modeling/rpn/embed_mask/embed_mask.py``), loss (``loss.py``), post-processor
(``inference.py``) and the COCO mask resizing of ``coco_eval.prepare_for_coco_segmentation`` on
CPU in float64, and saves inputs, the official-layout state_dict and outputs to
``tests/fixtures/official/embedmask/golden.pt``::

    python tools/official_parity/make_embedmask_golden.py --official-repo /path/to/EmbedMask

With ``--revision 2`` and a checkout of commit 28427b6 (the May 2020 revision: one margin per
proposal, ``EMBED_DIM: 8``, ``BOX_PADDING: 0.1``) it writes ``golden_rev2.pt`` with the
sampled points and the losses only, for insplug's ``per_dim_margin=False`` /
``box_padding=0.1`` options (inputs: those of ``golden.pt``, same seeds).

It needs ``yacs`` importable (e.g. ``pip install --target /tmp/pylib yacs`` and
``PYTHONPATH=/tmp/pylib``). Not run in CI. Nothing of the official code is copied here; it is
imported from ``--official-repo``. Run-time shims (stubs only):

* ``fcos_core._C`` (the compiled extension) is a stub module: ``nms`` / ``ml_nms`` are plain
  greedy NMS with the extension's ``+1`` box areas (ml_nms: boxes of different labels never
  suppress each other), ``maskprob_forward`` fills, like ``MaskProb_cuda.cu``, a
  ``(centres, pixels)`` map with -10 and writes ``-sum_d s_d (p_d - q_d)^2`` inside each
  integer box ``[x1, x2) x [y1, y2)``; the other kernels raise if called;
* ``sigmoid_focal_loss_cpu`` indexes ``gamma[0]`` / ``alpha[0]`` (it was written for tensors);
  the CPU path is called with one-element lists;
* ``lovasz_grad`` computes its Jaccard increments with ``.float()`` (float32, the only dtype
  of the released runs); they are cast to float64 so that ``torch.dot`` accepts float64 errors;
  its labels arrive as uint8, as comparisons returned under torch 1.1 (revision 2 computes
  ``1 - gt_sorted``, which fails on bool);
* torch 1.1 compatibility of the post-processor: element-wise ops returned contiguous tensors
  then, so ``Tensor.view`` of the sigmoid of a permuted map worked; during the test forward
  ``Tensor.view`` falls back to ``contiguous().view`` where the plain view is refused;
* ``Tensor.cuda`` is the identity inside ``prepare_for_coco_segmentation``.

Small widths: 32 channels, 2 tower convs, 3 foreground classes, FPN_INTEREST_SPLIT
(32, 64, 128, 256), PRE_NMS_TOP_N 30, DETECTIONS_PER_IMG 10, two images of 240 x 300 and
256 x 320 in a 256 x 320 batch; random features stand in for the FPN. The initial weights are
perturbed (seeded) so that candidates pass the score threshold and margins / scales differ from
their initial values. Features and weights are rounded to float32 values (stored as float32,
run in float64) to keep the fixture small, and so are the saved forward outputs and
low-resolution log-probability maps (float32 rounding, 6e-8 relative, is far below the tests'
1e-5); final masks are stored bit-packed (``numpy.packbits`` of the flattened (n, H, W)
array), like the ground-truth masks.
The key layout and shapes of a full-size released checkpoint (the R-50 model of
``embed_mask_R50_1x.yaml``, ``module.`` prefix) are saved too, for the converter's strict test.
"""
import argparse
import math
import os
import sys
import types

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'embedmask', 'golden.pt')
CHANNELS = 32
IMG_H, IMG_W = 256, 320
IMAGE_SIZES = [(240, 300), (256, 320)]      # (h, w) of the resized images inside the padding
ORIGINAL_SIZES = [(180, 225), (288, 360)]    # (h, w) of the original images
STRIDES = [8, 16, 32, 64, 128]
FEATURE_SEED = 7


# ----------------------------------------------------------------------------- shims
def _greedy_nms(boxes, scores, labels, thresh):
    order = scores.sort(descending=True)[1]
    b = boxes[order]
    lab = labels[order] if labels is not None else None
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    removed = torch.zeros(len(b), dtype=torch.bool)
    keep = []
    for i in range(len(b)):
        if removed[i]:
            continue
        keep.append(i)
        lt = torch.max(b[i, :2], b[i + 1:, :2])
        rb = torch.min(b[i, 2:], b[i + 1:, 2:])
        wh = (rb - lt + 1).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        iou = inter / (area[i] + area[i + 1:] - inter)
        if lab is not None:
            iou = torch.where(lab[i + 1:] == lab[i], iou, torch.zeros_like(iou))
        removed[i + 1:] |= iou > thresh
    return order[torch.tensor(keep, dtype=torch.long)]


def _maskprob_forward(embed_pixel, embed_center, sigma_center, boxes, box_areas, area_sum,
                      mask_width):
    num_pixel, num_center = embed_pixel.shape[0], embed_center.shape[0]
    height = num_pixel // mask_width
    pix = embed_pixel.t().reshape(-1, height, mask_width)
    out = embed_pixel.new_full((num_center, height, mask_width), -10.0)
    for c in range(num_center):
        x1, y1, x2, y2 = [int(v) for v in boxes[c]]
        if x2 <= x1 or y2 <= y1:
            continue
        d = pix[:, y1:y2, x1:x2] - embed_center[c][:, None, None]
        out[c, y1:y2, x1:x2] = -(d * d * sigma_center[c][:, None, None]).sum(0)
    return out.reshape(num_pixel, num_center)  # same memory order as the kernel's output


def install_shims(repo):
    sys.path.insert(0, repo)
    c_ext = types.ModuleType('fcos_core._C')
    c_ext.nms = lambda boxes, scores, thresh: _greedy_nms(boxes, scores, None, thresh)
    c_ext.ml_nms = lambda boxes, scores, labels, thresh: _greedy_nms(boxes, scores, labels,
                                                                     thresh)
    c_ext.maskprob_forward = _maskprob_forward

    def missing(name):
        if name.startswith('__'):
            raise AttributeError(name)

        def fn(*args, **kwargs):
            raise RuntimeError(f'fcos_core._C.{name} is not shimmed')
        return fn
    c_ext.__getattr__ = missing
    import fcos_core
    fcos_core._C = c_ext
    sys.modules['fcos_core._C'] = c_ext
    import fcos_core.layers.sigmoid_focal_loss as sfl
    cpu = sfl.sigmoid_focal_loss_cpu
    sfl.sigmoid_focal_loss_cpu = lambda logits, targets, gamma, alpha: cpu(
        logits, targets, [gamma], [alpha])
    import fcos_core.layers.lovasz_hinge_loss as lhl
    grad = lhl.lovasz_grad
    lhl.lovasz_grad = lambda gt_sorted: grad(gt_sorted.to(torch.uint8)).double()


_VIEW = torch.Tensor.view


def view_torch11(self, *shape):
    """``Tensor.view`` as under torch 1.1, where element-wise ops returned contiguous tensors
    (``sigmoid`` of a permuted map now keeps its strides and ``view`` would refuse it)."""
    try:
        return _VIEW(self, *shape)
    except RuntimeError:
        return _VIEW(self.contiguous(), *shape)


def load_file(name, path):
    """Import one official file without its package (``fcos_core.data`` imports torch._six)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- data
def ellipse(h, w, cy, cx, ry, rx, hole=0.0):
    yy, xx = np.mgrid[:h, :w]
    r = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2
    return ((r <= 1.0) & (r >= hole ** 2)).astype(np.uint8)


def make_targets():
    """Per image: masks (G, h, w) uint8 at the resized image size, boxes (G, 4), labels 1..3."""
    objs = [
        [  # image 0 (120 x 150): a ring (positives only on the ring), two overlapping, a large
            dict(c=(80, 90, 48, 60, 0.55), label=1),
            dict(c=(140, 200, 24, 32, 0.0), label=2),
            dict(c=(156, 216, 18, 14, 0.0), label=3),
            dict(c=(120, 150, 110, 140, 0.0), label=2),
        ],
        [  # image 1 (128 x 160): medium, small, and a tiny one that gets no positive point
            dict(c=(128, 100, 60, 44, 0.0), label=3),
            dict(c=(60, 240, 20, 24, 0.0), label=1),
            dict(c=(220, 280, 2.4, 2.4, 0.0), label=2),
        ],
    ]
    out = []
    for (h, w), im in zip(IMAGE_SIZES, objs):
        masks = np.stack([ellipse(h, w, *o['c']) for o in im])
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0])
        out.append(dict(masks=torch.from_numpy(masks),
                        boxes=torch.tensor(boxes, dtype=torch.float64),
                        labels=torch.tensor([o['label'] for o in im], dtype=torch.long)))
    return out


def perturb(module, gen):
    """Seeded, non-degenerate weights (names are the official ones)."""
    for name, p in module.named_parameters():
        n = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        u = torch.rand(p.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            if name.startswith('scales.'):
                p.copy_(0.8 + 0.4 * u)
            elif name.startswith('margin_scales.'):
                p.copy_(0.5 + u)
            elif name.startswith('position_scale'):
                p.copy_(torch.full_like(p, 5.0))
            elif name == 'cls_logits.weight':
                p.copy_(0.1 * n)
            elif name == 'cls_logits.bias':
                p.copy_(-2.0 + 0.05 * n)
            elif name == 'bbox_pred.bias':
                p.copy_(1.0 + 0.1 * n)
            elif name == 'proposal_margin_pred.bias':
                p.copy_(-0.5 + 0.3 * n)
            elif name.endswith('other_embed_pred.weight'):
                p.copy_(0.01 * n)
            elif name.endswith('spatial_embed_pred.weight'):
                p.copy_(0.02 * n)
            elif p.dim() == 4:
                p.copy_(0.05 * n)
            elif '.weight' in name:  # GroupNorm
                p.copy_(1.0 + 0.1 * n)
            else:
                p.copy_(0.1 * n)


def save(out, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(out, path)
    torch.load(path, weights_only=True)
    print('saved', os.path.abspath(path), f'{os.path.getsize(path) / 1e6:.2f} MB')
    for k, v in out['losses'].items():
        print(f'  {k}: {float(v):.6f}')
    print('  sampled points', out['targets']['sample_index'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=None)
    parser.add_argument('--revision', type=int, default=3, choices=[2, 3],
                        help='3: the released code (HEAD, e9d6142); 2: a checkout of the May '
                             '2020 revision (28427b6), training outputs only')
    args = parser.parse_args()
    if args.out is None:
        args.out = OUT if args.revision == 3 else OUT.replace('golden.pt', 'golden_rev2.pt')
    repo = os.path.abspath(args.official_repo)
    install_shims(repo)

    from fcos_core.config import cfg as base_cfg
    from fcos_core.modeling.rpn.embed_mask.embed_mask import EmbedMaskModule
    from fcos_core.structures.bounding_box import BoxList
    from fcos_core.structures.image_list import ImageList
    from fcos_core.structures.segmentation_mask import SegmentationMask

    cfg = base_cfg.clone()
    cfg.merge_from_file(os.path.join(repo, 'configs', 'embed_mask', 'embed_mask_R50_1x.yaml'))
    cfg.merge_from_list([
        'MODEL.EMBED_MASK.NUM_CLASSES', 4, 'MODEL.FCOS.NUM_CONVS', 2,
        'MODEL.EMBED_MASK.FPN_INTEREST_SPLIT', (32, 64, 128, 256),
        'MODEL.EMBED_MASK.PRE_NMS_TOP_N', 30, 'TEST.DETECTIONS_PER_IMG', 10])
    cfg.freeze()
    e = cfg.MODEL.EMBED_MASK

    torch.manual_seed(0)
    module = EmbedMaskModule(cfg, CHANNELS).double()
    gen = torch.Generator().manual_seed(20240601)
    perturb(module.head, gen)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.float().double())

    # the same features for both revisions (their own generator)
    fgen = torch.Generator().manual_seed(FEATURE_SEED)
    feats = [torch.randn(2, CHANNELS, math.ceil(IMG_H / s), math.ceil(IMG_W / s),
                         generator=fgen).double() for s in STRIDES]
    images = ImageList(torch.zeros(2, 3, IMG_H, IMG_W, dtype=torch.float64), IMAGE_SIZES)
    gts = make_targets()
    targets = []
    for (h, w), g in zip(IMAGE_SIZES, gts):
        t = BoxList(g['boxes'], (w, h), mode='xyxy')
        t.add_field('labels', g['labels'])
        t.add_field('masks', SegmentationMask(g['masks'], (w, h), mode='mask'))
        targets.append(t)

    out = dict(
        official_commit='e9d6142 (yinghdb/EmbedMask "new version")' if args.revision == 3
        else '28427b6 (yinghdb/EmbedMask, May 2020 revision)',
        config=dict(embed_dim=e.EMBED_DIM, prior_margin=e.PRIOR_MARGIN,
                    mask_scale_factor=e.MASK_SCALE_FACTOR, box_padding=e.BOX_PADDING,
                    loss_mask_alpha=e.LOSS_MASK_ALPHA, mask_th=e.MASK_TH,
                    margin_reduce_factor=e.get('MARGIN_REDUCE_FACTOR', 32),  # rev 2: literal
                    embed_reduce_factor=e.get('EMBED_REDUCE_FACTOR', 1),
                    per_dim_margin=args.revision == 3,
                    center_radius=e.CENTER_POS_RADIOS, interest=list(e.FPN_INTEREST_SPLIT),
                    inference_th=e.INFERENCE_TH, pre_nms_top_n=e.PRE_NMS_TOP_N,
                    nms_th=e.NMS_TH, detections_per_img=cfg.TEST.DETECTIONS_PER_IMG,
                    num_convs=cfg.MODEL.FCOS.NUM_CONVS, num_classes=e.NUM_CLASSES - 1,
                    channels=CHANNELS, strides=STRIDES),
        state_dict={'rpn.' + k: v.float().clone() for k, v in module.state_dict().items()},
        features=[f.float() for f in feats], image_sizes=[list(s) for s in IMAGE_SIZES],
        original_sizes=[list(s) for s in ORIGINAL_SIZES], pad_shape=[IMG_H, IMG_W],
        gt_boxes=[g['boxes'] for g in gts], gt_labels=[g['labels'] for g in gts],
        gt_masks_packed=[torch.from_numpy(np.packbits(g['masks'].numpy().reshape(-1).astype(bool)))
                         for g in gts],
        gt_masks_shape=[list(g['masks'].shape) for g in gts], feature_seed=FEATURE_SEED)

    # ---------------- training: forward, targets, embedding sampling, mask targets, losses
    module.train()
    locations = module.compute_locations(feats)
    cls, reg, ctr, emb, mar, pix = module.head(feats, locations)
    out['train'] = dict(cls=[c.detach().float() for c in cls],
                        reg=[r.detach().float() for r in reg],
                        ctr=[c.detach().float() for c in ctr],
                        embed=[x.detach().float() for x in emb],
                        margin=[m.detach().float() for m in mar], pixel=pix.detach().float())
    ev = module.loss_evaluator
    im_h = cls[4].shape[2] * ev.fpn_strides[4]
    im_w = cls[4].shape[3] * ev.fpn_strides[4]
    _, _, labels, reg_targets, matched = ev.prepare_targets(locations, targets, im_w, im_h)
    sample_index = ev.get_pos_proposal_indexes(locations, reg, matched, targets)
    n, _, m_h, m_w = pix.shape
    masks_t = ev.prepare_masks(m_h * e.MASK_SCALE_FACTOR, m_w * e.MASK_SCALE_FACTOR,
                               int(m_h * ev.fpn_strides[0]), int(m_w * ev.fpn_strides[0]),
                               [g['masks'] for g in gts])
    losses = ev(locations, cls, reg, ctr, emb, mar, pix, targets)
    out['targets'] = dict(labels=[x.clone() for x in labels],
                          reg_targets=[x.clone() for x in reg_targets],
                          matched=[x.clone() for x in matched],
                          sample_index=[x.clone() for x in sample_index],
                          mask_targets=[x.clone() for x in masks_t])
    out['losses'] = dict(zip(['loss_cls', 'loss_reg', 'loss_centerness', 'loss_mask'],
                             [x.detach().clone() for x in losses]))

    if args.revision == 2:
        # the loss path of the earlier revision; inputs (features, ground truth, sizes) and
        # FCOS targets are those of golden.pt (same seeds), forward maps are not kept
        for key in ('train', 'features', 'gt_boxes', 'gt_labels', 'gt_masks_packed',
                    'gt_masks_shape'):
            del out[key]
        out['targets'] = dict(sample_index=out['targets']['sample_index'])
        out['inputs_from'] = 'golden.pt'
        out['feature_seed'] = FEATURE_SEED
        save(out, args.out)
        return

    # ---------------- inference: forward, detections, low-res log-probability maps, masks
    module.eval()
    view = torch.Tensor.view
    torch.Tensor.view = view_torch11
    try:
        with torch.no_grad():
            cls, reg, ctr, emb, mar, pix = module.head(feats, locations)
            boxlists, _ = module(images, feats)
    finally:
        torch.Tensor.view = view
    out['test'] = dict(reg=[r.float() for r in reg])
    dets = []
    for i, b in enumerate(boxlists):
        dets.append(dict(boxes=b.bbox.clone(), scores=b.get_field('scores').clone(),
                         labels=b.get_field('labels').clone(),
                         logprob=b.get_field('mask').float(),
                         stride=float(b.get_field('stride')),
                         mask_th=float(b.get_field('mask_th'))))

    class FakeDataset:
        id_to_img_map = {0: 0, 1: 1}
        contiguous_category_id_to_json_id = {k: k for k in range(1, 4)}

        @staticmethod
        def get_img_info(i):
            return dict(height=ORIGINAL_SIZES[i][0], width=ORIGINAL_SIZES[i][1])

    import pycocotools.mask as mask_util
    coco_eval = load_file('embedmask_official_coco_eval', os.path.join(
        repo, 'fcos_core', 'data', 'datasets', 'evaluation', 'coco', 'coco_eval.py'))
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        results = coco_eval.prepare_for_coco_segmentation(boxlists, FakeDataset())
    finally:
        torch.Tensor.cuda = cuda
    for i, d in enumerate(dets):
        rles = [r['segmentation'] for r in results if r['image_id'] == i]
        if rles:
            for r in rles:
                r['counts'] = r['counts'].encode('utf-8') if isinstance(r['counts'], str) \
                    else r['counts']
            masks = mask_util.decode(rles).transpose(2, 0, 1).astype(bool)
        else:
            masks = np.zeros((0,) + tuple(ORIGINAL_SIZES[i]), dtype=bool)
        d['masks_packed'] = torch.from_numpy(np.packbits(masks.reshape(-1)))
        d['masks_shape'] = list(masks.shape)
        d['mask_pixels'] = int(masks.sum())
        d['json_scores'] = torch.tensor([r['score'] for r in results if r['image_id'] == i],
                                        dtype=torch.float64)
    out['detections'] = dets

    # key layout and shapes of a released checkpoint (the full R-50 model of the released
    # config, as saved from DistributedDataParallel: 'module.' prefix), for the converter's
    # strict-load test against configs/embedmask/embedmask_r50_1x.py
    from fcos_core.modeling.detector import build_detection_model
    full_cfg = base_cfg.clone()
    full_cfg.merge_from_file(os.path.join(repo, 'configs', 'embed_mask',
                                          'embed_mask_R50_1x.yaml'))
    full_cfg.freeze()
    full = build_detection_model(full_cfg)
    out['full_key_shapes'] = {'module.' + k: list(v.shape) for k, v in full.state_dict().items()}

    save(out, args.out)
    for i, d in enumerate(dets):
        print(f'  image {i}: {len(d["boxes"])} detections, mask pixels {d["mask_pixels"]}')


if __name__ == '__main__':
    main()
