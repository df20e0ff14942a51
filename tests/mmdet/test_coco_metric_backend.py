"""InsplugCocoMetric: faster-coco-eval gives the same 12 bbox and segm stats as pycocotools.

The detections are built from the demo set's ground truth (shifted, eroded or dilated masks,
wrong classes, duplicates, false positives, random scores), so the IoUs spread over the whole
0.5-0.95 range and every area range, crowd-free as the shapes set is.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage

from insplug.mmdet.evaluation import InsplugCocoMetric, faster_coco_eval_available

needs_faster = pytest.mark.skipif(not faster_coco_eval_available(),
                                  reason='faster-coco-eval not installed (pip install '
                                         'faster-coco-eval, in the [test] extra)')


def _demo_predictions(ann_file, seed=0):
    """mmdet data samples (as dicts) with pred_instances derived from the ground truth."""
    data = json.load(open(ann_file))
    rng = np.random.RandomState(seed)
    by_image = {img['id']: [] for img in data['images']}
    for ann in data['annotations']:
        by_image[ann['image_id']].append(ann)
    cat_ids = sorted(c['id'] for c in data['categories'])
    samples = []
    for img in data['images']:
        h, w = img['height'], img['width']
        masks, labels = [], []
        for ann in by_image[img['id']]:
            seg = ann['segmentation']
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg['counts'], list):
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            m = mask_utils.decode(rle).astype(bool)
            for _ in range(rng.randint(1, 3)):  # sometimes a duplicate
                p = np.roll(m, (rng.randint(-3, 4), rng.randint(-3, 4)), axis=(0, 1))
                op = rng.randint(3)
                if op == 1:
                    p = ndimage.binary_erosion(p, iterations=rng.randint(1, 3))
                elif op == 2:
                    p = ndimage.binary_dilation(p, iterations=rng.randint(1, 3))
                label = cat_ids.index(ann['category_id'])
                if rng.rand() < 0.1:
                    label = rng.randint(len(cat_ids))
                masks.append(p)
                labels.append(label)
        for _ in range(rng.randint(0, 4)):  # false positives
            y0, x0 = rng.randint(0, h - 20), rng.randint(0, w - 20)
            p = np.zeros((h, w), bool)
            p[y0:y0 + rng.randint(4, 60), x0:x0 + rng.randint(4, 60)] = True
            masks.append(p)
            labels.append(rng.randint(len(cat_ids)))
        masks = np.stack(masks) if masks else np.zeros((0, h, w), bool)
        boxes = []
        for p in masks:
            ys, xs = np.nonzero(p)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else
                         [0, 0, 1, 1])
        # boxes jittered independently of the masks, so bbox and segm AP differ
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) + rng.uniform(-2, 2, (len(boxes), 4))
        samples.append(dict(
            img_id=img['id'], ori_shape=(h, w),
            pred_instances=dict(bboxes=torch.from_numpy(boxes.astype(np.float32)),
                                scores=torch.from_numpy(rng.rand(len(masks)).astype(np.float32)),
                                labels=torch.as_tensor(labels, dtype=torch.long),
                                masks=torch.from_numpy(masks))))
    return samples, data


def _evaluate(ann_file, classes, samples, **kwargs):
    metric = InsplugCocoMetric(ann_file=ann_file, metric=['bbox', 'segm'], **kwargs)
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    return metric, out


@needs_faster
def test_faster_coco_eval_equals_pycocotools_on_demo_results(demo_data):
    ann_file = osp.join(demo_data['root'], demo_data['val_ann'])
    samples, data = _demo_predictions(ann_file)
    assert sum(len(s['pred_instances']['scores']) for s in samples) > 50
    slow, slow_out = _evaluate(ann_file, demo_data['classes'], samples,
                               use_faster_coco_eval=False)
    fast, fast_out = _evaluate(ann_file, demo_data['classes'], samples,
                               use_faster_coco_eval=True)
    assert not slow.use_faster_coco_eval and fast.use_faster_coco_eval
    for metric in ('bbox', 'segm'):
        a = np.asarray(slow.coco_stats[metric])
        b = np.asarray(fast.coco_stats[metric])
        assert a.shape == b.shape == (12,)
        # informative results: neither trivial nor perfect, areas of every range present
        assert 0.05 < a[0] < 0.95 and (a[3:6] >= 0).all(), a
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4, err_msg=metric)
    assert slow.coco_stats['bbox'] != slow.coco_stats['segm']
    assert slow_out == fast_out  # the rounded figures mmdet reports


def test_default_backend_and_pycocotools_fallback(demo_data, monkeypatch):
    ann_file = osp.join(demo_data['root'], demo_data['val_ann'])
    metric = InsplugCocoMetric(ann_file=ann_file)
    assert metric.use_faster_coco_eval == faster_coco_eval_available()
    import insplug.mmdet.evaluation as evaluation
    monkeypatch.setattr(evaluation, 'faster_coco_eval_available', lambda: False)
    assert not InsplugCocoMetric(ann_file=ann_file).use_faster_coco_eval
    with pytest.raises(ImportError, match='faster-coco-eval'):
        InsplugCocoMetric(ann_file=ann_file, use_faster_coco_eval=True)


def test_mmdet_coco_metric_module_is_left_untouched(demo_data):
    import mmdet.evaluation.metrics.coco_metric as coco_metric
    before = (coco_metric.COCO, coco_metric.COCOeval, coco_metric.COCOevalMP)
    ann_file = osp.join(demo_data['root'], demo_data['val_ann'])
    samples, _ = _demo_predictions(ann_file, seed=1)
    _evaluate(ann_file, demo_data['classes'], samples[:3])
    assert (coco_metric.COCO, coco_metric.COCOeval, coco_metric.COCOevalMP) == before


def test_configs_use_the_metric():
    from mmengine.config import Config
    import insplug  # noqa: F401
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs/demo/refinemask_r18_shapes.py'))
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'InsplugCocoMetric'
    cfg = Config.fromfile(osp.join(repo, 'configs/_base_/datasets/coco_instance.py'))
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'InsplugCocoMetric'
        assert evaluator.ann_file.endswith('annotations/instances_val2017.json')
        assert list(evaluator.metric) == ['bbox', 'segm']
