"""Bad input gives clear errors or correct skipping: degenerate masks, empty images, wrong
categories, and a config whose num_classes does not match the dataset."""
import json
import logging
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image
from pycocotools import mask as mask_utils

import e2e_utils
from insplug.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write_set(root, annotations, num_images=3, size=32):
    (root / 'images').mkdir(parents=True)
    images = []
    for i in range(num_images):
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / 'images' / f'{i}.png')
        images.append(dict(id=i + 1, file_name=f'{i}.png', height=size, width=size))
    categories = [dict(id=k + 1, name=n) for k, n in
                  enumerate(('circle', 'rectangle', 'triangle', 'star', 'ring'))]
    for k, ann in enumerate(annotations):
        ann.setdefault('id', k + 1)
        ann.setdefault('iscrowd', 0)
        ann.setdefault('category_id', 1)
        ann.setdefault('area', 10.0)
        ann.setdefault('bbox', [2.0, 2.0, 5.0, 5.0])
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _square_rle(size=32):
    m = np.zeros((size, size), np.uint8)
    m[4:12, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return dict(counts=rle['counts'].decode(), size=[size, size])


def _build(root, test_mode):
    with DefaultScope.overwrite_default_scope('insplug'):
        return DATASETS.build(dict(
            type='ShapesDataset', data_root=str(root), ann_file='ann.json',
            data_prefix=dict(img='images/'), test_mode=test_mode, pipeline=[],
            filter_cfg=None if test_mode else dict(filter_empty_gt=True, min_size=1)))


def test_degenerate_masks_are_dropped_with_a_message(tmp_path):
    zero = mask_utils.encode(np.zeros((32, 32), np.uint8, order='F'))
    annotations = [
        dict(image_id=1, segmentation=_square_rle()),                      # valid
        dict(image_id=1, segmentation=[]),                                  # empty list
        dict(image_id=2, segmentation=[[1.0, 1.0, 5.0, 5.0]]),              # 2-point polygon
        dict(image_id=2, segmentation=dict(counts=zero['counts'].decode(), size=[32, 32])),
    ]                                                                       # image 3: none
    _write_set(tmp_path, annotations)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()  # where print_log(logger='current') writes
    logger.addHandler(handler)
    try:
        train = _build(tmp_path, test_mode=False)
    finally:
        logger.removeHandler(handler)
    logged = '\n'.join(records)
    assert 'dropped 3 annotation(s)' in logged and 'annotation id 2' in logged
    assert len(train) == 1  # images 2 and 3 have no usable instance: filtered for training
    assert len(train[0]['instances']) == 1
    test = _build(tmp_path, test_mode=True)
    assert len(test) == 3  # evaluation keeps every image
    assert [len(test[i]['instances']) for i in range(3)] == [1, 0, 0]


def test_unknown_category_names_the_field_and_the_fix(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle(), category_id=9)])
    with pytest.raises(ValueError, match=r'category_id 9.*metainfo=dict\(classes=') as info:
        _build(tmp_path, test_mode=True)
    assert 'annotation id 1' in str(info.value)


def test_num_classes_mismatch_stops_before_training(tmp_path, demo_data):
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py'))
    e2e_utils.point_config_at_data(cfg, demo_data['root'], demo_data['train_ann'],
                                   demo_data['val_ann'])
    cfg.model.roi_head.bbox_head.num_classes = 3
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(AssertionError, match=r'`num_classes` \(3\) in Shared2FCBBoxHead.*5'):
        runner.train()
