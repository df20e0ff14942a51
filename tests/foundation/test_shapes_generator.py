"""The bundled synthetic set: deterministic, valid COCO, varied sizes, occlusion, empty images."""
import json

import numpy as np
from pycocotools import mask as mask_utils

from insplug.datasets import shapes


def test_same_seed_same_image_and_masks():
    a_img, a_inst = shapes.make_image(123)
    b_img, b_inst = shapes.make_image(123)
    c_img, _ = shapes.make_image(124)
    assert np.array_equal(a_img, b_img) and not np.array_equal(a_img, c_img)
    assert [i['label'] for i in a_inst] == [i['label'] for i in b_inst]
    assert all(np.array_equal(x['mask'], y['mask']) for x, y in zip(a_inst, b_inst))


def test_visible_masks_are_disjoint_and_not_boxes():
    fill_ratios = []
    for seed in range(40):
        _, instances = shapes.make_image(seed)
        if len(instances) > 1:
            stacked = np.stack([i['mask'] for i in instances])
            assert stacked.sum(0).max() <= 1  # occluded parts belong to the top shape only
        for inst in instances:
            ys, xs = np.nonzero(inst['mask'])
            box_area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            fill_ratios.append(inst['mask'].sum() / box_area)
    fill_ratios = np.array(fill_ratios)
    assert (fill_ratios < 0.6).mean() > 0.2  # rings, stars, triangles, occlusion
    assert fill_ratios.max() <= 1.0


def test_generated_split_is_valid_coco(tmp_path):
    ann_file = shapes.generate_split(str(tmp_path), num_images=60, seed=7)
    with open(ann_file) as f:
        data = json.load(f)
    assert [c['name'] for c in data['categories']] == list(shapes.CLASSES)
    areas = np.array([a['area'] for a in data['annotations']])
    assert areas.min() >= shapes.MIN_VISIBLE_AREA
    assert (areas < 32 ** 2).any() and (areas > 96 ** 2).any()  # COCO small and large
    labels = {a['category_id'] for a in data['annotations']}
    assert labels == set(range(1, len(shapes.CLASSES) + 1))
    ann = data['annotations'][0]
    decoded = mask_utils.decode(dict(ann['segmentation'], counts=ann['segmentation']['counts']))
    assert decoded.sum() == ann['area']
    shapes.validate(ann_file, str(tmp_path / 'images'))


def test_some_images_have_no_instances():
    empty = sum(len(shapes.make_image(seed)[1]) == 0 for seed in range(300))
    assert 0 < empty < 30


def test_validate_rejects_a_corrupted_annotation(tmp_path):
    ann_file = shapes.generate_split(str(tmp_path), num_images=3, seed=1)
    with open(ann_file) as f:
        data = json.load(f)
    data['annotations'][0]['area'] += 5
    with open(ann_file, 'w') as f:
        json.dump(data, f)
    try:
        shapes.validate(ann_file, str(tmp_path / 'images'))
    except ValueError as error:
        assert 'area' in str(error)
    else:
        raise AssertionError('validate accepted a wrong area')
