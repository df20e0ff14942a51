"""Golden data of the official BoxCaseg release (hustvl/BoxCaseg, joint_training + proxy_mask).

Runs on CPU, in float64, the official

* ``HighResolutionNet`` of ``joint_training/lib/models/seg_hrnet_trans_fcn.py`` at small widths
  (stem 64 as always, stage channels 4/8/16/32, one block per branch, one module per stage,
  ``fcn_ratio`` 0.7, ``FINAL_CONV_KERNEL`` 1) with randomised weights and BN statistics:
  training-mode forward of 4 crops of 32 x 32 (crops 1 and 3 salient: ``f_index``), giving the
  weak-branch and full-branch logits;
* the three loss terms exactly as ``core/function.py::train_pd`` computes them (``mil_loss``,
  ``PairwiseLoss``, ``BCEWithLogitsLoss`` on the salient crops, logits upsampled bilinearly to
  the label size), and the gradients of the total loss w.r.t. the input crops;
* the eval-mode forward (every crop through the full branch, as ``validate_pd_new``), then
  ``normPRED_new`` and ``deal_output`` (PIL resize of the 8-bit map to the box, ``> 0.5``,
  pasted at the integer box, RLE), on 3 boxes of one 48 x 64 image;
  weights are stored in float32 (the run uses them exactly, in float64);
* ``proxy_mask/pascal_proxy_mask_generate.py`` (run as a script on those predictions: overlap
  resolution by box area and the box-IoU confidence).

Saves ``tests/fixtures/official/boxcaseg/golden.pt``::

    python tools/official_parity/make_boxcaseg_golden.py --official-repo /path/to/BoxCaseg

Not run in CI; nothing of the official code is copied here. Run-time shims (written here):
``np.int`` (removed from NumPy 1.24; the release uses it for a channel count), stub modules
``skimage`` / ``pandas`` / ``tensorboardX`` (imported, unused on these paths), a small
attribute dict for the yacs config, and ``argparse`` injected into the proxy-mask script's
globals (the release's script calls ``argparse.ArgumentParser`` without importing it).
"""
import argparse
import importlib
import importlib.machinery
import json
import os
import runpy
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'fixtures', 'official',
                   'boxcaseg', 'golden.pt')
S = 32
FCN_RATIO = 0.7


