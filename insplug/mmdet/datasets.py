"""COCO-format datasets with annotation checks, and the bundled demo sets.

mmdet's ``CocoDataset`` silently drops or misreads some bad annotations and fails deep in numpy
or mmengine on others. :class:`ValidatedCocoDataset` checks the annotation file once, when it
is parsed, so bad input gives a clear message naming the file, image or annotation and the fix:

Errors (the run cannot be right):

* the file is not valid JSON, not a JSON object, or lacks ``images`` / ``categories``; an
  image entry lacks ``id``/``file_name``/``height``/``width``; an annotation lacks
  ``id``/``image_id``/``category_id``/``bbox``/``area``, or its ``bbox`` is not 4 numbers;
* the file lists no images, or (training) no image is left after filtering;
* an image's json ``height``/``width`` differ from the image file (masks and boxes would be
  decoded at the json size and not line up); the file's size is read once per image from its
  header (PIL reads only the header; EXIF rotation as the loader applies it is taken into
  account); ``check_image_size=False`` skips this for a very large, trusted set;
* an image file is missing or not readable as an image;
* an RLE mask whose ``size`` differs from its image's size;
* a ``category_id`` that is not in ``categories`` / the dataset's classes.

Dropped, with one log line per kind giving the count and the first annotation (not silent):

* an annotation whose ``segmentation`` is missing, empty, has fewer than 3 polygon points, or
  decodes to zero pixels;
* an annotation whose ``bbox`` mmdet cannot use: width or height < 1 (e.g. negative), no
  overlap with the image, or ``area`` <= 0 (mmdet drops these without a word);
* annotations whose ``image_id`` is not among the images (ignored by pycocotools).

Images with no (remaining) instances are kept for evaluation and filtered from training by
``filter_cfg=dict(filter_empty_gt=True)`` as usual.
"""
import json
import os
import os.path as osp

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from insplug.datasets.nuclei import CLASSES as NUCLEI_CLASSES
from insplug.datasets.shapes import CLASSES as SHAPES_CLASSES
from insplug.registry import DATASETS

_IMAGE_KEYS = ('id', 'file_name', 'height', 'width')
_ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox', 'area')
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that transpose the image
_HEADER_CACHE = {}  # (path, mtime_ns, size) -> (width, height) as the loader will see them


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


def image_size_on_disk(path):
    """(width, height) of the image file as the loader decodes it, from the header only.

    JPEG/TIFF/WebP EXIF orientations 5-8 swap width and height (mmcv's loaders apply them).
    Raises FileNotFoundError or PIL's UnidentifiedImageError/OSError.
    """
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _HEADER_CACHE:
        with Image.open(path) as image:  # lazy: reads the header, not the pixels
            width, height = image.size
            orientation = None
            if image.format in ('JPEG', 'MPO', 'TIFF', 'WEBP'):
                orientation = image.getexif().get(0x0112)
        if orientation in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        _HEADER_CACHE[key] = (width, height)
    return _HEADER_CACHE[key]


