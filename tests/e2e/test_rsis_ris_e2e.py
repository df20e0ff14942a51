"""End to end: the RSIS and RIS shapes demos fit a few training images (64 px, batch 4, no
flips, from scratch, Adam) and are evaluated with ``CocoMetric`` on those images
(``evaluate_on='train'``): a fitting check of the whole pipeline (sequence targets, Hungarian
matching, losses, stop rule, COCO output), not generalisation.

* RSIS, 40 iterations (``OMP_NUM_THREADS=1``): seed 0 measured loss 1.26 -> 0.91 and segm AP50
  0.206 (mAP 0.101); seed 1: loss 1.26 -> 0.89, segm AP50 0.254 (mAP 0.116). The test asserts the loss falls below 0.85 of its
  start and segm AP50 > 0.06 (about a third of the measured figure; the untrained model scores
  0.000).
* RIS (the release's class-agnostic model: ``num_classes=1``, annotations rewritten to one
  category, so ``CocoMetric`` gives class-agnostic mask AP), 90 iterations at Adam lr 3e-3 on
  the training images 4, 16, 17, 24 (2-3 instances each), the demo config's curriculum (2
  steps for 50 iterations, then 6), a 1-layer ConvLSTM and 4 test steps. Measured
  (``OMP_NUM_THREADS`` 1 and 2 give the same figures): seed 0: segm AP50 0.228 (mAP 0.139),
  loss at 2 steps -0.032 -> -0.323, at 6 steps 7.84 -> -0.078, kept steps 2/2/3/2 for GT
  counts 2/2/3/2; seed 1: AP50 0.152 (mAP 0.050), kept 2/2/3/3. Untrained (2 iterations at
  lr 1e-7): AP50 0.000. The test asserts AP50 > 0.05, the loss falls in both phases and the
  stop rule tracks the GT counts better than the untrained head (which keeps every step).
  Diagnosis behind the setting (before: 30 iterations at lr 1e-2, 2 layers, 8 steps, no
  curriculum, AP50 0.00-0.06): the masks stayed near uniform (every step ~0.22 on all 256
  cells) because (1) the stop term's gradient (BCE from the release's confidence bias 10 at the
  step past the last object) dominates the shared ConvLSTM state, which the release's
  ``-seq_length 2`` start avoids, and (2) at lr 1e-2 the ConvLSTM gates saturate
  (|pre-activation| ~10, 90% beyond 3), the hidden state becomes spatially constant and so
  does the mask. Remaining errors: shapes of 1-3 grid cells are not found, and a step may
  repeat the previous step's object.
"""
import json
import os.path as osp

import torch
from e2e_utils import fit_subset_options, mean, train_and_evaluate
from mmengine.dataset import pseudo_collate
from test_deepmask_e2e import agnostic

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo')


def test_rsis_fits_shapes(demo_data, tmp_path):
    config = osp.join(CONFIGS, 'rsis_r18_shapes.py')
    data, opts = fit_subset_options(config, demo_data, tmp_path, size=64)
    out = train_and_evaluate(config, data, tmp_path, max_iters=40, lr=1e-2, evaluate_on='train',
                             batch_size=4, cfg_options=opts, seed=0)
    losses, metrics = out['losses'], out['metrics']
    print(f'RSIS e2e: loss {mean(losses[:5]):.3f} -> {mean(losses[-5:]):.3f}, {metrics}')
    assert mean(losses[-5:]) < 0.85 * mean(losses[:5]), (losses[:5], losses[-5:])
    assert metrics['coco/segm_mAP_50'] > 0.06, metrics


def kept_steps(model, batch, steps):
    """Steps before the stop rule and GT counts on the batch (eval mode)."""
    with torch.no_grad():
        _, conf, _ = model.head(model.extract_feat(batch['inputs']), steps)
    keep = torch.cumprod((torch.sigmoid(conf) >= 0.5).long(), 1).sum(1)
    counts = torch.tensor([len(s.gt_instances) for s in batch['data_samples']])
    return keep, counts


# training images of the demo split with 2-3 instances, each image holding a shape of at least
# ~6 cells of the 16 x 16 grid (areas at 256 px: 3451 / 4405; 421 / 1574; 1556 / 3472 / 634;
# 1561 / 163)
RIS_IMAGE_IDS = (4, 16, 17, 24)
RIS_ITERS = 90
RIS_CURRICULUM = 50  # iterations at 2 steps (the config's RISCurriculumHook interval)
# ~1/3 of the lower measured value (0.152, seed 1); the untrained model scores 0.000
RIS_SEGM_AP50_FLOOR = 0.05
RIS_SEED = 0


def ris_subset(data, work):
    """``data`` with its training annotations restricted to ``RIS_IMAGE_IDS``."""
    with open(data['root'] + data['train_ann']) as f:
        coco = json.load(f)
    coco['images'] = [im for im in coco['images'] if im['id'] in RIS_IMAGE_IDS]
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] in RIS_IMAGE_IDS]
    path = osp.join(str(work), 'ris_subset.json')
    with open(path, 'w') as f:
        json.dump(coco, f)
    return dict(data, train_ann=osp.relpath(path, data['root']))


def test_ris_fits_shapes(demo_data, tmp_path):
    config = osp.join(CONFIGS, 'ris_r18_shapes.py')
    data, opts = fit_subset_options(config, ris_subset(demo_data, tmp_path), tmp_path, size=64)
    data, opts = agnostic(data, opts, tmp_path)
    opts['model.head.num_classes'] = 1  # the release's class-agnostic RIS
    out = train_and_evaluate(config, data, tmp_path, max_iters=RIS_ITERS, lr=3e-3,
                             evaluate_on='train', batch_size=4, cfg_options=opts, seed=RIS_SEED)
    losses, metrics = out['losses'], out['metrics']
    c = RIS_CURRICULUM
    print(f'RIS e2e: 2 steps: loss {mean(losses[:5]):.3f} -> {mean(losses[c - 5:c]):.3f}; '
          f'6 steps: {mean(losses[c:c + 5]):.3f} -> {mean(losses[-5:]):.3f}; {metrics}')
    assert len(losses) == RIS_ITERS
    # at 2 steps the loss is -(mean matched soft IoU) plus the small "continue" BCE
    assert mean(losses[c - 5:c]) < mean(losses[:5]) - 0.05, losses[:c]
    # from 6 steps on, the stop BCE (confidence bias 10 at the step past the last object)
    assert mean(losses[-5:]) < 0.2 * mean(losses[c:c + 5]), losses[c:]
    assert metrics['coco/segm_mAP_50'] > RIS_SEGM_AP50_FLOOR, metrics
    runner = out['runner']
    model = runner.model.eval()
    dataset = runner.train_dataloader.dataset
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), False)
    steps = model.head.test_cfg['max_steps']
    keep, counts = kept_steps(model, batch, steps)
    # untrained, the release's confidence bias 10 keeps every step
    err = (keep - counts).abs().float().mean()
    print('RIS kept steps', keep.tolist(), 'GT counts', counts.tolist())
    assert err < (steps - counts).abs().float().mean(), (keep, counts)
