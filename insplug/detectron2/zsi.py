"""Zero-shot splits in detectron2: ``register_class_split`` registers the seen, unseen or all
classes of a registered COCO-format dataset under a new name (the detectron2 twin of the mmdet
``ClassSplitCocoDataset``; the split lists and their order are :mod:`insplug.core.zsi.splits`).
The ZSI model itself (background-aware RPN, semantic heads) is :mod:`insplug.detectron2.zsi_model`.
"""
import copy

from detectron2.data import DatasetCatalog, MetadataCatalog

from insplug.core.zsi.splits import split_categories

__all__ = ['class_split_records', 'register_class_split']


def class_split_records(records, keep_ids, id_map, drop_ids=()):
    """Dataset dicts restricted to some classes, relabelled contiguously.

    Args:
        records: detectron2 dataset dicts (``category_id`` contiguous, as ``load_coco_json``).
        keep_ids: contiguous ids to keep, in their new order.
        id_map: unused placeholder for symmetry (kept for callers passing the source map).
        drop_ids: contiguous ids whose presence drops the whole image (training on seen
            classes: images with unseen objects left out).

    Returns:
        new list of dicts.
    """
    new_id = {k: i for i, k in enumerate(keep_ids)}
    drop = set(drop_ids)
    out = []
    for r in records:
        anns = r.get('annotations', [])
        if any(a['category_id'] in drop and not a.get('iscrowd', 0) for a in anns):
            continue
        r = copy.deepcopy(r)
        r['annotations'] = [dict(a, category_id=new_id[a['category_id']]) for a in anns
                            if a['category_id'] in new_id]
        out.append(r)
    return out


def register_class_split(name, source, split='48_17', subset='seen', unseen_names=None,
                         drop_images_with_unseen=None):
    """Register ``name``: the ``subset`` ('seen', 'unseen', 'all') classes of the registered
    COCO-format dataset ``source`` under ``split`` ('48_17', '65_15') or a custom
    ``unseen_names`` list. Training on 'seen' leaves out images with an unseen object (default).
    Classes keep category-id order (the evaluator maps them back to the source json's ids);
    ``COCOEvaluator`` evaluates the view on its own classes (it converts the view to a COCO json
    in its output folder)."""
    meta = MetadataCatalog.get(source)
    classes = list(meta.thing_classes)
    id_map = dict(meta.thing_dataset_id_to_contiguous_id)
    cats = [dict(id=i, name=classes[c]) for i, c in id_map.items()]
    if unseen_names is not None:
        names = {n.lower() for n in unseen_names}
        seen = [c for c in sorted(cats, key=lambda c: c['id']) if c['name'].lower() not in names]
        unseen = [c for c in sorted(cats, key=lambda c: c['id']) if c['name'].lower() in names]
    else:
        seen, unseen = split_categories(cats, split)
    keep = dict(seen=seen, unseen=unseen,
                all=sorted(seen + unseen, key=lambda c: c['id']))[subset]
    if drop_images_with_unseen is None:
        drop_images_with_unseen = subset == 'seen'
    keep_contig = [id_map[c['id']] for c in keep]
    drop = [id_map[c['id']] for c in unseen] if drop_images_with_unseen else []
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: class_split_records(
            DatasetCatalog.get(source), keep_contig, id_map, drop))
        # no 'json_file': the source json holds every class, so COCOEvaluator would score the
        # view against all of them; without it, it writes the view's own COCO json (original
        # category ids through thing_dataset_id_to_contiguous_id)
        m = {k: v for k, v in meta.as_dict().items() if k not in ('name', 'json_file')}
        m['thing_classes'] = [c['name'] for c in keep]
        m['thing_dataset_id_to_contiguous_id'] = {c['id']: i for i, c in enumerate(keep)}
        MetadataCatalog.get(name).set(**m)
    return name
