"""End to end: ZSI's zero-shot Mask R-CNN (demo config, ResNet-18 from scratch) on the shapes
set with 'ring' held out as the unseen class.

Trains ``configs/demo/zsi_r18_shapes.py`` on the seen classes only (``ClassSplitCocoDataset``:
ring annotations left out and every training image holding a ring dropped; a hook records every
training batch and the test checks that none of them carries a ring or an image with one), then
evaluates with CocoMetric on the class-split val sets: seen (4 classes), ZSI (ring only, the
unseen scores transferred through the hand-set attribute embeddings) and GZSI (all 5, labels
mapped to id order).

40 iterations, batch 2, the first 8 training images at 128 px without flips
(``fit_subset_options``; images with a ring are dropped from training), evaluated on those 8
images (``evaluate_on='train'``: the ring images are evaluated too, never trained on).
Measured (OMP_NUM_THREADS=1; seeds 0 / 1): loss (first / last 8 iterations) 2.72 -> 1.24 /
2.58 -> 1.52; seen segm mAP50 0.088 / 0.100 (mAP 0.039 / 0.033); ZSI (ring) segm mAP50 0.000 /
0.000; GZSI segm mAP50 0.070 / 0.080. The unseen AP is reported, without a floor: after 40
iterations on the 4 ring-free images no detection overlaps a ring (best IoU <= 0.02), so no
choice of ring embedding scores (6 tried, ring = circle included: all 0.000; see
docs/deviations/zsi.md). Cost: about 30 s CPU
(user+sys) for the run and the three evaluations.
"""
import copy
import json
import os
import os.path as osp

import pytest
import torch
from e2e_utils import fit_subset_options, mean, train_and_evaluate
from mmengine.hooks import Hook
from mmengine.runner import Runner

from insplug.mmdet.zsi.zsi_mask_rcnn import gzsi_label_map

CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo', 'zsi_r18_shapes.py')
ITERS = 40
NUM_IMAGES = 8
SEED = int(os.environ.get('ZSI_E2E_SEED', 0))  # for measuring other seeds
# an untrained model scores 0.0; about 1/3 of the lowest measured seen segm mAP50 (0.088)
SEEN_SEGM_AP50_FLOOR = 0.03


class BatchRecorder(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.img_ids, self.labels = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        for s in data_batch['data_samples']:
            self.img_ids.append(s.img_id)
            self.labels.extend(s.gt_instances.labels.tolist())


def _evaluate(runner, subset, mode, label_map=None):
    model = runner.model
    model.roi_head.bbox_head.mode = model.roi_head.mask_head.mode = mode
    model.label_map = label_map
    loader_cfg = copy.deepcopy(runner.cfg.val_dataloader)
    loader_cfg.dataset.subset = subset
    loader = Runner.build_dataloader(loader_cfg)
    evaluator = runner.build_evaluator(copy.deepcopy(runner.cfg.val_evaluator))
    evaluator.dataset_meta = loader.dataset.metainfo
    model.eval()
    with torch.no_grad():
        for batch in loader:
            evaluator.process(data_samples=model.val_step(batch), data_batch=batch)
    return evaluator.evaluate(len(loader.dataset)), loader.dataset


@pytest.fixture(scope='module')
def zsi_run(demo_data, tmp_path_factory):
    work = tmp_path_factory.mktemp('zsi')
    recorder = BatchRecorder()
    orig = Runner.__dict__['from_cfg']  # the classmethod itself, so subclasses keep their cls

    def from_cfg(cls, cfg):
        runner = orig.__func__(cls, cfg)
        runner.register_hook(recorder)
        return runner
    # MonkeyPatch restores the class attribute as it was (a classmethod); restoring the bound
    # ``Runner.from_cfg`` instead made every later ``InsplugRunner.from_cfg`` build a plain
    # mmengine Runner (non-strict checkpoint loading) for the rest of the test session
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runner, 'from_cfg', classmethod(from_cfg))
        data, opts = fit_subset_options(CONFIG, demo_data, work, num_images=NUM_IMAGES,
                                        size=128)
        out = train_and_evaluate(CONFIG, data, work, max_iters=ITERS, evaluate_on='train',
                                 batch_size=2, cfg_options=opts, seed=SEED)
    assert 'from_cfg' in Runner.__dict__ and isinstance(Runner.__dict__['from_cfg'], classmethod)
    runner = out['runner']
    unseen, _ = _evaluate(runner, 'unseen', 'zsi')
    seen_ds = runner.val_dataloader.dataset
    all_metrics, _ = _evaluate(
        runner, 'all', 'gzsi',
        gzsi_label_map(seen_ds.seen_classes, seen_ds.unseen_classes, all_ds_classes(runner)))
    out.update(train_ann=data['train_ann'], recorder=recorder, unseen=unseen, gzsi=all_metrics)
    print(f'ZSI e2e: loss {mean(out["losses"][:8]):.3f} -> {mean(out["losses"][-8:]):.3f}; '
          f'seen {out["metrics"]}; unseen {unseen}; gzsi {all_metrics}')
    return out


def all_ds_classes(runner):
    cfg = copy.deepcopy(runner.cfg.val_dataloader.dataset)
    cfg.subset = 'all'
    from insplug.registry import DATASETS
    return DATASETS.build(cfg).metainfo['classes']


def test_no_unseen_annotation_reaches_the_loss(zsi_run):
    with open(zsi_run['train_ann']) as f:
        coco = json.load(f)
    ring = [c['id'] for c in coco['categories'] if c['name'] == 'ring'][0]
    with_ring = {a['image_id'] for a in coco['annotations'] if a['category_id'] == ring}
    rec = zsi_run['recorder']
    assert len(rec.img_ids) == 2 * ITERS and with_ring  # the set has ring images to leave out
    assert not set(rec.img_ids) & with_ring
    assert rec.labels and max(rec.labels) < 4  # seen labels only (circle..star)


def test_zsi_loss_falls(zsi_run):
    losses = zsi_run['losses']
    assert len(losses) == ITERS
    assert mean(losses[-8:]) < 0.8 * mean(losses[:8]), losses


def test_zsi_seen_ap_above_floor(zsi_run):
    m = zsi_run['metrics']
    assert m['coco/segm_mAP_50'] > SEEN_SEGM_AP50_FLOOR, m
    # reported, no floor: the unseen transfer through 8-d attribute vectors is weak
    assert 'coco/segm_mAP_50' in zsi_run['unseen'] and 'coco/segm_mAP_50' in zsi_run['gzsi']
