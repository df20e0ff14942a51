"""End to end: InstanceFCN (demo config, quarter-width dilated ResNet-18 from scratch) learns
class-agnostic segment proposals on the shapes set.

``configs/instancefcn/instancefcn_r18_shapes.py`` trains for ITERS iterations, batch 4, on the
first 4 training images at 256 px without flips (``fit_subset_options``) and is evaluated on
those images. The proposals are class-agnostic, so the annotations are rewritten with one
category and the standard CocoMetric 'segm' evaluation gives class-agnostic mask AP. The whole
pipeline -- window assignment, sampling, the assembled-segment and objectness losses, the dense
multi-scale assembling, pasting and NMS -- must fit data.

Measured with OMP_NUM_THREADS=2 (same data, options and config; pyramid 2^-1.5 .. 2^0.5):
  untrained (2 iterations at lr 1e-7): agnostic segm mAP50 0.002 (mAP 0.000)
  seed 0: loss (mean of first / last 8 iterations) 1.223 -> 0.354, segm mAP50 0.100 (mAP 0.024)
  seed 1: loss 1.232 -> 0.308, segm mAP50 0.145 (mAP 0.041)
  (40 iterations, seed 0: mAP50 0.011 only, hence 60)
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate
from test_deepmask_e2e import agnostic

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'instancefcn',
                  'instancefcn_r18_shapes.py')
ITERS = 60
LR = 0.05
# ~1/3 of the lowest measured value (0.100), 16x the untrained model's 0.002
SEGM_AP50_FLOOR = 0.033
SEED = 0


@pytest.fixture(scope='module')
def instancefcn_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('instancefcn')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=256)
    data, opts = agnostic(data, opts, work)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, lr=LR, evaluate_on='train',
                             batch_size=4, cfg_options=opts, seed=SEED)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'InstanceFCN e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_instancefcn_loss_falls(instancefcn_run):
    losses = instancefcn_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.29 / 0.25 (seeds 0 / 1)
    assert mean(losses[-8:]) < 0.6 * mean(losses[:8]), losses


def test_instancefcn_agnostic_mask_ap_above_floor(instancefcn_run):
    assert instancefcn_run['metrics']['coco/segm_mAP_50'] > SEGM_AP50_FLOOR, \
        instancefcn_run['metrics']
