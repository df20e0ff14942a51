"""BoxCaseg's pseudo-mask step: box-annotated COCO json -> COCO json with pseudo masks.

    python tools/make_pseudo_masks.py CONFIG CKPT --ann boxes.json --img-dir IMAGES \
        --out pseudo.json

Builds the ``BoxCaseg`` model of CONFIG, loads CKPT weights-only (``insplug.checkpoints``),
and for every image of ``--ann`` segments all its non-crowd boxes at once through the config's
test pipeline (``BoxCaseg.predict``: full branch, per-box min-max normalisation, paste, 0.5).
Each image's masks are then merged as the release's ``proxy_mask/*_proxy_mask_generate.py``
does (a pixel claimed by several boxes goes to the smallest box) and written as RLE
``segmentation`` with the release's ``confidence`` (box IoU of the merged mask's tight box),
every other field of the input kept. Crowd annotations are kept as they are; boxes with zero
width or height (which no detector trains on) are left out and counted. The output trains a
standard Mask R-CNN (``configs/boxcaseg/mask_rcnn_*_pseudo_*.py``).
"""
import argparse
import json
import os.path as osp


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--ann', required=True, help='COCO json with boxes (masks ignored)')
    parser.add_argument('--img-dir', default=None,
                        help='image folder (default: the folder of --ann + "/images")')
    parser.add_argument('--out', required=True, help='output COCO json')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def pseudo_masks(model, pipeline, coco, img_dir, device='cpu'):
    """Pseudo masks of every image of ``coco`` (a loaded COCO dict); returns the new dict."""
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    from pycocotools import mask as mask_utils

    from insplug.core.boxcaseg.inference import merge_instance_masks

    by_image = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    out_anns, skipped = [], 0
    model.eval()
    for info in coco['images']:
        anns = by_image.get(info['id'], [])
        keep = [a for a in anns if not a.get('iscrowd', 0) and a['bbox'][2] > 0
                and a['bbox'][3] > 0]
        out_anns += [a for a in anns if a.get('iscrowd', 0)]
        skipped += sum(1 for a in anns if not a.get('iscrowd', 0)) - len(keep)
        if not keep:
            continue
        boxes = torch.tensor([a['bbox'] for a in keep], dtype=torch.float64)
        xyxy = torch.cat((boxes[:, :2], boxes[:, :2] + boxes[:, 2:]), dim=1)
        data = dict(img_path=osp.join(img_dir, info['file_name']), img_id=info['id'],
                    instances=[dict(bbox=b, bbox_label=0, ignore_flag=0)
                               for b in xyxy.tolist()])
        data = pipeline(data)
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([data]))[0].pred_instances
        masks = pred.masks.cpu()
        merged, conf = merge_instance_masks(masks, boxes)
        for ann, m, c in zip(keep, merged.numpy(), conf.tolist()):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            out_anns.append(dict(ann, segmentation=rle, confidence=c))
    out = dict(coco, annotations=sorted(out_anns, key=lambda a: a['id']))
    return out, skipped


def write_pseudo_masks(config, checkpoint, ann, out, img_dir=None, device='cpu'):
    """Pseudo masks of ``ann``'s boxes by the segmenter (``config``, ``checkpoint``) -> ``out``.

    Returns ``(number of annotations written, number of empty boxes left out)``.
    """
    import insplug  # noqa: F401  (registers insplug's scope)
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    from insplug._mmengine_configs import resolve_config_path
    from insplug.checkpoints.fit import state_dict_of
    from insplug.checkpoints.safe_load import safe_load
    from insplug.registry import MODELS

    cfg = config if isinstance(config, Config) else Config.fromfile(resolve_config_path(config))
    init_default_scope(cfg.get('default_scope', 'insplug'))
    model = MODELS.build(cfg.model)
    model.load_state_dict(state_dict_of(safe_load(checkpoint)), strict=True)
    model.to(device)
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    with open(ann) as f:
        coco = json.load(f)
    img_dir = img_dir or osp.join(osp.dirname(osp.abspath(ann)), 'images')
    result, skipped = pseudo_masks(model, pipeline, coco, img_dir, device)
    with open(out, 'w') as f:
        json.dump(result, f)
    return len(result['annotations']), skipped


def main(argv=None):
    args = parse_args(argv)
    written, skipped = write_pseudo_masks(args.config, args.checkpoint, args.ann, args.out,
                                          args.img_dir, args.device)
    print(f'{args.out}: {written} annotations with pseudo masks'
          f'{f", {skipped} empty boxes left out" if skipped else ""}')


if __name__ == '__main__':
    main()
