"""Golden data of the official YOLACT / YOLACT++ release (dbolya/yolact).

Runs, on CPU and in float64, the official

* ``Yolact`` (yolact.py): ResNet backbone (backbone.py ``ResNetBackbone``, 1 block per stage,
  widths / 8), ``FPN`` (P3-P5 + 2 stride-2 downsample convs, ReLU after the prediction layers),
  ``proto_net`` (make_net of ``mask_proto_net``), the shared ``PredictionModule`` (extra head
  conv, box / class / coefficient layers, priors), ``semantic_seg_conv`` and, for YOLACT++,
  ``FastMaskIoUNet``, in training mode (raw predictions) and in eval mode (``Detect`` with Fast
  NMS, layers/functions/detection.py);
* ``MultiBoxLoss`` (layers/modules/multibox_loss.py): matching with a crowd box, every loss term
  (B, C with OHEM, M, S and I for YOLACT++), with ``masks_to_train`` small enough that one image
  is subsampled;
* ``postprocess`` (layers/output_utils.py): crop, mask-IoU rescoring (YOLACT++), one-step
  upsampling to the original (non-square) image size, binarisation, box sanitising;

for two configs derived from the official ``yolact_base_config`` and ``yolact_plus_base_config``
(data/config.py) at small widths (FPN 16, protonet 16 -> 8 prototypes, 3 foreground classes,
256 px input; YOLACT++ without DCN, i.e. ``use_square_anchors=False``, 3 scales per octave,
mask-IoU net, rescoring). Saves to ``tests/fixtures/official/yolact/{base,plus}.pt``::

    python tools/official_parity/make_yolact_golden.py --official-repo /path/to/yolact

Not run in CI. Nothing of the official code is copied here; the official files are imported from
``--official-repo``. Run-time shims (written here): ``torch.cuda.current_device`` /
``device_count`` during the import (so that yolact.py neither needs CUDA nor builds TorchScript
modules), ``torch.Tensor.cuda`` as identity, ``torch.Tensor.float`` as a cast to the default dtype
(float64 here; the official code uses ``.float()`` to turn bool masks into numbers), ``ResNetBackbone._make_layer`` called with planes / 8
(small widths), ``Yolact.init_weights`` without loading a pretrained backbone, and
``torch.randperm`` replaced by a reversed ``arange`` (so the ``masks_to_train`` subsample is
reproducible: the parity test installs the same stub).
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                       'yolact')
IMG = {False: 192, True: 256}   # network input (square, as YOLACT's Resize); YOLACT++'s mask-IoU
                                # net needs prototypes >= 63 px, i.e. a 256 px input
ORI = [(150, 180), (160, 120)]   # original (h, w) of the two images (postprocess target)
NUM_FG = 3                # foreground classes (cfg.num_classes = NUM_FG + 1)
FPN_CH = 16
PROTO_CH = 16
NUM_PROTOS = 4
MASKS_TO_TRAIN = 5


def reversed_randperm(n, *args, **kwargs):
    return torch.arange(n - 1, -1, -1)


_OFFICIAL = {}


def import_official(repo):
    if repo in _OFFICIAL:
        return _OFFICIAL[repo]
    sys.path.insert(0, repo)
    real_cur, real_cnt = torch.cuda.current_device, torch.cuda.device_count
    torch.cuda.current_device = lambda: 0
    torch.cuda.device_count = lambda: 2      # -> use_jit False (plain nn.Module FPN / MaskIoUNet)
    try:
        import yolact as Y  # noqa: E402
        from data import config as C  # noqa: E402
        from layers.modules.multibox_loss import MultiBoxLoss  # noqa: E402
        from layers.output_utils import postprocess  # noqa: E402
        import backbone as B  # noqa: E402
    finally:
        torch.cuda.current_device, torch.cuda.device_count = real_cur, real_cnt
    torch.Tensor.cuda = lambda self, *a, **k: self
    # the official code converts bool masks with .float(): keep float64 runs in float64
    torch.Tensor.float = lambda self, *a, **k: self.to(torch.get_default_dtype())
    orig_make_layer = B.ResNetBackbone._make_layer

    def small_make_layer(self, block, planes, blocks, stride=1, dcn_layers=0, dcn_interval=1):
        return orig_make_layer(self, block, planes // 8, blocks, stride, dcn_layers, dcn_interval)

    B.ResNetBackbone._make_layer = small_make_layer
    _OFFICIAL[repo] = Y, C, MultiBoxLoss, postprocess, B
    return _OFFICIAL[repo]


def make_cfg(C, B, plus, img):
    base = C.yolact_plus_base_config if plus else C.yolact_base_config
    scales = [x * img / 256 for x in (12, 24, 48, 96, 192)]
    backbone = base.backbone.copy({
        'type': B.ResNetBackbone, 'args': ([1, 1, 1, 1],), 'path': None,
        'pred_scales': [[s * 2 ** (j / 3.0) for j in range(3)] for s in scales] if plus
        else [[s] for s in scales],
    })
    over = {
        'name': 'golden_plus' if plus else 'golden_base',
        'num_classes': NUM_FG + 1,
        'max_size': img,
        'backbone': backbone,
        'fpn': base.fpn.copy({'num_features': FPN_CH}),
        'mask_proto_net': [(PROTO_CH, 3, {'padding': 1})] * 3 + [(None, -2, {}),
                           (PROTO_CH, 3, {'padding': 1})] + [(NUM_PROTOS, 1, {})],
        'extra_head_net': [(FPN_CH, 3, {'padding': 1})],
        'masks_to_train': MASKS_TO_TRAIN,
    }
    cfg = base.copy(over)
    C.cfg.replace(cfg)
    C.cfg.mask_proto_debug = False      # set by eval.py from its arguments
    return cfg


def make_targets(img):
    """Two images: boxes (relative x1y1x2y2), labels (0-based), masks (G, IMG, IMG); the last
    annotation of image 0 is a crowd box (YOLACT puts crowds last)."""
    yy, xx = torch.meshgrid(torch.arange(img, dtype=torch.float64) + 0.5,
                            torch.arange(img, dtype=torch.float64) + 0.5, indexing='ij')
    yy, xx = yy * 256 / img, xx * 256 / img     # specs below are in 256 px units
    specs = [
        # (cx, cy, rx, ry, label, shape) in pixels; shape 0 ellipse, 1 rectangle
        [(90, 100, 60, 50, 0, 0), (190, 170, 40, 55, 1, 1), (60, 200, 22, 18, 2, 0),
         (200, 60, 30, 25, 1, 0), (180, 190, 70, 60, 0, 1)],        # last one: crowd
        [(128, 128, 100, 90, 2, 0), (60, 60, 20, 30, 0, 1), (200, 200, 12, 10, 1, 0)],
    ]
    num_crowds = [1, 0]
    targets, masks = [], []
    for spec in specs:
        ms, bs = [], []
        for cx, cy, rx, ry, lab, shape in spec:
            if shape == 0:
                m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1
            else:
                m = ((xx - cx).abs() <= rx) & ((yy - cy).abs() <= ry)
            m = m.double()
            ys, xs = torch.nonzero(m, as_tuple=True)
            box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                               dtype=torch.float64) / img
            ms.append(m)
            bs.append(torch.cat([box, torch.tensor([float(lab)], dtype=torch.float64)]))
        targets.append(torch.stack(bs))
        masks.append(torch.stack(ms))
    return targets, masks, num_crowds


def run(repo, plus, seed=0):
    Y, C, MultiBoxLoss, postprocess, B = import_official(repo)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(seed)
    img = IMG[plus]
    make_cfg(C, B, plus, img)
    cfg = C.cfg
    net = Y.Yolact()
    net.backbone.init_backbone = lambda path: None
    net.init_weights(backbone_path=None)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():   # non-trivial biases and BN statistics
        for name, p in net.named_parameters():
            if name.endswith('bias'):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        if plus:   # keep the mask-IoU net's ReLUs alive, so its loss has a gradient to compare
            for name, p in net.maskiou_net.named_parameters():
                if name.endswith('bias'):
                    p.add_(0.5)
        for t in list(net.parameters()) + list(net.buffers()):   # float32-representable, so
            if t.is_floating_point():                            # the fixture stores float32
                t.copy_(t.to(torch.float32).to(torch.float64))
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}

    x = torch.randn(2, 3, img, img, generator=gen).to(torch.float32).to(torch.float64)
    targets, masks, num_crowds = make_targets(img)

    # ---------------------------------------------------------------- training forward + loss
    net.train()
    torch.randperm = reversed_randperm
    preds = net(x)
    crit = MultiBoxLoss(num_classes=cfg.num_classes, pos_threshold=cfg.positive_iou_threshold,
                        neg_threshold=cfg.negative_iou_threshold,
                        negpos_ratio=cfg.ohem_negpos_ratio)
    # targets of the official matching (captured from the loss by re-running match)
    from layers import box_utils
    match_out = {}
    orig_match = box_utils.match

    def recording_match(pos_t, neg_t, truths, priors, labels, crowd_boxes, loc_t, conf_t, idx_t,
                        idx, loc_data):
        orig_match(pos_t, neg_t, truths, priors, labels, crowd_boxes, loc_t, conf_t, idx_t, idx,
                   loc_data)
        match_out[idx] = (loc_t[idx].clone(), conf_t[idx].clone(), idx_t[idx].clone())

    import layers.modules.multibox_loss as MBL
    MBL.match = recording_match
    losses = crit(net, preds, [t.clone() for t in targets], [m.clone() for m in masks],
                  list(num_crowds))
    MBL.match = orig_match
    grads = {}
    total = sum(losses.values())
    total.backward()
    for name in ('proto_net.0.weight', 'prediction_layers.0.mask_layer.weight'):
        grads[name] = dict(net.named_parameters())[name].grad.clone()
    if plus:   # gradient of the mask-IoU term alone w.r.t. the prototypes' last conv
        net.zero_grad()
        preds2 = net(x)
        losses2 = crit(net, preds2, [t.clone() for t in targets], [m.clone() for m in masks],
                       list(num_crowds))
        losses2['I'].backward()
        grads['I:proto_net.10.weight'] = net.proto_net[10].weight.grad.clone()
        net.zero_grad()

    # ---------------------------------------------------------------- eval: Detect + postprocess
    net.eval()
    with torch.no_grad():
        net.detect.use_fast_nms = True        # eval.py's defaults
        net.detect.use_cross_class_nms = False
        eval_raw = {}
        orig_detect = net.detect

        class Recorder:
            def __init__(self, inner):
                self.inner = inner

            def __call__(self, p, n):
                eval_raw.update({k: v.clone() for k, v in p.items()})
                return self.inner(p, n)

        net.detect = Recorder(orig_detect)
        dets = net(x)
        net.detect = orig_detect
        post = []
        raw_dets = [{k: v.clone() for k, v in d['detection'].items()} for d in dets]
        for b in range(2):
            h, w = ORI[b]
            classes, scores, boxes, pmasks = postprocess(dets, w, h, batch_idx=b)
            item = dict(classes=classes.long(), boxes=boxes.long(),
                        masks=pmasks.bool() if pmasks.numel() else pmasks)
            if isinstance(scores, list):
                item['box_scores'], item['mask_scores'] = scores[0], scores[1]
            else:
                item['box_scores'] = item['mask_scores'] = scores
            d = raw_dets[b]
            item['det_boxes_rel'] = d['box']
            item['det_coeffs'] = d['mask']
            post.append(item)

    def f32(t):
        return t.to(torch.float32) if t.is_floating_point() else t

    def packbits(m):
        """bool (N, H, W) -> dict(bits uint8, shape): np.packbits over the flattened masks."""
        m = m.bool()
        return dict(bits=torch.from_numpy(np.packbits(m.flatten().numpy())), shape=list(m.shape))

    for item in post:
        item['masks'] = packbits(item['masks'])
    out = dict(
        config=dict(plus=plus, img=img, ori_shapes=[list(s) for s in ORI], num_fg=NUM_FG,
                    fpn_channels=FPN_CH, proto_channels=PROTO_CH, num_protos=NUM_PROTOS,
                    masks_to_train=MASKS_TO_TRAIN,
                    pred_scales=[list(map(float, s)) for s in cfg.backbone.pred_scales],
                    aspect_ratios=[1.0, 0.5, 2.0],
                    square_anchors=bool(cfg.backbone.use_square_anchors),
                    backbone_layers=[1, 1, 1, 1], backbone_width_div=8,
                    randperm='reversed arange', seed=seed,
                    note='float64 run; floating tensors stored as float32 (inputs and weights '
                         'are float32-representable, so they are exact)'),
        state_dict={k: f32(v) for k, v in state_dict.items()},
        inputs=dict(img=f32(x), targets=targets, masks=[packbits(m) for m in masks],
                    num_crowds=num_crowds),
        train=dict(proto=f32(preds['proto']), segm=f32(preds['segm']), loc=f32(preds['loc']),
                   conf=f32(preds['conf']), mask=f32(preds['mask']),
                   **({} if plus else dict(priors=f32(preds['priors'])))),
        targets=dict(conf_t=[match_out[i][1].to(torch.int8) for i in range(2)],
                     idx_t=[match_out[i][2].to(torch.int16) for i in range(2)]),
        losses={k: v.detach() for k, v in losses.items()},
        grads={k: f32(v) for k, v in grads.items()},
        eval=dict(proto=f32(eval_raw['proto']),
                  **({} if plus else dict(conf=f32(eval_raw['conf'])))),
        post=post,
    )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--official-repo', required=True)
    ap.add_argument('--out-dir', default=OUT_DIR)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for plus in (False, True):
        out = run(os.path.abspath(args.official_repo), plus)
        path = os.path.join(args.out_dir, 'plus.pt' if plus else 'base.pt')
        torch.save(out, path)
        torch.load(path, weights_only=True)
        print(f'wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB): losses '
              + ', '.join(f'{k}={v.item():.6f}' for k, v in out['losses'].items()))


if __name__ == '__main__':
    np.random.seed(0)
    main()
