"""Run MNC's CFM data layer (daijifeng001/MNC, the official code of the segment classifier that
InstanceFCN's paper uses) next to insplug's classifier targets / sampling / mask inputs.

    python tools/official_parity/check_instancefcn_classifier_mnc.py --official-repo /tmp/official/MNC

MNC is Caffe (Python 2) with CUDA-only RoI layers, so only the CPU-side Python of its CFM
mode runs here: ``lib/pylayer/cfm_data_layer.py`` (``CFMDataLayer._sample_blobs``: the 64-RoI
sampling by box IoU, the box / segment labels, the 14 x 14 binarised mask inputs). Shims are
created at run time in a temp dir: ``caffe`` (a ``Layer`` base class), ``easydict`` (attribute
dict), ``utils.cython_bbox`` (numpy box overlaps) and ``xrange``. The roidb is synthetic: R
random rectangle-union segments in a 96 x 128 image with N objects; its overlaps come from the
segments' geometry (insplug's box / mask IoU), as MNC's offline roidb would hold them.

Prints, over several seeds: the number of sampled RoIs per IoU range (MNC vs insplug),
label disagreements on MNC's sampled RoIs (MNC ``mask_label`` vs
``insplug.core.instancefcn.classifier_targets``), and the differing pixels of the 14 x 14 mask
inputs (MNC: ``cv2.resize`` of the crop, >= 0.4; insplug: ``segment_mask_inputs``).
Nothing is written; CI does not run this (no network, no official code).
"""
import argparse
import builtins
import contextlib
import io
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import torch

from insplug.core.instancefcn import classifier_targets, sample_segments, segment_mask_inputs

SHIMS = {
    'caffe/__init__.py': 'class Layer(object):\n    pass\n',
    'easydict/__init__.py': (
        'class EasyDict(dict):\n'
        '    def __getattr__(self, k):\n'
        '        return self[k]\n'
        '    def __setattr__(self, k, v):\n'
        '        self[k] = v\n'),
    'utils_shim/cython_bbox.py': (
        'import numpy as np\n'
        'def bbox_overlaps(a, b):\n'
        '    a, b = np.asarray(a, float), np.asarray(b, float)\n'
        '    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1\n'
        '    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1\n'
        '    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)\n'
        '    aa = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)\n'
        '    ab = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)\n'
        '    return inter / (aa[:, None] + ab[None, :] - inter)\n'),
}


def import_official(repo):
    tmp = tempfile.mkdtemp(prefix='mnc_shims_')
    for rel, text in SHIMS.items():
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    builtins.xrange = range
    # MNC's lib is Python 2: a converted copy (lib2to3, at run time, in the temp dir)
    lib = os.path.join(tmp, 'mnc_lib')
    shutil.copytree(os.path.join(repo, 'lib'), lib)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter('ignore')
        from lib2to3.main import main as lib2to3_main
        lib2to3_main('lib2to3.fixes', ['-w', '-n', '-j', '1', lib])
    sys.path[:0] = [tmp, lib]
    import utils  # MNC's lib/utils package; add the compiled op's stand-in to it
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'utils.cython_bbox', os.path.join(tmp, 'utils_shim', 'cython_bbox.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules['utils.cython_bbox'] = mod
    utils.cython_bbox = mod
    from mnc_config import cfg
    import pylayer.cfm_data_layer as cfm
    # Python 3 / numpy 2 stand-ins: np.float, np.in1d, and npr.choice's float sizes (Python 2's
    # integer division gave ints)
    np.float = float
    np.in1d = lambda a, b, invert=False: np.isin(np.ravel(a), np.asarray(b).ravel(),
                                                 invert=invert)
    cfm.npr = _IntSizeRandom()
    # float class indices in slices (old numpy allowed them); the box-regression targets are
    # not compared here, so the class column is simply made integer
    orig = cfm.get_bbox_regression_label
    cfm.get_bbox_regression_label = lambda data, n: orig(data.astype(np.int64), n)
    return cfg, cfm.CFMDataLayer


class _IntSizeRandom:
    def choice(self, a, size=None, replace=True):
        return np.random.choice(a, size=None if size is None else int(size), replace=replace)


class Ragged:
    """Per-proposal crops of different sizes behind MNC's ``masks[keep, :, :]`` indexing."""

    def __init__(self, crops):
        self.crops = list(crops)

    @property
    def shape(self):
        return (len(self.crops),)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        if isinstance(i, np.ndarray):
            return Ragged([self.crops[j] for j in i])
        return self.crops[i]


def synthetic(rng, h=96, w=128, n_gt=3, n_props=120, num_classes=5):
    """Objects and proposals as full-image masks with tight integer boxes."""
    def blob():
        m = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 3)):
            x1, y1 = rng.integers(0, w - 8), rng.integers(0, h - 8)
            x2, y2 = x1 + rng.integers(4, 48), y1 + rng.integers(4, 40)
            m[y1:y2, x1:x2] = True
        return m
    gt = np.stack([blob() for _ in range(n_gt)])
    props = [g.copy() for g in gt]  # the ground truth first, as MNC's CFM roidb
    for _ in range(n_props):
        g = gt[rng.integers(0, n_gt)].copy()
        # jittered copies of objects (near and far) and random blobs
        dy, dx = rng.integers(-12, 13, 2)
        g = np.roll(np.roll(g, dy, 0), dx, 1)
        props.append(g if rng.random() < 0.6 else blob())
    props = [p for p in props if p.any()]
    # distinct tight boxes (MNC's sampled RoIs are matched back to segments by their box)
    _, first = np.unique(tight_boxes(np.stack(props)), axis=0, return_index=True)
    props = np.stack([props[i] for i in sorted(first)])
    labels = rng.integers(0, num_classes, n_gt)
    return gt, props, labels


