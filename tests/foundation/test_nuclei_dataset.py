"""Real-data check (uses ../shared/data/nuclei, the DSB2018 nuclei set; skips only where
../shared is absent): NucleiDataset parses and validates every annotation of the real set."""
import json
import os.path as osp

from mmengine.registry import DefaultScope
from pycocotools import mask as mask_utils

from insplug.registry import DATASETS


def test_nuclei_val_split_parses_with_every_mask_valid(nuclei_root):
    with open(osp.join(nuclei_root, 'val', 'annotations.json')) as f:
        raw = json.load(f)
    with DefaultScope.overwrite_default_scope('insplug'):
        dataset = DATASETS.build(dict(
            type='NucleiDataset', data_root=nuclei_root, ann_file='val/annotations.json',
            data_prefix=dict(img='val/images/'), test_mode=True, pipeline=[]))
    assert dataset.metainfo['classes'] == ('nucleus',)
    assert len(dataset) == len(raw['images']) == 77
    kept = sum(len(dataset[i]['instances']) for i in range(len(dataset)))
    nonempty = sum(1 for a in raw['annotations']
                   if mask_utils.area(a['segmentation']) > 0 and a.get('iscrowd', 0) == 0)
    assert kept == nonempty and kept > 2500  # README: 2962 instances
    sizes = {(dataset[i]['height'], dataset[i]['width']) for i in range(len(dataset))}
    assert (256, 256) in sizes and len(sizes) > 1