class CheckedCOCO(COCO):
    """mmdet's COCO API that names the file on a parse error and checks the fields mmdet reads.

    Raises ValueError (naming the file, the entry and the fix) for invalid JSON, a JSON value
    that is not an object, a missing ``images``/``categories`` list, no images, or an image or
    annotation entry without a field mmdet indexes. Annotations of unknown images are counted
    in ``orphan_annotations`` (id of the first, number) for the dataset to log.
    """

    def __init__(self, annotation_file=None):
        self.path = annotation_file
        self.orphan_annotations = None
        try:
            super().__init__(annotation_file)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'{annotation_file} is not valid JSON: {error.msg} at line {error.lineno} '
                f'column {error.colno} (char {error.pos}). Fix the file (`python -m json.tool '
                f'{annotation_file}` shows where); a file cut short while it was written '
                'ends like this.') from None
        except AssertionError as error:
            if 'annotation file format' not in str(error):
                raise
            raise ValueError(
                f'{annotation_file} holds a JSON array or value, not a COCO annotation object '
                '{"images": [...], "annotations": [...], "categories": [...]}.') from None

    def createIndex(self):  # noqa: N802 (pycocotools' name)
        if self.path is not None:
            self._check_fields()
        super().createIndex()

    def _check_fields(self):
        data, path = self.dataset, self.path
        for key in ('images', 'categories'):
            if not isinstance(data.get(key), list):
                raise ValueError(
                    f'{path} has no "{key}" list (keys found: {sorted(data)}); a COCO '
                    'annotation file needs "images", "categories" and, for training and '
                    'evaluation, "annotations".')
        if not data['images']:
            raise ValueError(
                f'{path} lists no images ("images" is empty): the dataset would be empty. '
                'Point `ann_file` at the annotation file of your images, or regenerate it.')
        for index, image in enumerate(data['images']):
            missing = [k for k in _IMAGE_KEYS if k not in image]
            if missing:
                raise ValueError(
                    f'{path}: image entry #{index} (id {image.get("id")}, file '
                    f'{image.get("file_name")}) lacks {missing}. Every image needs "id", '
                    '"file_name", "height" and "width" (the size of the image file).')
        image_ids = {image['id'] for image in data['images']}
        orphans = []
        for index, ann in enumerate(data.get('annotations') or []):
            missing = [k for k in _ANN_KEYS if k not in ann]
            if missing:
                fix = (' (bbox: [x, y, width, height] of the object; for a mask, '
                       'pycocotools.mask.toBbox gives it)' if 'bbox' in missing else '')
                raise ValueError(
                    f'{path}: annotation entry #{index} (id {ann.get("id")}, image id '
                    f'{ann.get("image_id")}) lacks {missing}.{fix}')
            bbox = ann['bbox']
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                    and all(isinstance(v, (int, float)) for v in bbox)):
                raise ValueError(
                    f'{path}: annotation id {ann["id"]} (image id {ann["image_id"]}) has bbox '
                    f'{bbox!r}; COCO boxes are 4 numbers [x, y, width, height].')
            if ann['image_id'] not in image_ids:
                orphans.append(ann['id'])
        if orphans:
            self.orphan_annotations = (orphans[0], len(orphans))


