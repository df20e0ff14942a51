"""Deterministic synthetic instance-segmentation set in COCO format ("shapes").

Every image is drawn from its own seed, so a split is reproducible bit for bit. Images hold
several shapes of five classes, sizes from small (~10 px) to large (~half the image), drawn one
over another so later shapes occlude earlier ones (visible masks are not boxes: rings have holes,
stars and triangles are concave or slanted, occluded shapes lose pieces), on textured
backgrounds (smooth noise, stripes and gradients).

Layout written by :func:`generate`::

    OUT/train/images/000000.png ...   OUT/train/annotations.json
    OUT/val/images/000000.png ...     OUT/val/annotations.json

Command line::

    python -m insplug.datasets.shapes --out data/shapes --num-train 300 --num-val 60
"""
import argparse
import json
import math
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'rectangle', 'triangle', 'star', 'ring')
MIN_VISIBLE_AREA = 16  # pixels; smaller remnants of occluded shapes are dropped


def _smooth_noise(rng, size, cells):
    """Bilinearly upsampled random grid: (size, size) float in [0, 1]."""
    grid = rng.rand(cells + 1, cells + 1).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _background(rng, size):
    """Textured background: (size, size, 3) float in [0, 255]."""
    base = rng.uniform(40, 215, size=3)
    tint = rng.uniform(-60, 60, size=3)
    kind = rng.randint(3)
    if kind == 0:
        pattern = _smooth_noise(rng, size, rng.randint(3, 12))
    elif kind == 1:
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        pattern = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle))
                                     * 2 * math.pi / period)
    else:
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        pattern = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / size
        pattern = (pattern - pattern.min()) / max(float(np.ptp(pattern)), 1e-6)
    img = base[None, None] + tint[None, None] * pattern[..., None]
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255)


def _polygon(center, radius, n, rot):
    return [(center[0] + radius * math.cos(rot + 2 * math.pi * i / n),
             center[1] + radius * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]


def _draw_shape(rng, size, label):
    """Full (unoccluded) binary mask of one shape: (size, size) bool."""
    canvas = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    # log-uniform radius so small and large objects are both common
    radius = float(np.exp(rng.uniform(math.log(6), math.log(size * 0.3))))
    cx, cy = rng.uniform(radius * 0.5, size - radius * 0.5, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    name = CLASSES[label]
    if name == 'circle':
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
    elif name == 'rectangle':
        aspect = rng.uniform(0.4, 1.0)
        w, h = radius, radius * aspect
        c, s = math.cos(rot), math.sin(rot)
        pts = [(cx + dx * c - dy * s, cy + dx * s + dy * c)
               for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))]
        draw.polygon(pts, fill=1)
    elif name == 'triangle':
        draw.polygon(_polygon((cx, cy), radius, 3, rot), fill=1)
    elif name == 'star':
        outer = _polygon((cx, cy), radius, 5, rot)
        inner = _polygon((cx, cy), radius * 0.45, 5, rot + math.pi / 5)
        draw.polygon([p for pair in zip(outer, inner) for p in pair], fill=1)
    elif name == 'ring':
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
        r2 = radius * rng.uniform(0.35, 0.6)
        draw.ellipse([cx - r2, cy - r2, cx + r2, cy + r2], fill=0)
    return np.asarray(canvas, dtype=bool)


def make_image(seed, size=256, max_instances=6, empty_prob=0.03):
    """Draw one image and its instances.

    Returns:
        image: (size, size, 3) uint8 RGB.
        instances: list of dicts with ``label`` (int) and ``mask`` ((size, size) bool, visible).
    """
    rng = np.random.RandomState(seed)
    image = _background(rng, size)
    n = 0 if rng.rand() < empty_prob else rng.randint(1, max_instances + 1)
    drawn = []
    for _ in range(n):
        label = rng.randint(len(CLASSES))
        full = _draw_shape(rng, size, label)
        color = rng.uniform(0, 255, size=3)
        shade = _smooth_noise(rng, size, 4)[..., None] * rng.uniform(10, 50)
        image = np.where(full[..., None], np.clip(color + shade, 0, 255), image)
        drawn.append((label, full))
    instances = []
    covered = np.zeros((size, size), dtype=bool)
    for label, full in reversed(drawn):  # last drawn is on top
        visible = full & ~covered
        covered |= full
        if visible.sum() >= MIN_VISIBLE_AREA:
            instances.append(dict(label=label, mask=visible))
    instances.reverse()
    return image.astype(np.uint8), instances


def _encode(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def generate_split(out_dir, num_images, seed, size=256):
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json``; returns the json path."""
    img_dir = osp.join(out_dir, 'images')
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image, instances = make_image(seed * 1_000_003 + i, size=size)
        name = f'{i:06d}.png'
        Image.fromarray(image).save(osp.join(img_dir, name))
        images.append(dict(id=i + 1, file_name=name, height=size, width=size))
        for inst in instances:
            rle = _encode(inst['mask'])
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1, category_id=inst['label'] + 1,
                segmentation=rle, area=float(mask_utils.area(rle)),
                bbox=[float(v) for v in mask_utils.toBbox(rle)], iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    ann_file = osp.join(out_dir, 'annotations.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    validate(ann_file, img_dir)
    return ann_file


def validate(ann_file, img_dir):
    """Check a written split with pycocotools: masks decode, areas and boxes agree, files exist."""
    from pycocotools.coco import COCO
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann_file)
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = coco.annToMask(ann)
        if int(m.sum()) != int(ann['area']) or ann['area'] < MIN_VISIBLE_AREA:
            raise ValueError(f'annotation {ann["id"]}: area {ann["area"]} != mask {m.sum()}')
        ys, xs = np.nonzero(m)
        x0, y0 = xs.min(), ys.min()
        if abs(ann['bbox'][0] - x0) > 0.5 or abs(ann['bbox'][1] - y0) > 0.5:
            raise ValueError(f'annotation {ann["id"]}: bbox does not match its mask')
    for img in coco.loadImgs(coco.getImgIds()):
        if not osp.exists(osp.join(img_dir, img['file_name'])):
            raise FileNotFoundError(osp.join(img_dir, img['file_name']))
    return coco


def generate(out, num_train=300, num_val=60, size=256, seed=0):
    """Write the train and val splits under ``out`` (skips a split that is already complete)."""
    paths = {}
    for split, num, split_seed in (('train', num_train, seed), ('val', num_val, seed + 1)):
        split_dir = osp.join(out, split)
        ann_file = osp.join(split_dir, 'annotations.json')
        stamp = osp.join(split_dir, f'.complete-{num}-{size}-{split_seed}')
        if not osp.exists(stamp):
            generate_split(split_dir, num, split_seed, size)
            open(stamp, 'w').close()
        paths[split] = ann_file
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/shapes')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate(args.out, args.num_train, args.num_val, args.size, args.seed)
    for split, path in paths.items():
        with open(path) as f:
            d = json.load(f)
        print(f'{split}: {len(d["images"])} images, {len(d["annotations"])} instances -> {path}')


if __name__ == '__main__':
    main()
