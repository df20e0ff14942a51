"""COCO-format datasets for detectron2: checked registration, the bundled shapes set.

:func:`register_coco_instances` registers a COCO-format instance-segmentation set in
detectron2's ``DatasetCatalog`` / ``MetadataCatalog`` so that ``build_detection_*_loader`` and
``COCOEvaluator`` (bbox + segm) work on it, like detectron2's function of the same name, plus:

* the files are checked at registration (a missing file names the path and, for the shapes
  set, the command that generates it);
* ``thing_classes`` and the category-id map are set at once (so an evaluator can be built
  before the data is loaded) and may be checked against the classes a model expects;
* annotations without a usable ``segmentation`` (missing or empty) are dropped at loading with
  one warning naming their count and the first annotation id, instead of failing later inside
  detectron2's mapper; images left without instances stay (evaluation keeps them, training
  drops them with ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``);
* registering the same name again with the same files is a no-op; with other files, an error.

:func:`register_shapes` registers the bundled demo set written by
``python -m insplug.datasets.shapes --out data/shapes`` as ``shapes_train`` / ``shapes_val``.
"""
import json
import logging
import os.path as osp

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from insplug.datasets.shapes import CLASSES as SHAPES_CLASSES

logger = logging.getLogger(__name__)

SHAPES_COMMAND = 'python -m insplug.datasets.shapes --out {root}'


def read_categories(json_file):
    """Class names and the COCO-id -> contiguous-id map, the way detectron2's loader orders them.

    Returns:
        (thing_classes: list of str sorted by category id, id_map: dict category id -> index).
    """
    with open(json_file) as f:
        categories = json.load(f).get('categories') or []
    if not categories:
        raise ValueError(f'{json_file} has no "categories": a COCO instance file needs a list '
                         'of {"id": int, "name": str} entries')
    categories = sorted(categories, key=lambda c: c['id'])
    return [c['name'] for c in categories], {c['id']: i for i, c in enumerate(categories)}


def drop_unusable_masks(records, dataset_name):
    """Remove annotations whose ``segmentation`` is missing or empty, in place (one warning).

    Args:
        records: detectron2 dataset dicts (from ``load_coco_json``).

    Returns:
        the same list.
    """
    dropped = []
    for record in records:
        kept = []
        for ann in record.get('annotations', []):
            if ann.get('iscrowd', 0) == 0 and not ann.get('segmentation'):
                dropped.append(ann.get('id', '?'))
                continue
            kept.append(ann)
        record['annotations'] = kept
    if dropped:
        logger.warning(f'{dataset_name}: dropped {len(dropped)} annotation(s) without a usable '
                       f'`segmentation` (first: annotation id {dropped[0]}); fix or remove them '
                       'in the annotation file to silence this warning.')
    return records


def register_coco_instances(name, json_file, image_root, classes=None, **metadata):
    """Register a COCO-format instance-segmentation set under ``name`` (see module docstring).

    Args:
        name: dataset name for ``DATASETS.TRAIN`` / ``DATASETS.TEST`` and ``COCOEvaluator``.
        json_file: COCO instances annotation file.
        image_root: folder the ``file_name`` entries are relative to.
        classes: optional expected class names (in category-id order); a mismatch raises.
        **metadata: extra ``MetadataCatalog`` fields.

    Returns:
        ``name``.
    """
    json_file, image_root = osp.abspath(json_file), osp.abspath(image_root)
    if not osp.isfile(json_file):
        raise FileNotFoundError(f'dataset {name!r}: annotation file {json_file} does not exist')
    if not osp.isdir(image_root):
        raise FileNotFoundError(f'dataset {name!r}: image folder {image_root} does not exist')
    thing_classes, id_map = read_categories(json_file)
    if classes is not None and list(classes) != thing_classes:
        raise ValueError(f'dataset {name!r}: {json_file} has classes {thing_classes} (by '
                         f'category id) but {list(classes)} were expected')
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if (getattr(meta, 'json_file', None), getattr(meta, 'image_root', None)) == \
                (json_file, image_root):
            return name
        raise ValueError(f'dataset {name!r} is already registered with other files '
                         f'({getattr(meta, "json_file", "?")}); choose another name')

    def load():
        return drop_unusable_masks(
            load_coco_json(json_file, image_root, name, extra_annotation_keys=['id']), name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root,
                                  evaluator_type='coco', thing_classes=thing_classes,
                                  thing_dataset_id_to_contiguous_id=id_map, **metadata)
    return name


def register_shapes(root='data/shapes', prefix='shapes', splits=('train', 'val')):
    """Register the bundled shapes set under ``root`` as ``{prefix}_{split}``.

    Returns:
        list of the registered names.
    """
    names = []
    for split in splits:
        ann = osp.join(root, split, 'annotations.json')
        if not osp.isfile(ann):
            raise FileNotFoundError(f'the shapes set is missing ({ann}); generate it with: '
                                    + SHAPES_COMMAND.format(root=root))
        names.append(register_coco_instances(f'{prefix}_{split}', ann,
                                              osp.join(root, split, 'images'),
                                              classes=SHAPES_CLASSES))
    return names


def check_num_classes(dataset_names, num_classes, field):
    """Raise unless every dataset in ``dataset_names`` has ``num_classes`` thing classes.

    Args:
        dataset_names: registered names (e.g. ``cfg.DATASETS.TRAIN``).
        num_classes: the model's class count.
        field: the config key holding ``num_classes`` (named in the error).
    """
    for name in dataset_names:
        classes = MetadataCatalog.get(name).get('thing_classes')
        if classes is None:  # registered without eager metadata: load it once
            DatasetCatalog.get(name)
            classes = MetadataCatalog.get(name).get('thing_classes')
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f'{field} = {num_classes} but dataset {name!r} has '
                             f'{len(classes)} classes {list(classes)}: set {field} to '
                             f'{len(classes)}')
