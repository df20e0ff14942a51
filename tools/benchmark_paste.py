"""Time the mask paste: insplug's shared paste against the official pasters, same masks and boxes.

    python tools/benchmark_paste.py [--num 100] [--mask-sizes 28 112] [--image 512]
        [--repeats 7] [--threads 1] [--out paste.json]

N random masks (uniform probabilities, M x M) are pasted into an H x H image at random boxes of
8-108 px (the issue's setting), thresholded at 0.5. Compared, each as the median process CPU
time of ``--repeats`` calls after one warm-up call, and checked for differing pixels against
insplug's result:

* ``insplug``: :func:`insplug.core.postprocess.paste.paste_masks_in_boxes` (batched, each box
  sampled on its own support window);
* ``mmdet 2.x per box``: the official RefineMask release's CPU paste, mmdet 2.x
  ``FCNMaskHead.get_seg_masks`` on CPU: ``_do_paste_mask(skip_empty=True)`` once per box (the
  function is unchanged in mmdet 3);
* ``mmdet whole image``: ``_do_paste_mask(skip_empty=False)`` on all boxes at once (what
  BlendMask's head used before);
* ``detectron2``: ``detectron2.layers.mask_ops.paste_masks_in_image`` (per box on CPU), when
  detectron2 is installed.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too
from insplug.core.postprocess.paste import paste_masks_in_boxes  # noqa: E402


def mmdet_per_box(masks, boxes, height, width, threshold=0.5):
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    out = torch.zeros(len(masks), height, width, dtype=torch.bool)
    for i in range(len(masks)):  # the release's loop: one chunk per box on CPU
        pasted, spatial = _do_paste_mask(masks[i:i + 1, None], boxes[i:i + 1], height, width,
                                         skip_empty=True)
        out[(slice(i, i + 1),) + spatial] = pasted >= threshold
    return out


def mmdet_whole_image(masks, boxes, height, width, threshold=0.5):
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    return _do_paste_mask(masks[:, None], boxes, height, width, skip_empty=False)[0] >= threshold


def detectron2_paste(masks, boxes, height, width, threshold=0.5):
    from detectron2.layers.mask_ops import paste_masks_in_image
    return paste_masks_in_image(masks, boxes, (height, width), threshold)


def pasters():
    found = {'insplug': lambda m, b, h, w: paste_masks_in_boxes(m, b, h, w, 0.5,
                                                               dtype=torch.float32)}
    try:
        import mmdet  # noqa: F401
        found['mmdet 2.x per box (RefineMask release)'] = mmdet_per_box
        found['mmdet whole image'] = mmdet_whole_image
    except ImportError:
        pass
    try:
        import detectron2  # noqa: F401
        found['detectron2 (CPU, per box)'] = detectron2_paste
    except ImportError:
        pass
    return found


def cpu_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def run(num=100, mask_sizes=(28, 112), image=512, repeats=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    side = 8 + torch.rand(num, 2, generator=g) * 100
    xy = torch.rand(num, 2, generator=g) * (image - side)
    boxes = torch.cat([xy, xy + side], 1)
    rows = []
    for m in mask_sizes:
        masks = torch.rand(num, m, m, generator=g)
        reference = None
        for name, fn in pasters().items():
            result = fn(masks, boxes, image, image)
            if reference is None:
                reference = result
            rows.append(dict(mask_size=m, paster=name,
                             cpu_ms=cpu_ms(lambda: fn(masks, boxes, image, image), repeats),
                             differing_pixels=int((result != reference).sum())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num', type=int, default=100)
    parser.add_argument('--mask-sizes', type=int, nargs='+', default=[28, 112])
    parser.add_argument('--image', type=int, default=512)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', help='also write the rows as JSON')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args.num, args.mask_sizes, args.image, args.repeats)
    print(f'{args.num} masks into {args.image} x {args.image}, {args.threads} thread(s), '
          'process CPU time, median')
    print('| M | paster | CPU ms | x insplug | differing px |\n|---|---|---|---|---|')
    for row in rows:
        ours = next(r['cpu_ms'] for r in rows
                    if r['mask_size'] == row['mask_size'] and r['paster'] == 'insplug')
        print(f"| {row['mask_size']} | {row['paster']} | {row['cpu_ms']:.1f} | "
              f"{row['cpu_ms'] / ours:.2f} | {row['differing_pixels']} |")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
