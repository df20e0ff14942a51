"""Time insplug's registered NMS family on random candidates.

    python tools/benchmark_nms.py [--sizes 1000 10000] [--mask-size 64] [--repeats 5]
        [--warmup 1] [--num-classes 80] [--threads 1] [--device cpu] [--out nms.json]

Measured: the wall time of one call of each registered NMS (``TASK_UTILS`` types ``BoxNMS``,
``FastNMS`` on boxes and on masks, ``MatrixNMS`` with the linear and the Gaussian kernel,
``MaskIoUNMS``) on N random candidates, as the median of ``--repeats`` calls after ``--warmup``
untimed calls. Only the NMS call is timed: the candidates are built beforehand. Candidates are
boxes jittered around N/20 random object boxes in a 512 x 512 image (so that suppression
happens), with uniform scores and random labels; the mask-based methods get each box drawn as a
filled rectangle on a ``--mask-size`` square grid (the box scaled to the grid), as bool masks.
Every method runs with all N candidates (no ``top_k`` / ``nms_pre`` cut-off), except Fast NMS,
which keeps its YOLACT default of 200 candidates per label. A method that runs out of memory, or
whose first call takes longer than ``--max-seconds``, is reported as skipped for that N.
CPU runs use ``--threads`` intra-op threads (default 1: stable figures on a shared machine).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone too
from insplug.mmdet.postprocess.nms import build_nms  # noqa: E402  (registers the NMS types)

METHODS = [('box NMS', dict(type='BoxNMS', iou_thr=0.5)),
           ('Fast NMS (boxes)', dict(type='FastNMS', iou_thr=0.5)),
           ('Fast NMS (masks)', dict(type='FastNMS', iou_thr=0.5, use_masks=True)),
           ('Matrix NMS (linear)', dict(type='MatrixNMS', kernel='linear')),
           ('Matrix NMS (Gaussian)', dict(type='MatrixNMS', kernel='gaussian', sigma=2.0)),
           ('mask-IoU NMS', dict(type='MaskIoUNMS', iou_thr=0.5))]


def candidates(n, num_classes, mask_size, device, image=512, seed=0):
    """(scores (n,), labels (n,), boxes (n, 4), masks (n, S, S) bool), fixed seed."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 20)
    centre = torch.rand(objects, 2, generator=g) * image
    size = 16 + torch.rand(objects, 2, generator=g) * (image / 3)
    pick = torch.randint(0, objects, (n,), generator=g)
    jitter = 1 + 0.15 * torch.randn(n, 4, generator=g)
    c, s = centre[pick], size[pick]
    boxes = torch.cat([c - s / 2 * jitter[:, :2], c + s / 2 * jitter[:, 2:]], 1)
    boxes = boxes.clamp(0, image)
    grid = (torch.arange(mask_size) + 0.5) * image / mask_size
    inside_x = (grid[None] >= boxes[:, 0:1]) & (grid[None] < boxes[:, 2:3])  # (n, S)
    inside_y = (grid[None] >= boxes[:, 1:2]) & (grid[None] < boxes[:, 3:4])
    masks = inside_y[:, :, None] & inside_x[:, None, :]
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return [t.to(device) for t in (scores, labels, boxes, masks)]


def time_method(nms, data, repeats, warmup, max_seconds, device):
    scores, labels, boxes, masks = data
    masks = masks if nms.uses_masks else None

    def call():
        start = time.perf_counter()
        nms(scores, labels, boxes=boxes, masks=masks)
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    first = call()
    if first > max_seconds:
        return None, f'first call took {first:.1f} s > --max-seconds'
    for _ in range(max(0, warmup - 1)):
        call()
    return statistics.median(call() for _ in range(repeats)), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000])
    parser.add_argument('--mask-size', type=int, default=64, help='mask grid side (S x S)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--num-classes', type=int, default=80)
    parser.add_argument('--max-seconds', type=float, default=120.0)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', default='work_dirs/benchmark/nms.json')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    results = []
    for n in args.sizes:
        data = candidates(n, args.num_classes, args.mask_size, args.device)
        for name, cfg in METHODS:
            try:
                seconds, note = time_method(build_nms(cfg), data, args.repeats, args.warmup,
                                            args.max_seconds, args.device)
            except (MemoryError, RuntimeError) as e:  # torch raises RuntimeError on OOM
                seconds, note = None, f'{type(e).__name__}: {str(e).splitlines()[0][:80]}'
            results.append(dict(method=name, config=cfg, n=n, median_ms=(
                None if seconds is None else seconds * 1e3), note=note))
            print(f'{name:22s} N={n:6d}  ' + (f'{seconds * 1e3:10.2f} ms' if note is None
                                              else f'skipped: {note}'), flush=True)

    cols = [str(n) for n in args.sizes]
    print(f'\nmedian ms per call (masks {args.mask_size}x{args.mask_size}, '
          f'{args.num_classes} labels, {args.device}, {args.threads} thread(s), '
          f'torch {torch.__version__})')
    print(f"{'method':22s} | " + ' | '.join(f'N={c:>8s}' for c in cols))
    print('-' * 23 + '+' + '-+-'.join('-' * 10 for _ in cols) + '-')
    for name, _ in METHODS:
        row = {r['n']: r['median_ms'] for r in results if r['method'] == name}
        print(f'{name:22s} | ' + ' | '.join(
            f'{row[n]:10.2f}' if row[n] is not None else f"{'skipped':>10s}"
            for n in args.sizes))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(results=results, args=vars(args), torch=torch.__version__), f, indent=2)
    print(f'written: {args.out}')
    return results


if __name__ == '__main__':
    main()
