"""COCO-format datasets with annotation checks, and the bundled demo sets.

mmdet's ``CocoDataset`` silently turns an empty polygon list into an ignored instance and fails
deep in a tensor op on some degenerate masks. :class:`ValidatedCocoDataset` checks every
annotation once, when the annotation file is parsed, so bad input gives a clear message:

* an annotation whose ``segmentation`` is missing, empty, has fewer than 3 polygon points, or
  decodes to zero pixels is dropped, and the count is logged with the first offending id;
* a ``category_id`` that is not in ``categories`` raises, naming the image and annotation;
* images with no (remaining) instances are kept for evaluation and filtered from training by
  ``filter_cfg=dict(filter_empty_gt=True)`` as usual.
"""
from mmdet.datasets import CocoDataset
from mmengine.logging import print_log
from pycocotools import mask as mask_utils

from insplug.datasets.nuclei import CLASSES as NUCLEI_CLASSES
from insplug.datasets.shapes import CLASSES as SHAPES_CLASSES
from insplug.registry import DATASETS


def segmentation_pixel_count(segmentation, height, width):
    """Pixels covered by a COCO ``segmentation`` (polygons or RLE); 0 when degenerate."""
    if not segmentation:
        return 0
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            return 0
        rles = mask_utils.frPyObjects(polygons, height, width)
        return int(mask_utils.area(mask_utils.merge(rles)))
    if isinstance(segmentation, dict) and 'counts' in segmentation:
        if isinstance(segmentation['counts'], list):
            segmentation = mask_utils.frPyObjects(segmentation, height, width)
        return int(mask_utils.area(segmentation))
    raise TypeError(f'unsupported segmentation format {type(segmentation).__name__}; '
                    'use COCO polygons (list of lists) or RLE (dict with "counts")')


@DATASETS.register_module()
class ValidatedCocoDataset(CocoDataset):
    """``CocoDataset`` that checks categories and drops degenerate masks with a clear log."""

    def load_data_list(self):
        self._dropped = []
        data_list = super().load_data_list()
        if self._dropped:
            first = self._dropped[0]
            print_log(
                f'{type(self).__name__}: dropped {len(self._dropped)} annotation(s) whose '
                f'`segmentation` is empty or has zero area (first: annotation id {first[0]} '
                f'in image id {first[1]}). Fix or remove them in {self.ann_file} to silence '
                'this message.', logger='current', level=30)
        return data_list

    def parse_data_info(self, raw_data_info):
        img_info = raw_data_info['raw_img_info']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('category_id') not in self.cat2label:
                raise ValueError(
                    f'{self.ann_file}: annotation id {ann.get("id")} in image id '
                    f'{img_info["img_id"]} has category_id {ann.get("category_id")}, which is '
                    f'not among this dataset\'s classes {self.metainfo["classes"]} '
                    f'(category ids {sorted(self.cat2label)}). Set `metainfo=dict(classes=...)` '
                    'in the dataset config to the classes of the annotation file.')
            if ann.get('iscrowd', 0) == 0:
                pixels = segmentation_pixel_count(
                    ann.get('segmentation'), img_info['height'], img_info['width'])
                if pixels == 0:
                    self._dropped.append((ann.get('id'), img_info['img_id']))
                    continue
            kept.append(ann)
        raw_data_info = dict(raw_data_info, raw_ann_info=kept)
        return super().parse_data_info(raw_data_info)

    def filter_data(self):
        """As ``CocoDataset``, but an image whose annotations were all dropped as degenerate
        also counts as empty (mmdet looks at the raw file, where it still has annotations)."""
        data_list = super().filter_data()
        if self.test_mode or not (self.filter_cfg or {}).get('filter_empty_gt', False):
            return data_list
        return [info for info in data_list
                if any(inst['ignore_flag'] == 0 for inst in info['instances'])]


@DATASETS.register_module()
class ShapesDataset(ValidatedCocoDataset):
    """The bundled synthetic set, written by ``python -m insplug.datasets.shapes``."""
    METAINFO = dict(
        classes=SHAPES_CLASSES,
        palette=[(220, 20, 60), (0, 128, 255), (0, 180, 0), (255, 170, 0), (160, 32, 240)])


@DATASETS.register_module()
class NucleiDataset(ValidatedCocoDataset):
    """DSB2018 nuclei in COCO format (``shared/data/nuclei``): one class, dense small objects."""
    METAINFO = dict(classes=NUCLEI_CLASSES, palette=[(220, 20, 60)])


