"""Image-level labels / counts data path: ``ImageLevelLabels`` keeps only labels and counts,
no box or mask reaches the model, and the training loss of PRM and CountSeg is unchanged when
every mask and box of the annotation file is corrupted."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

import insplug.mmdet  # noqa: F401
from insplug.mmdet.weak.image_labels import ImageLevelLabels, image_labels_and_counts
from insplug.registry import DATASETS, MODELS

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'demo')


def test_labels_and_counts_hand_worked():
    labels, counts = image_labels_and_counts([0, 2, 2, 3], [False, False, True, True], 5)
    # every instance makes its class positive (ignored too); counts skip ignored ones
    assert labels.tolist() == [1, 0, 1, 1, 0]
    assert counts.tolist() == [1, 0, 1, 0, 0]
    results = dict(gt_bboxes_labels=np.array([1, 1]), gt_ignore_flags=np.array([False, False]),
                   gt_bboxes=np.zeros((2, 4)), gt_masks=object(), img=np.zeros((4, 4, 3)))
    out = ImageLevelLabels(num_classes=3)(results)
    assert out['gt_image_counts'].tolist() == [0, 2, 0]
    assert not {'gt_bboxes', 'gt_masks', 'gt_bboxes_labels', 'gt_ignore_flags'} & set(out)


def _corrupt(src, dst):
    with open(src) as f:
        coco = json.load(f)
    rng = np.random.RandomState(0)
    for ann in coco['annotations']:  # masks and boxes replaced, classes and counts kept
        x, y = rng.uniform(0, 200, 2)
        ann['segmentation'] = [[x, y, x + 30, y, x + 30, y + 30, x, y + 30]]
        ann['bbox'] = [x, y, 30.0, 30.0]
        ann['area'] = 900.0
    with open(dst, 'w') as f:
        json.dump(coco, f)


def _batch(cfg, data_root, ann):
    init_default_scope('insplug')
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(data_root=data_root, ann_file=ann, data_prefix=dict(img='train/images/'))
    ds_cfg.pipeline = [p for p in ds_cfg.pipeline if p['type'] != 'RandomFlip']
    dataset = DATASETS.build(ds_cfg)
    return pseudo_collate([dataset[i] for i in range(3)])


@pytest.mark.parametrize('config', ['prm_r18_shapes.py', 'countseg_r18_shapes.py'])
def test_no_mask_reaches_the_loss(config, demo_data, tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    root = demo_data['root']
    corrupted = str(tmp_path / 'corrupted.json')
    _corrupt(root + demo_data['train_ann'], corrupted)
    clean = _batch(cfg, root, demo_data['train_ann'])
    bad = _batch(cfg, root, corrupted)
    for sample in clean['data_samples']:
        assert len(sample.gt_instances) == 0 and 'masks' not in sample.gt_instances
        assert 'bboxes' not in sample.gt_instances
        assert sample.metainfo['gt_image_counts'].sum() >= 0
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    losses = []
    for batch in (clean, bad):
        torch.manual_seed(1)
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        losses.append(model.loss(data['inputs'], data['data_samples']))
    for key in losses[0]:
        assert torch.equal(losses[0][key], losses[1][key]), key
    # the labels themselves came through (not all-zero), and the loss depends on them
    counts = torch.stack([torch.as_tensor(s.metainfo['gt_image_counts'])
                          for s in clean['data_samples']])
    assert counts.sum() > 0
