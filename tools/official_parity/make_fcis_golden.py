"""Golden data of the official FCIS release (msracver/FCIS, MXNet, Python 2).

Two phases. Phase ``official`` runs under a Python that has MXNet 1.x (``--mxnet-python``; e.g.
a venv with ``mxnet==1.9.1``, ``numpy<1.24``, ``opencv-python-headless``, ``easydict``,
``pyyaml``; MXNet 1.9.1 imports on CPython 3.11 and has ``contrib.PSROIPooling`` and
``contrib.Proposal`` on CPU) and writes an ``.npz``; phase ``save`` (insplug's interpreter)
turns it into ``tests/fixtures/official/fcis/golden.pt`` (tensors, numbers, strings only).

What runs, from ``--official-repo`` (a copy of its ``lib/`` and ``fcis/`` is made in a temp dir
and converted with ``lib2to3``, the release being Python 2 code):

* the TEST symbol of ``fcis/symbols/resnet_v1_101_fcis.py`` (``get_symbol(cfg, is_train=False)``)
  with the COCO config ``experiments/fcis/cfgs/resnet_v1_101_coco_fcis_end2end_ohem.yaml``
  (``TEST.ITER = 2``, ``CXX_PROPOSAL`` switched to MXNet's C++ ``contrib.Proposal``; the
  config's Python proposal op needs the CUDA NMS), 3 classes (2 + background) instead of 81,
  and its two trunk stages replaced (``get_resnet_v1_conv4`` returns the input, a 16-channel
  "C4" feature, ``get_resnet_v1_conv5`` a ReLU of it): everything after the trunk (RPN convs,
  proposals, ``conv_new_1``, ``fcis_cls_seg`` / ``fcis_bbox``, PS RoI pooling, the channel
  operators, ``BoxParser`` and the second iteration) is the release's, at its own widths;
  weights drawn like ``init_weight`` (N(0, 0.01), biases 0) but with a larger std for the head
  outputs so that the class probabilities are not uniform;
* ``ProposalAnnotatorOperator.sample_rois`` (``BATCH_ROIS = -1``: all RoIs, foreground first)
  on proposals and ground truths of a 96 x 128 image (float gt masks as its loader gives them);
* ``BoxAnnotatorOHEMOperator.forward`` (OHEM, 128 RoIs kept) on random head outputs;
* ``cpu_mask_voting`` (``lib/mask/mask_transform.py``) and ``mask_voc2coco`` on candidates.

Run-time shims written here (no official code): ``ChannelOperator`` (the release's own C++ op,
not in MXNet) as an MXNet CustomOp in numpy (Group_Max / Group_Softmax / Group_Pick with
Label_Pick or Score_Pick: the arg-max of the score over all classes); the Cython
``bbox_overlaps_cython``, ``cpu_nms`` and ``gpu_nms`` as numpy (legacy +1 IoU, greedy, ``<=``
keeps); ``mask.gpu_mv``, ``hickle`` and ``skimage.draw`` as empty modules; ``dataset.pycocotools.mask.encode``
returning the array it is given (so ``mask_voc2coco`` returns the pasted masks);
``yaml.load`` with a SafeLoader; ``numpy.float`` for NumPy >= 1.20.

    python tools/official_parity/make_fcis_golden.py --official-repo /tmp/official/FCIS \
        --mxnet-python /tmp/mxenv/bin/python
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import types

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'fixtures',
                   'official', 'fcis', 'golden.pt')
NUM_CLASSES = 3          # background + 2
C4 = 16                  # channels of the stand-in trunk feature
FEAT_HW = (8, 10)        # stride-16 feature of a 128 x 160 image
IMG_HW = (96, 128)       # image of the target / voting cases
SEED = 0
POST_NMS = 40           # RPN RoIs kept at test time (300 in the release)

STUBS = {
    'bbox/bbox.py': '''
import numpy as np
def bbox_overlaps_cython(boxes, query_boxes):
    b = boxes.astype(np.float64); q = query_boxes.astype(np.float64)
    area_q = (q[:, 2] - q[:, 0] + 1) * (q[:, 3] - q[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = np.minimum(b[:, None, 2], q[None, :, 2]) - np.maximum(b[:, None, 0], q[None, :, 0]) + 1
    ih = np.minimum(b[:, None, 3], q[None, :, 3]) - np.maximum(b[:, None, 1], q[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    ua = area_b[:, None] + area_q[None, :] - inter
    return np.where((iw > 0) & (ih > 0), inter / ua, 0.0)
''',
    'nms/cpu_nms.py': '''
import numpy as np
def cpu_nms(dets, thresh):
    x1, y1, x2, y2, s = [dets[:, i] for i in range(5)]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = s.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]; keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep
''',
    'nms/gpu_nms.py': 'from cpu_nms import cpu_nms\ndef gpu_nms(dets, thresh, device_id=0):\n'
                      '    return cpu_nms(dets, thresh)\n',
    'mask/gpu_mv.py': 'def mv(*args, **kwargs):\n    raise RuntimeError("CUDA mask voting")\n',
    'hickle.py': 'def load(*args, **kwargs):\n    raise RuntimeError("hickle")\n',
    'skimage/__init__.py': '',
    'skimage/draw.py': 'def polygon(*args, **kwargs):\n    raise RuntimeError("skimage")\n',
    'dataset/__init__.py': '',
    'dataset/pycocotools/__init__.py': '',
    'dataset/pycocotools/mask.py': 'def encode(mask_img):\n    return mask_img\n',
}


def channel_operator_shim(mx, np):
    """``mx.contrib.sym.ChannelOperator`` of the FCIS release as a numpy CustomOp."""

    class ChannelOp(mx.operator.CustomOp):
        def __init__(self, channel_op, group, pick_type):
            super().__init__()
            self.channel_op, self.group, self.pick_type = channel_op, group, pick_type

        def forward(self, is_train, req, in_data, out_data, aux):
            x = in_data[0].asnumpy()
            r, c, h, w = x.shape
            g = x.reshape(r, self.group, c // self.group, h, w)
            if self.channel_op == 'Group_Max':
                y = g.max(2)
            elif self.channel_op == 'Group_Softmax':
                e = np.exp(g - g.max(2, keepdims=True))
                y = (e / e.sum(2, keepdims=True)).reshape(r, c, h, w)
            else:
                pick = in_data[1].asnumpy().reshape(r, -1)
                idx = pick[:, 0].astype(int) if self.pick_type == 'Label_Pick' \
                    else pick.argmax(1)
                y = g[np.arange(r), np.clip(idx, 0, None)]
            self.assign(out_data[0], req[0], mx.nd.array(y))

        def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
            for i in range(len(in_grad)):
                self.assign(in_grad[i], req[i], 0)

    @mx.operator.register('insplug_channel_operator')
    class ChannelOpProp(mx.operator.CustomOpProp):
        def __init__(self, channel_op, group, pick_type='Label_Pick'):
            super().__init__(need_top_grad=True)
            self.channel_op, self.group, self.pick_type = channel_op, int(group), pick_type

        def list_arguments(self):
            return ['data', 'pick_idx'] if self.channel_op == 'Group_Pick' else ['data']

        def infer_shape(self, in_shape):
            r, c, h, w = in_shape[0]
            if self.channel_op == 'Group_Max':
                out = (r, self.group, h, w)
            elif self.channel_op == 'Group_Softmax':
                out = (r, c, h, w)
            else:
                out = (r, c // self.group, h, w)
            return in_shape, [out]

        def create_operator(self, ctx, shapes, dtypes):
            return ChannelOp(self.channel_op, self.group, self.pick_type)

    def channel_operator(name=None, data=None, pick_idx=None, group=1, op_type='Group_Max',
                         pick_type='Label_Pick'):
        inputs = dict(data=data) if pick_idx is None else dict(data=data, pick_idx=pick_idx)
        return mx.sym.Custom(name=name, op_type='insplug_channel_operator', group=str(group),
                             channel_op=op_type, pick_type=pick_type, **inputs)

    mx.contrib.sym.ChannelOperator = channel_operator


def prepare_tree(repo, tmp):
    """Copy lib/ and fcis/ of the release, convert them to Python 3, add the stubs."""
    for sub in ('lib', 'fcis'):
        shutil.copytree(os.path.join(repo, sub), os.path.join(tmp, sub))
    for sub in ('lib', 'fcis'):
        subprocess.run([sys.executable, '-m', 'lib2to3', '-w', '-n', '--no-diffs', '-j', '1',
                        '-f', 'all', '-x', 'import', os.path.join(tmp, sub)],
                       check=True, capture_output=True)
    for rel, text in STUBS.items():
        path = os.path.join(tmp, 'lib', rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    # Python 2 implicit relative imports: their folders go on the path too
    with open(os.path.join(tmp, 'lib', 'bbox', '__init__.py'), 'a') as f:
        f.write('\nfrom .bbox import bbox_overlaps_cython\n')
    sys.path[:0] = [os.path.join(tmp, 'lib'), os.path.join(tmp, 'fcis'),
                    os.path.join(tmp, 'fcis', 'symbols')] + [
        os.path.join(tmp, 'lib', d) for d in ('nms', 'bbox', 'mask', 'rpn', 'utils')]


def run_official(args):
    import numpy as np
    if not hasattr(np, 'float'):
        np.float = float
    import yaml
    load = yaml.load
    yaml.load = lambda stream, Loader=yaml.SafeLoader: load(stream, Loader)  # PyYAML >= 6
    import mxnet as mx
    import cv2  # noqa: F401  (the release's ops import it)
    sys.modules['cPickle'] = __import__('pickle')
    tmp = tempfile.mkdtemp(prefix='fcis_official_')
    prepare_tree(args.official_repo, tmp)
    channel_operator_shim(mx, np)
    from config.config import config as cfg, update_config
    update_config(os.path.join(args.official_repo, 'experiments', 'fcis', 'cfgs',
                               'resnet_v1_101_coco_fcis_end2end_ohem.yaml'))
    cfg.dataset.NUM_CLASSES = NUM_CLASSES
    cfg.TEST.CXX_PROPOSAL = True
    cfg.TRAIN.CXX_PROPOSAL = True
    cfg.TEST.RPN_POST_NMS_TOP_N = POST_NMS  # a small fixture: 2 x 40 RoIs
    import resnet_v1_101_fcis as symmod  # fcis/symbols is on the path
    cls = symmod.resnet_v1_101_fcis
    cls.get_resnet_v1_conv4 = lambda self, data: data
    cls.get_resnet_v1_conv5 = lambda self, feat: mx.sym.Activation(data=feat, act_type='relu',
                                                                     name='c5_stub')
    sym = cls().get_symbol(cfg, is_train=False)
    rng = np.random.RandomState(SEED)
    fh, fw = FEAT_HW
    data = rng.randn(1, C4, fh, fw).astype(np.float32)
    im_info = np.array([[fh * 16, fw * 16, 1.0]], dtype=np.float32)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data.shape, im_info=im_info.shape)
    params = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in ('data', 'im_info'):
            continue
        std = 0.01
        if name in ('fcis_cls_seg_weight', 'fcis_bbox_weight', 'rpn_cls_score_weight'):
            std = 0.2
        if name == 'conv_new_1_weight':
            std = 0.1
        value = rng.randn(*shape) * (std if name.endswith('weight') else 0.05)
        # float16-representable float32 values: stored as float16, loaded exactly
        params[name] = value.astype(np.float16).astype(np.float32)
    exe = sym.bind(mx.cpu(), dict({k: mx.nd.array(v) for k, v in params.items()},
                                  data=mx.nd.array(data), im_info=mx.nd.array(im_info)),
                   grad_req='null')
    outs = dict(zip(sym.list_outputs(), [o.asnumpy() for o in exe.forward(is_train=False)]))
    res = {'test/data': data, 'test/im_info': im_info}
    res.update({f'param/{k}': v for k, v in params.items()})
    res.update({f'test/{k}': v for k, v in outs.items()})
    res.update(run_targets(np, cfg, rng))
    res.update(run_ohem(np, mx, cfg, rng))
    res.update(run_voting(np, rng))
    np.savez(args.npz, **res)


def make_gt(np, rng):
    h, w = IMG_HW
    boxes = np.array([[10, 12, 50, 60, 1], [40, 30, 100, 80, 2], [70, 5, 120, 40, 1]],
                     dtype=np.float32)
    masks = np.zeros((3, h, w))
    yy, xx = np.mgrid[:h, :w]
    masks[0] = ((yy - 36) ** 2 / 24.0 ** 2 + (xx - 30) ** 2 / 20.0 ** 2) <= 1
    masks[1] = (yy >= 30) & (yy <= 80) & (xx >= 40) & (xx <= 100) & ((xx + yy) % 17 > 3)
    masks[2] = (yy >= 5) & (yy <= 40) & (np.abs(xx - 95) <= (yy - 5) * 0.7)
    return boxes, masks


def run_targets(np, cfg, rng):
    from operator_py.proposal_annotator import ProposalAnnotatorOperator
    gt_boxes, gt_masks = make_gt(np, rng)
    jitter = rng.uniform(-12, 12, size=(20, 4))
    base = np.repeat(gt_boxes[:, :4], 7, axis=0)[:20]
    rois = np.clip(base + jitter, 0, [127, 95, 127, 95])
    rois[:, 2:] = np.maximum(rois[:, 2:], rois[:, :2] + 2)
    extra = np.array([[0, 0, 20, 20], [100, 60, 127, 95], [5.5, 70.5, 60.5, 94.5]])
    rois = np.vstack([rois, extra]).astype(np.float32)
    all_rois = np.hstack([np.zeros((len(rois), 1), np.float32), rois])
    op = ProposalAnnotatorOperator(2, 21, 0.4, 1, -1, cfg, 0.25)
    zeros = np.zeros((3, 1), dtype=np.float32)
    cand = np.vstack((all_rois, np.hstack((zeros, gt_boxes[:, :-1]))))
    n = cand.shape[0]
    out = op.sample_rois(cand, n, n, 2, cfg, gt_boxes=gt_boxes, gt_masks=gt_masks)
    names = ['rois', 'labels', 'bbox_targets', 'bbox_weights', 'mask_targets']
    res = {f'targets/{k}': np.asarray(v) for k, v in zip(names, out)}
    res.update({'targets/in_rois': rois, 'targets/gt_boxes': gt_boxes,
                'targets/gt_masks': gt_masks})
    return res


def run_ohem(np, mx, cfg, rng):
    from operator_py.box_annotator_ohem import BoxAnnotatorOHEMOperator
    m, k = 140, NUM_CLASSES
    cls_score = rng.randn(m, k).astype(np.float32) * 2
    seg_pred = rng.randn(m, 2, 21, 21).astype(np.float16).astype(np.float32)
    bbox_pred = rng.randn(m, 8).astype(np.float32)
    labels = rng.randint(0, k, size=m).astype(np.float32)
    mask_t = np.where(rng.rand(m, 1, 21, 21) > 0.5, 1.0, 0.0).astype(np.float32)
    mask_t[labels == 0] = -1
    bbox_t = rng.randn(m, 8).astype(np.float32)
    bbox_w = np.zeros((m, 8), np.float32)
    bbox_w[labels > 0, 4:] = 1
    inputs = [cls_score, seg_pred, bbox_pred, labels.copy(), mask_t.copy(), bbox_t, bbox_w]
    op = BoxAnnotatorOHEMOperator(k, 2, 128, cfg)
    outs = [mx.nd.zeros(labels.shape), mx.nd.zeros(mask_t.shape), mx.nd.zeros(bbox_w.shape)]
    op.forward(True, ['write'] * 3, [mx.nd.array(a) for a in inputs], outs, [])
    names = ['cls_score', 'seg_pred', 'bbox_pred', 'labels', 'mask_targets', 'bbox_targets',
             'bbox_weights']
    res = {f'ohem/in_{n}': a for n, a in zip(names, [cls_score, seg_pred, bbox_pred, labels,
                                                     mask_t, bbox_t, bbox_w])}
    res.update({'ohem/labels': outs[0].asnumpy(), 'ohem/mask_targets': outs[1].asnumpy(),
                'ohem/bbox_weights': outs[2].asnumpy()})
    return res


def run_voting(np, rng):
    from mask.mask_transform import cpu_mask_voting
    from utils.mask_voc2coco import mask_voc2coco
    h, w = IMG_HW
    centres = np.array([[30, 36], [70, 55], [95, 22]], dtype=np.float64)
    sizes = np.array([[40, 48], [60, 50], [50, 35]], dtype=np.float64)
    n = 45
    pick = rng.randint(0, 3, size=n)
    c = centres[pick] + rng.uniform(-6, 6, size=(n, 2))
    s = sizes[pick] * rng.uniform(0.75, 1.25, size=(n, 2))
    boxes = np.stack([c[:, 0] - s[:, 0] / 2, c[:, 1] - s[:, 1] / 2,
                      c[:, 0] + s[:, 0] / 2, c[:, 1] + s[:, 1] / 2], 1)
    boxes = np.clip(boxes, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
    scores = rng.dirichlet(np.ones(NUM_CLASSES) * 0.3, size=n).astype(np.float32)
    yy, xx = np.mgrid[:21, :21]
    blob = np.exp(-(((yy - 10) / 6.0) ** 2 + ((xx - 10) / 6.0) ** 2))
    masks = np.clip(blob[None] + rng.randn(n, 21, 21) * 0.2, 0, 1).astype(np.float32)
    res_masks, res_boxes = cpu_mask_voting(masks[:, None], boxes, scores, NUM_CLASSES, 100, w, h,
                                           0.3, 0.5, 0.4)
    res = {'voting/boxes': boxes, 'voting/scores': scores, 'voting/masks': masks}
    for c_ in range(1, NUM_CLASSES):
        rb, rm = np.asarray(res_boxes[c_]).reshape(-1, 5), np.asarray(res_masks[c_])
        res[f'voting/out_boxes_{c_}'] = rb
        res[f'voting/out_masks_{c_}'] = rm.reshape(-1, 21, 21)
        if len(rb):
            pasted = mask_voc2coco(rm.reshape(-1, 21, 21), rb[:, :4], h, w, 0.4)
            res[f'voting/out_image_masks_{c_}'] = np.transpose(pasted, (2, 0, 1)).astype(bool)
        else:
            res[f'voting/out_image_masks_{c_}'] = np.zeros((0, h, w), bool)
    return res


def save(args):
    import numpy as np
    import torch
    data = np.load(args.npz)
    out = {}
    for k in data.files:
        a = np.ascontiguousarray(data[k])
        if k.startswith('param/') or k == 'ohem/in_seg_pred':
            a = a.astype(np.float16)  # exact: the values were drawn float16-representable
        elif a.dtype == np.float64 and k.endswith(('gt_masks', 'mask_targets')):
            a = a.astype(np.int8)  # {-1, 0, 1} masks
        out[k] = torch.from_numpy(a)
    out['meta/num_classes'] = NUM_CLASSES
    out['meta/source'] = 'msracver/FCIS ' + args.commit
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(out, args.out)
    print('saved', args.out, sum(v.numel() for v in out.values() if torch.is_tensor(v)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--official-repo', required=True)
    p.add_argument('--mxnet-python', default=sys.executable)
    p.add_argument('--phase', default='all', choices=['all', 'official', 'save'])
    p.add_argument('--npz', default=None)
    p.add_argument('--out', default=OUT)
    p.add_argument('--commit', default='')
    args = p.parse_args()
    if args.phase == 'official':
        run_official(args)
        return
    if args.phase == 'save':
        save(args)
        return
    npz = args.npz or os.path.join(tempfile.mkdtemp(prefix='fcis_golden_'), 'golden.npz')
    subprocess.run([args.mxnet_python, os.path.abspath(__file__), '--phase', 'official',
                    '--official-repo', args.official_repo, '--npz', npz], check=True)
    commit = subprocess.run(['git', '-C', args.official_repo, 'rev-parse', 'HEAD'],
                            capture_output=True, text=True).stdout.strip()
    args.npz, args.commit = npz, commit
    save(args)


if __name__ == '__main__':
    main()
