"""Salient images for BoxCaseg: single-object crops of a COCO-format instance set.

The release trains on DUT-TR-Single (DUTS-TR images holding one salient object, with its pixel
mask). Here the salient set is cut from an instance set with masks (the bundled shapes set):
each instance whose box, grown by ``margin`` of its side on every side, contains no pixel of any
other instance becomes one image (the window) with one annotation (its mask in the window).
Windows are clipped to the image; instances smaller than ``min_size`` px are skipped.
``salient_masks_to_coco`` turns an image + PNG-mask salient set (DUT-TR-Single) into a COCO json.
Command line: ``python -m insplug.core.boxcaseg.salient --ann A.json --img-dir D --out OUT``.

The written set is a COCO json with the source's categories, so any COCO dataset class reads it.
"""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def _decode(ann, h, w):
    segm = ann['segmentation']
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif isinstance(segm['counts'], list):
        rle = mask_utils.frPyObjects(segm, h, w)
    else:
        rle = segm
    return mask_utils.decode(rle).astype(bool)


def single_object_windows(masks, boxes_xywh, height, width, margin=0.2, min_size=8):
    """Windows around instances that hold no pixel of another instance.

    Args:
        masks: (N, H, W) bool instance masks of one image.
        boxes_xywh: (N, 4) their boxes.
        height, width: H, W.
        margin: growth of each side, as a fraction of the box side.
        min_size: smallest accepted box side (px).

    Returns:
        list of (index, (x0, y0, x1, y1)) integer windows (exclusive ends).
    """
    out = []
    n = len(masks)
    union = masks.sum(axis=0) if n else np.zeros((height, width), dtype=np.int64)
    for i in range(n):
        x, y, w, h = [float(v) for v in boxes_xywh[i]]
        if min(w, h) < min_size:
            continue
        x0 = int(max(0, np.floor(x - margin * w)))
        y0 = int(max(0, np.floor(y - margin * h)))
        x1 = int(min(width, np.ceil(x + w + margin * w)))
        y1 = int(min(height, np.ceil(y + h + margin * h)))
        others = union[y0:y1, x0:x1] - masks[i, y0:y1, x0:x1]
        if others.any():
            continue
        out.append((i, (x0, y0, x1, y1)))
    return out


def make_salient_crops(ann_file, img_dir, out_dir, margin=0.2, min_size=8, max_images=None):
    """Write the single-object salient crops of a COCO set.

    Args:
        ann_file: COCO instance json (with masks).
        img_dir: its image folder.
        out_dir: output root; writes ``out_dir/images/*.png`` and ``out_dir/annotations.json``.
        margin, min_size: see :func:`single_object_windows`.
        max_images: optional cap on the number of crops.

    Returns:
        path of the written annotation json.
    """
    with open(ann_file) as f:
        coco = json.load(f)
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    by_image = {}
    for ann in coco['annotations']:
        if not ann.get('iscrowd', 0):
            by_image.setdefault(ann['image_id'], []).append(ann)
    images, anns = [], []
    for info in sorted(coco['images'], key=lambda im: im['id']):
        group = by_image.get(info['id'], [])
        if not group:
            continue
        h, w = info['height'], info['width']
        masks = np.stack([_decode(a, h, w) for a in group])
        boxes = np.array([a['bbox'] for a in group], dtype=np.float64)
        windows = single_object_windows(masks, boxes, h, w, margin, min_size)
        if not windows:
            continue
        img = np.asarray(Image.open(osp.join(img_dir, info['file_name'])).convert('RGB'))
        for i, (x0, y0, x1, y1) in windows:
            new_id = len(images) + 1
            name = f'{new_id:06d}.png'
            Image.fromarray(img[y0:y1, x0:x1]).save(osp.join(out_dir, 'images', name))
            crop = np.asfortranarray(masks[i, y0:y1, x0:x1].astype(np.uint8))
            rle = mask_utils.encode(crop)
            rle['counts'] = rle['counts'].decode('ascii')
            ys, xs = np.nonzero(crop)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1)]
            images.append(dict(id=new_id, file_name=name, height=y1 - y0, width=x1 - x0))
            anns.append(dict(id=new_id, image_id=new_id, category_id=group[i]['category_id'],
                             bbox=bbox, area=float(crop.sum()), segmentation=rle, iscrowd=0))
            if max_images is not None and len(images) >= max_images:
                break
        if max_images is not None and len(images) >= max_images:
            break
    out = dict(images=images, annotations=anns, categories=coco['categories'])
    path = osp.join(out_dir, 'annotations.json')
    with open(path, 'w') as f:
        json.dump(out, f)
    return path


def salient_masks_to_coco(img_dir, mask_dir, out_json, category='salient'):
    """COCO json of a salient-object set stored as images + PNG masks (DUT-TR-Single layout:
    ``NAME.jpg`` in ``img_dir``, ``NAME.png`` in ``mask_dir``, foreground > 127).

    Returns:
        path of the written json (file names relative to ``img_dir``).
    """
    images, anns = [], []
    for name in sorted(os.listdir(img_dir)):
        stem = osp.splitext(name)[0]
        mask_path = osp.join(mask_dir, stem + '.png')
        if not osp.exists(mask_path):
            continue
        m = np.asarray(Image.open(mask_path).convert('L')) > 127
        if not m.any():
            continue
        new_id = len(images) + 1
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle['counts'] = rle['counts'].decode('ascii')
        ys, xs = np.nonzero(m)
        images.append(dict(id=new_id, file_name=name, height=m.shape[0], width=m.shape[1]))
        anns.append(dict(id=new_id, image_id=new_id, category_id=1, iscrowd=0,
                         bbox=[float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                               float(ys.max() - ys.min() + 1)],
                         area=float(m.sum()), segmentation=rle))
    with open(out_json, 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name=category)]), f)
    return out_json


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        description='BoxCaseg salient images: single-object crops of a COCO instance set '
                    '(--ann), or a COCO json of an image + PNG mask folder pair (--masks).')
    parser.add_argument('--ann', help='COCO instance json to cut single-object crops from')
    parser.add_argument('--masks', help='folder of PNG saliency masks (with --img-dir)')
    parser.add_argument('--img-dir', required=True)
    parser.add_argument('--out', required=True,
                        help='output folder (--ann) or json path (--masks)')
    parser.add_argument('--margin', type=float, default=0.2)
    parser.add_argument('--min-size', type=int, default=8)
    args = parser.parse_args(argv)
    if (args.ann is None) == (args.masks is None):
        parser.error('give exactly one of --ann, --masks')
    if args.ann:
        path = make_salient_crops(args.ann, args.img_dir, args.out, args.margin, args.min_size)
    else:
        path = salient_masks_to_coco(args.img_dir, args.masks, args.out)
    print(path)


if __name__ == '__main__':
    main()
