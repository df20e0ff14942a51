"""End to end: DeepMask (demo config, quarter-width ResNet-18 trunk from scratch) learns class-
agnostic mask proposals on the shapes set.

``configs/deepmask/deepmask_r18_shapes.py`` trains for ITERS iterations, batch 4, lr 0.1, on the
first 4 training images at 256 px without flips (``fit_subset_options``) and is evaluated on
those images. DeepMask's proposals are class-agnostic, so the annotations are rewritten with one
category ('object') and the standard CocoMetric 'segm' evaluation gives class-agnostic mask AP
(the demo config itself reports COCO proposal AR, useCats=0, on the boxes of the masks). The
whole pipeline -- the release's window samplers, SoftMargin losses, dense multi-scale
inference, image.scale resampling and placement of the masks -- must fit data.

Box AR is no use as a floor here: an untrained DeepMask's masks are whole window squares
(logits ~0 > logit(0.2)), and 100 such squares already reach proposal AR@100 ~0.17 on these
images; mask AP separates trained from untrained masks.

Measured with OMP_NUM_THREADS=1 (same data, options and config):
  untrained (2 iterations at lr 1e-7): agnostic segm mAP50 0.004 (mAP 0.001), proposal AR@100 0.165
  seed 0: loss (mean of first / last 8 iterations) 1.339 -> 0.760, segm mAP50 0.054 (mAP 0.015),
          AR@100 0.253
  seed 1: loss 1.343 -> 0.759, segm mAP50 0.053 (mAP 0.009), AR@100 0.259
"""
import json
import os.path as osp

import pytest
from e2e_utils import fit_subset_options, mean, train_and_evaluate

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'deepmask',
                  'deepmask_r18_shapes.py')
ITERS = 60
# ~1/3 of the lowest measured value (0.053) and 4.5x the untrained model's 0.004
SEGM_AP50_FLOOR = 0.018


def agnostic(data, opts, work):
    """Rewrite the subset's annotations with one category; point the run at them."""
    with open(data['train_ann']) as f:
        coco = json.load(f)
    for ann in coco['annotations']:
        ann['category_id'] = 1
    coco['categories'] = [dict(id=1, name='object')]
    path = osp.join(str(work), 'agnostic.json')
    with open(path, 'w') as f:
        json.dump(coco, f)
    one = dict(classes=('object',))
    opts = dict(opts, **{'val_evaluator.ann_file': path, 'val_evaluator.metric': ['segm'],
                         'train_dataloader.dataset.metainfo': one,
                         'val_dataloader.dataset.metainfo': one})
    return dict(data, train_ann=path), opts


@pytest.fixture(scope='module')
def deepmask_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('deepmask')
    data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=4, size=256)
    data, opts = agnostic(data, opts, work)
    out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, lr=0.1, evaluate_on='train',
                             batch_size=4, cfg_options=opts)
    first, last = mean(out['losses'][:8]), mean(out['losses'][-8:])
    print(f'DeepMask e2e: loss {first:.3f} -> {last:.3f}, metrics {out["metrics"]}')
    return out


def test_deepmask_loss_falls(deepmask_run):
    losses = deepmask_run['losses']
    assert len(losses) == ITERS
    # measured ratio 0.57 (last 8 / first 8 iterations), seeds 0 and 1
    assert mean(losses[-8:]) < 0.7 * mean(losses[:8]), losses


def test_deepmask_agnostic_mask_ap_above_floor(deepmask_run):
    assert deepmask_run['metrics']['coco/segm_mAP_50'] > SEGM_AP50_FLOOR, deepmask_run['metrics']