class AttrDict(dict):
    """yacs-like: ``cfg.A`` and ``cfg['A']``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


def tiny_config():
    def stage(mods, branches, block, blocks, chans):
        return AttrDict(NUM_MODULES=mods, NUM_BRANCHES=branches, BLOCK=block,
                        NUM_BLOCKS=blocks, NUM_CHANNELS=chans, FUSE_METHOD='SUM')
    extra = AttrDict(FINAL_CONV_KERNEL=1,
                     STAGE1=stage(1, 1, 'BOTTLENECK', [1], [8]),
                     STAGE2=stage(1, 2, 'BASIC', [1, 1], [4, 8]),
                     STAGE3=stage(1, 3, 'BASIC', [1, 1, 1], [4, 8, 16]),
                     STAGE4=stage(1, 4, 'BASIC', [1, 1, 1, 1], [4, 8, 16, 32]))
    return AttrDict(MODEL=AttrDict(EXTRA=extra, PRETRAINED=''),
                    DATASET=AttrDict(NUM_CLASSES=1)), extra


def shim(repo):
    if not hasattr(np, 'int'):
        np.int = int
    for name in ('skimage', 'skimage.io', 'skimage.transform', 'pandas', 'tensorboardX'):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                stub = types.ModuleType(name)
                stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
                sys.modules[name] = stub
    sys.modules['skimage'].io = sys.modules['skimage.io']
    sys.modules['skimage'].transform = sys.modules['skimage.transform']
    sys.path.insert(0, os.path.join(repo, 'joint_training', 'lib'))


def randomise(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('.k'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / fan_in ** 0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
                        + (1.0 if name.endswith('weight') else 0.0))
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen, dtype=b.dtype))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen, dtype=b.dtype))


def blob_masks(n, gen):
    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float64),
                            torch.arange(S, dtype=torch.float64), indexing='ij')
    out = []
    for _ in range(n):
        c = torch.rand(2, generator=gen, dtype=torch.float64) * S * 0.5 + S * 0.25
        r = torch.rand(2, generator=gen, dtype=torch.float64) * S * 0.2 + S * 0.15
        out.append((((yy - c[0]) / r[0]) ** 2 + ((xx - c[1]) / r[1]) ** 2 <= 1).double())
    return torch.stack(out)[:, None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-repo', required=True)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    repo = os.path.abspath(args.official_repo)
    shim(repo)
    torch.set_default_dtype(torch.float64)
    hrnet = importlib.import_module('models.seg_hrnet_trans_fcn')
    pd_loss = importlib.import_module('core.pd_loss')
    function = importlib.import_module('core.function')

    cfg, _ = tiny_config()
    gen = torch.Generator().manual_seed(0)
    model = hrnet.HighResolutionNet(cfg, fcn_ratio=FCN_RATIO).double()
    randomise(model, gen)
    # weights rounded to float32 (a smaller fixture), the run itself in float64
    model.load_state_dict({k: v.float().double() if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    state = {k: v.float() if v.is_floating_point() else v.clone()
             for k, v in model.state_dict().items()}

    # ---- training forward and losses (train_pd)
    crops = torch.randn(4, 3, S, S, generator=gen)
    f_index = torch.tensor([False, True, False, True])
    labels = torch.zeros(4, 1, S, S)
    labels[0, :, 5:25, 4:20] = 1     # box labels of the box crops
    labels[2, :, 0:32, 10:32] = 1
    labels[f_index] = blob_masks(2, gen)
    crops.requires_grad_(True)
    model.train()
    output, output_f = model(crops, f_index)
    h, w = labels.shape[-2:]
    up = F.interpolate(output, size=(h, w), mode='bilinear')
    up_f = F.interpolate(output_f, size=(h, w), mode='bilinear')
    loss_mil = pd_loss.mil_loss(up, labels)
    loss_pairwise = pd_loss.PairwiseLoss()(up)
    loss_f = torch.nn.BCEWithLogitsLoss()(up_f, labels[f_index])
    total = loss_mil + loss_pairwise + loss_f
    total.backward()

    # ---- inference on boxes of one image (validate_pd_new + deal_output)
    model.load_state_dict({k: v.double() if v.is_floating_point() else v
                           for k, v in state.items()})
    model.eval()
    img_h, img_w = 48, 64
    boxes = [[4, 6, 40, 30], [20, 10, 60, 44], [30, 20, 46, 40]]   # xyxy, integer
    test_crops = torch.randn(3, 3, S, S, generator=gen)
    with torch.no_grad():
        pred_w, pred_f = model(test_crops, torch.ones(3, dtype=torch.bool))
    prob = pred_f[:, 0].sigmoid()
    norm = function.normPRED_new(prob)
    batch = dict(bbox=[torch.tensor([b[i] for b in boxes]) for i in range(4)],
                 ori_img_shape=[torch.tensor([img_h] * 3), torch.tensor([img_w] * 3)],
                 img_name=['a.jpg'] * 3, cls=torch.tensor([1, 2, 1]))
    results = function.deal_output(norm.float(), batch)
    masks = np.stack([mask_utils.decode(r['segmentation']) for r in results])

    # ---- proxy masks (run the release's script on these predictions)
    with tempfile.TemporaryDirectory() as tmp:
        gt = dict(images=[dict(id=1, file_name='a.jpg', height=img_h, width=img_w)],
                  annotations=[dict(id=i + 1, image_id=1, category_id=int(c), iscrowd=0,
                                    bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                    area=float((b[2] - b[0]) * (b[3] - b[1])))
                               for i, (b, c) in enumerate(zip(boxes, [1, 2, 1]))],
                  categories=[dict(id=1, name='a'), dict(id=2, name='b')])
        gt_path, pred_path = os.path.join(tmp, 'gt.json'), os.path.join(tmp, 'pred.json')
        with open(gt_path, 'w') as f:
            json.dump(gt, f)
        with open(pred_path, 'w') as f:
            json.dump(results, f)
        cwd, argv = os.getcwd(), sys.argv
        os.chdir(tmp)
        sys.argv = ['x', '--gt-path', gt_path, '--seg-pred', pred_path]
        try:
            runpy.run_path(os.path.join(repo, 'proxy_mask', 'pascal_proxy_mask_generate.py'),
                           init_globals=dict(argparse=argparse))
        finally:
            os.chdir(cwd)
            sys.argv = argv
        with open(os.path.join(tmp, 'pascal_proxymask.json')) as f:
            proxy = json.load(f)
    proxy_masks = np.stack([mask_utils.decode(a['segmentation']) for a in proxy['annotations']])
    proxy_ids = [a['id'] for a in proxy['annotations']]
    confidence = [float(a['confidence']) for a in proxy['annotations']]

    golden = dict(
        config=dict(stage_channels=[[8], [4, 8], [4, 8, 16], [4, 8, 16, 32]], fcn_ratio=FCN_RATIO,
                    size=S),
        state_dict=state,
        crops=crops.detach(), f_index=f_index, labels=labels,
        output=output.detach(), output_f=output_f.detach(),
        loss_mil=loss_mil.detach(), loss_pairwise=loss_pairwise.detach(),
        loss_f=loss_f.detach(), crops_grad=crops.grad.detach().float(),
        test_crops=test_crops, pred_w=pred_w, pred_f=pred_f, norm=norm,
        boxes=torch.tensor(boxes, dtype=torch.float64), img_hw=[img_h, img_w],
        masks=torch.from_numpy(masks.astype(bool)),
        proxy_ids=proxy_ids, proxy_masks=torch.from_numpy(proxy_masks.astype(bool)),
        proxy_confidence=torch.tensor(confidence, dtype=torch.float64))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(golden, args.out)
    print('saved', args.out, {k: tuple(v.shape) for k, v in golden.items()
                              if isinstance(v, torch.Tensor)})


if __name__ == '__main__':
    main()
