"""The release's COCO seen/unseen class splits and its label order.

48/17 (``mmdet/datasets/coco_48_17.py``): 48 seen and 17 unseen classes are named (COCO's 15
others belong to neither group and are left out); 65/15
(``coco_65_15.py``): the 15 unseen classes are COCO category ids. Labels (the release's
``seen_cat2label`` / ``unseen_cat2label``, 1-based there with 0 the background; 0-based here):
the seen classes in category-id order, then the unseen classes in category-id order. The class
embedding files follow the same order after their background column.
"""
import os.path as osp

import torch

# the release's CocoDataset_48_17.CLASSES[:48]; COCO's other 15 classes are in neither group
SEEN_48_17 = ('person', 'bicycle', 'car', 'motorcycle', 'truck', 'boat', 'bench', 'bird', 'horse',
              'sheep', 'zebra', 'giraffe', 'backpack', 'handbag', 'skis', 'kite', 'surfboard',
              'bottle', 'spoon', 'bowl', 'banana', 'apple', 'orange', 'broccoli', 'carrot',
              'pizza', 'donut', 'chair', 'bed', 'tv', 'laptop', 'remote', 'microwave', 'oven',
              'refrigerator', 'book', 'clock', 'vase', 'toothbrush', 'train', 'bear', 'suitcase',
              'frisbee', 'fork', 'sandwich', 'toilet', 'mouse', 'toaster')
UNSEEN_48_17 = ('bus', 'dog', 'cow', 'elephant', 'umbrella', 'tie', 'skateboard', 'cup',
                'knife', 'cake', 'couch', 'keyboard', 'sink', 'scissors', 'airplane', 'cat',
                'snowboard')
# airplane, train, parking meter, cat, bear, suitcase, frisbee, snowboard, fork, sandwich,
# hot dog, toilet, mouse, toaster, hair drier
UNSEEN_IDS_65_15 = (5, 7, 14, 17, 23, 33, 34, 36, 48, 54, 58, 70, 74, 80, 89)
SPLITS = ('48_17', '65_15')
NUM_SEEN = {'48_17': 48, '65_15': 65}
_DATA = osp.join(osp.dirname(__file__), 'embeddings')


def _norm(name):
    return name.replace('_', ' ').strip().lower()


def split_categories(categories, split):
    """Seen and unseen categories of a COCO category list, in the release's label order.

    Args:
        categories: COCO ``categories`` (dicts with ``id`` and ``name``), any order.
        split: '48_17' or '65_15'.

    Returns:
        (seen, unseen): lists of category dicts, each sorted by category id. Classes of the split
        absent from ``categories`` are simply missing (a sub-set such as the shapes demo).
    """
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}: one of {SPLITS}')
    cats = sorted(categories, key=lambda c: c['id'])
    if split == '48_17':
        seen_names = {_norm(n) for n in SEEN_48_17}
        unseen_names = {_norm(n) for n in UNSEEN_48_17}
        return ([c for c in cats if _norm(c['name']) in seen_names],
                [c for c in cats if _norm(c['name']) in unseen_names])
    return ([c for c in cats if c['id'] not in UNSEEN_IDS_65_15],
            [c for c in cats if c['id'] in UNSEEN_IDS_65_15])


def load_class_vectors(split):
    """The release's class embeddings: (300, 1 + seen + unseen) float32, column 0 background."""
    path = osp.join(_DATA, f'word_w2v_withbg_{split}.pt')
    return torch.load(path, weights_only=True)


def split_vectors(vectors, num_seen):
    """The release's ``vec`` / ``vec_unseen`` of an embedding matrix.

    Args:
        vectors: (D, 1 + S + U), column 0 background.
        num_seen: S.

    Returns:
        vec (D, 1 + S): background + seen; vec_unseen (D, 1 + U): background + unseen.
    """
    vec = vectors[:, :num_seen + 1]
    vec_unseen = torch.cat((vectors[:, :1], vectors[:, num_seen + 1:]), dim=1)
    return vec, vec_unseen
