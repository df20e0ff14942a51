"""Dataset registration for detectron2: the shapes set and any COCO-format set, evaluated by
detectron2's ``COCOEvaluator``.

The evaluator check feeds the ground truth back as predictions: a correct registration (files,
class names, category-id map) must give 100 AP for bbox and segm, and predictions with the
classes shifted by one must not (so the check can fail).
"""
import json
import logging
import os.path as osp

import numpy as np
import pytest

from d2_utils import INSTALL_HINT  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.structures import Boxes, BoxMode, Instances  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from insplug.datasets.shapes import CLASSES  # noqa: E402
from insplug.detectron2 import (check_num_classes, register_coco_instances,  # noqa: E402
                                register_shapes)


def test_register_shapes(d2_shapes):
    train = DatasetCatalog.get(d2_shapes['train'])
    assert len(train) == 24
    meta = MetadataCatalog.get(d2_shapes['train'])
    assert meta.thing_classes == list(CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(5)}
    assert meta.evaluator_type == 'coco'
    record = next(r for r in train if r['annotations'])
    assert osp.isfile(record['file_name'])
    assert all(0 <= a['category_id'] < 5 for r in train for a in r['annotations'])
    # registering the same files again is a no-op; other files under the name are an error
    assert register_shapes(d2_shapes['root_dir'], prefix='d2test_shapes') == \
        [d2_shapes['train'], d2_shapes['val']]
    with pytest.raises(ValueError, match='already registered'):
        register_coco_instances(d2_shapes['train'],
                                osp.join(d2_shapes['root_dir'], 'val', 'annotations.json'),
                                osp.join(d2_shapes['root_dir'], 'val', 'images'))


def test_bad_input_errors(tmp_path, d2_shapes, caplog):
    with pytest.raises(FileNotFoundError, match='python -m insplug.datasets.shapes'):
        register_shapes(str(tmp_path / 'nowhere'), prefix='d2test_missing')
    ann = osp.join(d2_shapes['root_dir'], 'val', 'annotations.json')
    images = osp.join(d2_shapes['root_dir'], 'val', 'images')
    with pytest.raises(ValueError, match='expected'):
        register_coco_instances('d2test_wrong_classes', ann, images, classes=('a', 'b'))
    with pytest.raises(ValueError, match='MODEL.ROI_HEADS.NUM_CLASSES = 80'):
        check_num_classes([d2_shapes['val']], 80, 'MODEL.ROI_HEADS.NUM_CLASSES')
    check_num_classes([d2_shapes['val']], 5, 'MODEL.ROI_HEADS.NUM_CLASSES')

    # an annotation with an empty segmentation is dropped with one warning naming it
    with open(ann) as f:
        data = json.load(f)
    data['annotations'][0]['segmentation'] = []
    bad_id = data['annotations'][0]['id']
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(data))
    name = register_coco_instances('d2test_empty_segm', str(bad), images)
    with caplog.at_level(logging.WARNING, logger='insplug.detectron2.datasets'):
        records = DatasetCatalog.get(name)
    kept = sum(len(r['annotations']) for r in records)
    assert kept == len(data['annotations']) - 1
    assert any(f'annotation id {bad_id}' in r.getMessage() for r in caplog.records)


def gt_as_predictions(records, class_shift=0):
    """Instances built from the ground truth of each record (score 1)."""
    outputs = []
    for record in records:
        h, w = record['height'], record['width']
        anns = record['annotations']
        inst = Instances((h, w))
        masks = [mask_utils.decode(mask_utils.frPyObjects(a['segmentation'], h, w)
                                   if isinstance(a['segmentation']['counts'], list)
                                   else a['segmentation']) for a in anns]
        inst.pred_masks = torch.as_tensor(np.stack(masks) if masks else
                                          np.zeros((0, h, w)), dtype=torch.bool)
        boxes = [BoxMode.convert(a['bbox'], a['bbox_mode'], BoxMode.XYXY_ABS) for a in anns]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = (torch.tensor([a['category_id'] for a in anns],
                                          dtype=torch.int64) + class_shift) % 5
        outputs.append({'instances': inst})
    return outputs


def evaluate(name, records, outputs, out_dir):
    evaluator = COCOEvaluator(name, output_dir=str(out_dir))
    evaluator.reset()
    evaluator.process([{'image_id': r['image_id']} for r in records], outputs)
    return evaluator.evaluate()


def test_coco_evaluator_scores_ground_truth_perfectly(d2_shapes, tmp_path):
    records = DatasetCatalog.get(d2_shapes['val'])
    results = evaluate(d2_shapes['val'], records, gt_as_predictions(records), tmp_path / 'a')
    assert results['segm']['AP'] == pytest.approx(100.0)
    assert results['bbox']['AP'] == pytest.approx(100.0)
    shifted = evaluate(d2_shapes['val'], records, gt_as_predictions(records, class_shift=1),
                       tmp_path / 'b')
    assert shifted['segm']['AP'] < 1.0
