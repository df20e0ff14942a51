"""The seen/unseen class split of zero-shot instance segmentation as a dataset option.

``ClassSplitCocoDataset(split='48_17' | '65_15', subset='seen' | 'unseen' | 'all')`` reads an
ordinary COCO json and keeps the split's classes (the release's lists,
:mod:`insplug.core.zsi.splits`): with ``subset='seen'`` no unseen annotation reaches the
pipeline (``parse_data_info`` leaves annotations of the other classes out), and with
``drop_images_with_unseen`` (default for ``seen``) training images holding an unseen object are
left out, the protocol of the COCO zero-shot splits (the release trains on prepared
``instances_train2014_seen_*.json`` files whose script is not published). ``subset='unseen'``
evaluates the ZSI setting, ``'all'`` the GZSI one. Labels follow category-id order within the
kept classes: for 'seen' and 'unseen' that is the release's label order; for 'all' mmdet's
metric needs id order, while the release numbers the unseen classes after the seen ones
(:func:`insplug.core.zsi.splits.split_categories` gives that order for a model to map).

``unseen_names`` replaces the split by a custom one (e.g. one class of the shapes demo).
"""
import json
import os.path as osp

from insplug.core.zsi.splits import split_categories
from insplug.registry import DATASETS

from ..datasets import ValidatedCocoDataset


def _ann_path(ann_file, data_root):
    if data_root and not osp.isabs(ann_file):
        return osp.join(data_root, ann_file)
    return ann_file


@DATASETS.register_module()
class ClassSplitCocoDataset(ValidatedCocoDataset):
    """COCO-format dataset restricted to the seen, the unseen or all classes of a split.

    Args:
        split: '48_17' or '65_15' (ignored when ``unseen_names`` is given).
        subset: 'seen', 'unseen' or 'all'.
        unseen_names: optional custom unseen class names.
        drop_images_with_unseen: leave out images holding any (non-crowd) unseen annotation;
            default True for 'seen' outside test mode, else False.
        *args, **kwargs: as ``ValidatedCocoDataset`` (``metainfo['classes']`` is set here).
    """

    def __init__(self, *args, split='48_17', subset='seen', unseen_names=None,
                 drop_images_with_unseen=None, **kwargs):
        if subset not in ('seen', 'unseen', 'all'):
            raise ValueError(f"subset must be 'seen', 'unseen' or 'all', not {subset!r}")
        ann_file = kwargs.get('ann_file', args[0] if args else '')
        with open(_ann_path(ann_file, kwargs.get('data_root', ''))) as f:
            coco = json.load(f)
        cats = coco['categories']
        if unseen_names is not None:
            names = {n.lower() for n in unseen_names}
            ordered = sorted(cats, key=lambda c: c['id'])
            seen = [c for c in ordered if c['name'].lower() not in names]
            unseen = [c for c in ordered if c['name'].lower() in names]
        else:
            seen, unseen = split_categories(cats, split)
        keep = dict(seen=seen, unseen=unseen, all=sorted(seen + unseen,
                                                         key=lambda c: c['id']))[subset]
        self.split, self.subset = split, subset
        self.seen_classes = tuple(c['name'] for c in seen)
        self.unseen_classes = tuple(c['name'] for c in unseen)
        if drop_images_with_unseen is None:
            drop_images_with_unseen = subset == 'seen' and not kwargs.get('test_mode', False)
        unseen_ids = {c['id'] for c in unseen}
        self._images_with_unseen = (
            {a['image_id'] for a in coco['annotations']
             if a['category_id'] in unseen_ids and not a.get('iscrowd', 0)}
            if drop_images_with_unseen else set())
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        metainfo['classes'] = tuple(c['name'] for c in keep)
        super().__init__(*args, metainfo=metainfo, **kwargs)

    def parse_data_info(self, raw_data_info):
        # the split's other classes are left out here, on purpose (the parent raises on them)
        raw = dict(raw_data_info, raw_ann_info=[
            a for a in raw_data_info['raw_ann_info']
            if a.get('ignore', False) or a.get('category_id') in self.cat2label])
        return super().parse_data_info(raw)

    def load_data_list(self):
        data_list = super().load_data_list()
        if self._images_with_unseen:
            data_list = [d for d in data_list if d['img_id'] not in self._images_with_unseen]
        return data_list
