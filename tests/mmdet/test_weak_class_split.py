"""Seen/unseen class split: the release's 48/17 and 65/15 lists on COCO's 80 categories, the
dataset option keeps only seen classes for training, and ZSI's unseen-class scoring with fixed
embeddings, hand-worked."""
import json

import pytest
import torch

from insplug.core.zsi.scoring import (semantic_logits, sync_background, transfer_scores,
                                      zsi_scores)
from insplug.core.zsi.splits import (NUM_SEEN, UNSEEN_IDS_65_15, load_class_vectors,
                                     split_categories, split_vectors)


@pytest.fixture(autouse=True)
def _insplug_default_scope():
    """Each test builds in insplug's scope, whatever scope an earlier test left as default."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('insplug'):
        yield


COCO_NAMES = [
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich',
    'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush']
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49,
            50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74,
            75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]
CATS = [dict(id=i, name=n) for i, n in zip(COCO_IDS, COCO_NAMES)]


def test_split_sizes_and_release_names():
    seen, unseen = split_categories(CATS, '48_17')
    # the release's 48/17 split covers 65 of COCO's 80 classes; 15 are in neither group
    assert len(seen) == 48 and len(unseen) == 17
    assert {c['name'] for c in unseen} >= {'bus', 'cat', 'snowboard'}
    assert not {'traffic light', 'sports ball', 'hair drier'} & {c['name'] for c in seen + unseen}
    assert [c['id'] for c in seen] == sorted(c['id'] for c in seen)
    seen65, unseen15 = split_categories(CATS, '65_15')
    assert len(seen65) == 65 and len(unseen15) == 15
    assert [c['id'] for c in unseen15] == list(UNSEEN_IDS_65_15)
    assert [c['name'] for c in unseen15][:4] == ['airplane', 'train', 'parking meter', 'cat']
    assert [c['id'] for c in seen65] == sorted(c['id'] for c in seen65)


def test_class_vectors_shape_and_split():
    for split, n in (('48_17', 66), ('65_15', 81)):
        v = load_class_vectors(split)
        assert v.shape == (300, n) and v.dtype == torch.float32
        vec, vec_unseen = split_vectors(v, NUM_SEEN[split])
        assert vec.shape[1] == NUM_SEEN[split] + 1
        assert vec_unseen.shape[1] == n - NUM_SEEN[split]
        assert torch.equal(vec[:, 0], vec_unseen[:, 0])


def test_unseen_scoring_hand_worked():
    # D = 2, one seen class along x, one unseen class along y, background (1, 1)/sqrt2
    r = 2 ** -0.5
    vec = torch.tensor([[r, 1.0], [r, 0.0]])            # (D, 1 + S)
    vec_unseen = torch.tensor([[r, 0.0], [r, 1.0]])     # (D, 1 + U)
    logits = torch.log(torch.tensor([[0.25, 0.75]]))    # p = (0.25 bg, 0.75 seen)
    # p @ vec.T = 0.25 * (r, r) + 0.75 * (1, 0) = (0.25 r + 0.75, 0.25 r)
    w = torch.tensor([[0.25 * r + 0.75, 0.25 * r]])
    expect_unseen = torch.tensor([[w[0, 0] * r + w[0, 1] * r, w[0, 1]]])
    expect_seen = torch.tensor([[w[0, 0] * r + w[0, 1] * r, w[0, 0]]])
    assert torch.allclose(zsi_scores(logits, vec, vec_unseen, 'zsi'), expect_unseen)
    assert torch.allclose(zsi_scores(logits, vec, vec_unseen, 'seen'), expect_seen)
    s, u = zsi_scores(logits, vec, vec_unseen, 'gzsi')
    assert torch.allclose(s, expect_seen) and torch.allclose(u, expect_unseen)
    assert torch.allclose(transfer_scores(logits, vec, vec_unseen), expect_unseen)


def test_semantic_logits_and_sync_background():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 4, generator=g)
    vec = torch.randn(4, 3, generator=g)
    voc = torch.randn(4, 5, generator=g)
    k_voc = torch.nn.Linear(5, 4)
    ref = torch.stack([k_voc(f[i] @ voc) @ vec for i in range(3)])
    assert torch.allclose(semantic_logits(f, vec, k_voc, voc), ref, atol=1e-6)
    k = torch.nn.Linear(3, 3)
    assert torch.allclose(semantic_logits(f, vec, k), f @ torch.tanh(k(vec)), atol=1e-6)
    bg = torch.arange(4.)
    out = sync_background(vec, bg)
    assert torch.equal(out[:, 0], bg) and torch.equal(out[:, 1:], vec[:, 1:])
    assert not torch.equal(vec[:, 0], bg)   # the input is not modified


@pytest.fixture()
def split_json(tmp_path):
    cats = [dict(id=1, name='person'), dict(id=6, name='bus'), dict(id=3, name='car')]
    images = [dict(id=i, file_name=f'{i}.png', height=32, width=32) for i in (1, 2, 3)]
    box = [2., 2., 10., 10.]
    poly = [[2., 2., 12., 2., 12., 12., 2., 12.]]
    anns = [dict(id=1, image_id=1, category_id=1, bbox=box, area=100., iscrowd=0),
            dict(id=2, image_id=1, category_id=3, bbox=box, area=100., iscrowd=0),
            dict(id=3, image_id=2, category_id=1, bbox=box, area=100., iscrowd=0),
            dict(id=4, image_id=2, category_id=6, bbox=box, area=100., iscrowd=0),  # unseen
            dict(id=5, image_id=3, category_id=6, bbox=box, area=100., iscrowd=0)]
    for a in anns:
        a['segmentation'] = poly
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def infos(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def build(path, **kw):
    import insplug.mmdet  # noqa: F401
    from insplug.registry import DATASETS
    return DATASETS.build(dict(type='ClassSplitCocoDataset', ann_file=path, data_prefix=dict(
        img=''), pipeline=[], check_image_size=False, **kw))


def test_dataset_seen_subset_hides_unseen(split_json):
    ds = build(split_json, split='48_17', subset='seen')
    assert ds.metainfo['classes'] == ('person', 'car')
    # image 2 holds a bus (unseen in 48/17) and image 3 only a bus: both left out
    assert [d['img_id'] for d in infos(ds)] == [1]
    assert [i['bbox_label'] for i in infos(ds)[0]['instances']] == [0, 1]
    kept = build(split_json, split='48_17', subset='seen', drop_images_with_unseen=False)
    labels = {d['img_id']: [i['bbox_label'] for i in d['instances']] for d in infos(kept)}
    assert labels[2] == [0]          # the bus annotation never reaches the pipeline


def test_dataset_unseen_and_all(split_json):
    ds = build(split_json, split='48_17', subset='unseen', test_mode=True)
    assert ds.metainfo['classes'] == ('bus',)
    assert {d['img_id'] for d in infos(ds)} == {1, 2, 3}
    both = build(split_json, split='48_17', subset='all', test_mode=True)
    assert both.metainfo['classes'] == ('person', 'car', 'bus')
    custom = build(split_json, subset='seen', unseen_names=('car',))
    assert custom.metainfo['classes'] == ('person', 'bus')