@DATASETS.register_module()
class ValidatedCocoDataset(CocoDataset):
    """``CocoDataset`` that checks the annotation file and says what is wrong and how to fix it.

    Args:
        check_image_size (bool): compare every image's json ``height``/``width`` with its file
            (one header read per image, once per process). Default True.
        *args, **kwargs: as ``CocoDataset``.
    """

    COCOAPI = CheckedCOCO

    def __init__(self, *args, check_image_size=True, **kwargs):
        self.check_image_size = check_image_size
        super().__init__(*args, **kwargs)

    def load_data_list(self):
        self._dropped = dict(mask=[], bbox_size=[], bbox_outside=[], area=[])
        self._size_errors = []
        self._orphans = None
        data_list = super().load_data_list()
        if self._size_errors:
            count = len(self._size_errors)
            raise ValueError(
                f'{self.ann_file}: {count} image(s) differ in size from their annotation '
                'entry; masks and boxes are decoded at the annotated size, so they would not '
                'line up with the images. First: ' + ' | '.join(self._size_errors[:3]))
        self._log_dropped()
        return data_list

    def _log_dropped(self):
        name = type(self).__name__
        orphans = self._orphans
        if orphans:
            print_log(f'{name}: ignored {orphans[1]} annotation(s) whose image_id is not among '
                      f'the images of {self.ann_file} (first: annotation id {orphans[0]}).',
                      logger='current', level=30)
        reasons = dict(
            mask='whose `segmentation` is empty or has zero area',
            bbox_size='whose `bbox` has a width or height < 1 (e.g. negative)',
            bbox_outside='whose `bbox` does not overlap the image',
            area='whose `area` is <= 0')
        for kind, text in reasons.items():
            dropped = self._dropped[kind]
            if dropped:
                ann_id, img_id, detail = dropped[0]
                print_log(
                    f'{name}: dropped {len(dropped)} annotation(s) {text} (first: annotation '
                    f'id {ann_id} in image id {img_id}{detail}). Fix or remove them in '
                    f'{self.ann_file} to silence this message.', logger='current', level=30)

    def _check_image(self, img_info):
        path = osp.join(self.data_prefix['img'], img_info['file_name'])
        where = f'image id {img_info["img_id"]} ({path}) of {self.ann_file}'
        try:
            width, height = image_size_on_disk(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f'{where}: the image file does not exist. Check `data_root` and '
                f'`data_prefix.img` in the dataset config (now {self.data_prefix["img"]!r}) '
                'and the file_name in the annotation file.') from None
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f'{where}: the file cannot be read as an image ({error}). Replace '
                             'it, or remove the image and its annotations from the '
                             'annotation file.') from None
        if (width, height) != (img_info['width'], img_info['height']):
            self._size_errors.append(
                f'{where}: the file is {width}x{height} (width x height), the annotation file '
                f'says {img_info["width"]}x{img_info["height"]}; set "width": {width}, '
                f'"height": {height} for this image (if the annotations were drawn on the '
                'annotated size, resize the image to it instead)')

    def _bbox_problem(self, ann, img_info):
        """mmdet's reasons to drop an annotation (CocoDataset.parse_data_info), or None."""
        x1, y1, w, h = ann['bbox']
        inter_w = max(0, min(x1 + w, img_info['width']) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img_info['height']) - max(y1, 0))
        if w < 1 or h < 1:
            return 'bbox_size'
        if inter_w * inter_h == 0:
            return 'bbox_outside'
        if ann['area'] <= 0:
            return 'area'
        return None

    def parse_data_info(self, raw_data_info):
        img_info = raw_data_info['raw_img_info']
        self._orphans = getattr(self.coco, 'orphan_annotations', None)
        if self.check_image_size and self.backend_args is None and \
                '://' not in self.data_prefix['img']:  # local files only
            self._check_image(img_info)
        height, width = img_info['height'], img_info['width']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):  # mmdet drops these on purpose
                kept.append(ann)
                continue
            if ann.get('category_id') not in self.cat2label:
                raise ValueError(
                    f'{self.ann_file}: annotation id {ann.get("id")} in image id '
                    f'{img_info["img_id"]} has category_id {ann.get("category_id")}, which is '
                    f'not among this dataset\'s classes {self.metainfo["classes"]} '
                    f'(category ids {sorted(self.cat2label)}). Set `metainfo=dict(classes=...)` '
                    'in the dataset config to the classes of the annotation file.')
            segmentation = ann.get('segmentation')
            if isinstance(segmentation, dict) and 'size' in segmentation and \
                    list(segmentation['size']) != [height, width]:
                raise ValueError(
                    f'{self.ann_file}: annotation id {ann["id"]} in image id '
                    f'{img_info["img_id"]} has an RLE mask of size {list(segmentation["size"])} '
                    f'(height, width) but the image is [{height}, {width}]. Encode the mask at '
                    'the image size (pycocotools.mask.encode of a height x width array) or '
                    'fix the image\'s "height"/"width".')
            problem = self._bbox_problem(ann, img_info)
            if problem is not None:
                detail = f': bbox {ann["bbox"]}, area {ann["area"]}'
                self._dropped[problem].append((ann['id'], img_info['img_id'], detail))
                continue
            if ann.get('iscrowd', 0) == 0 and \
                    segmentation_pixel_count(segmentation, height, width) == 0:
                self._dropped['mask'].append((ann.get('id'), img_info['img_id'], ''))
                continue
            kept.append(ann)
        raw_data_info = dict(raw_data_info, raw_ann_info=kept)
        return super().parse_data_info(raw_data_info)

    def filter_data(self):
        """As ``CocoDataset``, but an image whose annotations were all dropped as degenerate
        also counts as empty (mmdet looks at the raw file, where it still has annotations);
        an empty result is an error naming the file."""
        data_list = super().filter_data()
        if not self.test_mode and (self.filter_cfg or {}).get('filter_empty_gt', False):
            data_list = [info for info in data_list
                         if any(inst['ignore_flag'] == 0 for inst in info['instances'])]
        if not data_list:
            dropped = sum(len(v) for v in self._dropped.values())
            raise ValueError(
                f'{self.ann_file}: no image left for {"testing" if self.test_mode else "training"}'
                f': the file lists {len(self.data_list)} image(s), none with a usable instance '
                f'of the classes {self.metainfo["classes"]} (filter_cfg={self.filter_cfg}; '
                f'{dropped} annotation(s) dropped as unusable, logged above). Check that the '
                'annotation file belongs to these images and classes.')
        return data_list


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