def tight_boxes(masks):
    ys = masks.any(2)
    xs = masks.any(1)
    y1 = ys.argmax(1)
    y2 = ys.shape[1] - ys[:, ::-1].argmax(1)
    x1 = xs.argmax(1)
    x2 = xs.shape[1] - xs[:, ::-1].argmax(1)
    return np.stack([x1, y1, x2, y2], 1)  # x2, y2 exclusive


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--official-repo', required=True)
    ap.add_argument('--seeds', type=int, default=5)
    args = ap.parse_args()
    cfg, CFMDataLayer = import_official(os.path.abspath(args.official_repo))
    cfg.TRAIN.IMS_PER_BATCH = 1
    num_classes = 5
    tot = dict(rois=0, label_diff=0, pix=0, pix_diff=0, masks=0)
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        gt, props, labels = synthetic(rng, num_classes=num_classes)
        gb, pb = tight_boxes(gt), tight_boxes(props)
        t = torch.from_numpy
        det, lab = classifier_targets(t(pb).float(), t(props), t(gb).float(), t(gt),
                                      t(labels), num_classes)
        # the overlaps MNC's offline roidb holds: box IoU and the mask IoU with the object of
        # the best box IoU (the same geometry; MNC's "+1" pixel boxes are x2 - 1 inclusive)
        from insplug.core.postprocess.nms import box_iou_matrix, mask_iou_matrix
        bi = box_iou_matrix(t(pb).float(), t(gb).float())
        assign = bi.argmax(1)
        seg = mask_iou_matrix(t(props).flatten(1), t(gt).flatten(1)).gather(
            1, assign[:, None])[:, 0]
        crops = [props[i, pb[i, 1]:pb[i, 3], pb[i, 0]:pb[i, 2]].astype(np.float64)
                 for i in range(len(props))]
        # MNC's MCG cache holds one mask crop per proposal; ``Ragged`` serves crops of any size
        roidb = {'det_overlap': det.numpy()[:, None], 'seg_overlap': seg.numpy()[:, None],
                 'output_label': (labels[assign.numpy()] + 1)[:, None].astype(np.float64),
                 'gt_classes': (labels + 1)[:, None], 'gt_assignment': assign.numpy()[:, None],
                 'boxes': np.concatenate([pb[:, :2], pb[:, 2:] - 1], 1).astype(np.float64),
                 'masks': Ragged(crops),
                 'mask_targets': np.zeros((len(props), cfg.MASK_SIZE, cfg.MASK_SIZE))}
        layer = CFMDataLayer()
        layer._num_classes = num_classes + 1
        layer.input_mz = cfg.TEST.CFM_INPUT_MASK_SIZE
        layer._mean = np.zeros((num_classes + 1, 4))
        layer._std = np.ones((num_classes + 1, 4))
        layer._get_image_blob = lambda roidbs, s, n: (np.zeros((1, 3, 96, 128)), [1.0])
        np.random.seed(seed)
        blobs = layer._sample_blobs([roidb], ['unused'])
        rois = blobs['rois'][:, 1:]
        idx = [int(np.nonzero((roidb['boxes'] == r).all(1))[0][0]) for r in rois]
        mnc_labels = blobs['mask_label'][:, 0].astype(int) - 1  # MNC: 0 = background
        ours = lab.numpy()[idx]
        ours = np.where(ours == num_classes, -1, ours)
        tot['rois'] += len(idx)
        tot['label_diff'] += int((mnc_labels != ours).sum())
        ranges = [(0.5, 1.0), (0.1, 0.5), (0.0, 0.1)]
        ours_idx = sample_segments(det, 64, generator=torch.Generator().manual_seed(seed))
        cnt_mnc = [int(((det.numpy()[idx] >= lo) & (det.numpy()[idx] <= hi)).sum())
                   for lo, hi in ranges]
        cnt_ours = [int(((det[ours_idx] >= lo) & (det[ours_idx] <= hi)).sum())
                    for lo, hi in ranges]
        mi = segment_mask_inputs(t(props[idx]), t(pb[idx]).float(), 14, cfg.BINARIZE_THRESH)
        diff = int((mi.numpy() != blobs['masks'][:, 0]).sum())

        tot['pix'] += mi.numel()
        tot['pix_diff'] += diff
        print(f'seed {seed}: {len(props)} segments; sampled per box-IoU range (MNC / insplug) '
              f'{cnt_mnc} / {cnt_ours}; label differences {int((mnc_labels != ours).sum())} of '
              f'{len(idx)}; 14x14 mask-input pixels differing {diff} of {mi.numel()}')
    print(f"all: label differences {tot['label_diff']} of {tot['rois']} sampled RoIs; mask-input "
          f"pixels differing {tot['pix_diff']} of {tot['pix']} "
          f"({100.0 * tot['pix_diff'] / max(tot['pix'], 1):.2f} %)")


if __name__ == '__main__':
    main()
