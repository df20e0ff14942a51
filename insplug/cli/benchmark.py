"""Measure a config: inference latency, throughput, training step time, peak memory, size, FLOPs.

    python tools/benchmark.py CONFIG [CHECKPOINT] [--compare CONFIG2 ...] [--shape H W]
        [--batch-size 1] [--num-iters 10] [--warmup 2] [--device cpu|cuda] [--out result.json]

CONFIG may be a file or a packaged mmdet config written ``mmdet::mask_rcnn/...py``, so insplug
and stock mmdet models are measured by the same code on the same synthetic input and printed
side by side. The input is synthetic (fixed seed): images of ``--shape`` (default: the test
pipeline's Resize scale) with a few random box/mask instances for the training step, so no data
set is needed.

Measured, each as the median of ``--num-iters`` timed iterations after ``--warmup``:
* inference: ``model.test_step`` (pre-processing, forward, post-processing), in eval mode;
* training step: ``model.train_step`` (forward, losses, backward, optimizer step).
Each config is measured in a fresh process, so figures do not carry over between configs. Peak
memory is torch's peak allocation on CUDA, and the process's peak resident set size on CPU
(inference is measured first, so its figure is the peak before any training step ran). FLOPs
are counted by ``torch.utils.flop_counter`` over one inference forward (2 FLOPs per
multiply-add; ops it does not know, such as RoIAlign or grid sampling, count as zero).

Untrained two-stage models often keep no box above the score threshold on a synthetic image,
so their mask head never runs: pass a checkpoint, or e.g.
``--cfg-options model.test_cfg.rcnn.score_thr=0`` to time the mask head on a fixed box count.
"""
import argparse
import importlib.util
import multiprocessing
import json
import os
import os.path as osp
import resource
import statistics
import sys
import time

import numpy as np
import torch
from concurrent.futures import ProcessPoolExecutor


def resolve_config(path):
    """``mmdet::x.py`` -> the config file inside the installed mmdet package."""
    if '::' in path:
        package, rel = path.split('::', 1)
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise SystemExit(f'error: package {package!r} of config {path!r} is not installed')
        path = osp.join(osp.dirname(spec.origin), '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise SystemExit(f'error: config file {path!r} not found')
    return path


def default_shape(cfg):
    """(H, W) from the test pipeline's Resize scale, else 800 x 1333."""
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    for step in dataset.get('pipeline', []):
        if step.get('type') == 'Resize' and 'scale' in step:
            w, h = step['scale']
            return int(h), int(w)
    return 800, 1333


def synthetic_batch(batch_size, shape, num_classes, seed=0):
    """A batch in the format a DetDataPreprocessor takes, with random instances (boxes, masks)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = np.random.RandomState(seed)
    h, w = shape
    inputs, samples = [], []
    for i in range(batch_size):
        inputs.append(torch.from_numpy(rng.randint(0, 256, (3, h, w), dtype=np.uint8)))
        n = 5
        x0 = rng.uniform(0, w * 0.6, n)
        y0 = rng.uniform(0, h * 0.6, n)
        bw = rng.uniform(w * 0.1, w * 0.4, n)
        bh = rng.uniform(h * 0.1, h * 0.4, n)
        boxes = np.stack([x0, y0, x0 + bw, y0 + bh], 1).astype(np.float32)
        masks = np.zeros((n, h, w), dtype=np.uint8)
        for j, (a, b, c, d) in enumerate(boxes.astype(int)):
            masks[j, b:d, a:c] = 1
        gt = InstanceData(bboxes=torch.from_numpy(boxes),
                          labels=torch.from_numpy(rng.randint(0, num_classes, n)),
                          masks=BitmapMasks(masks, h, w))
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            scale_factor=(1.0, 1.0), batch_input_shape=(h, w), flip=False, flip_direction=None))
        sample.gt_instances = gt
        sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                                labels=torch.zeros(0, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _num_classes(cfg):
    classes = cfg.get('train_dataloader', {}).get('dataset', {}).get('metainfo', {}).get(
        'classes')
    if classes:
        return len(classes)
    from insplug.registry import DATASETS
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    cls = DATASETS.get(dataset.type)
    return len(cls.METAINFO['classes']) if cls is not None else 80


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _timed(fn, num_iters, warmup, device):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(num_iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _peak_memory_mib(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(config, checkpoint=None, shape=None, batch_size=1, num_iters=10, warmup=2,
            device='cpu', train=True, cfg_options=None):
    """Benchmark one config; returns a dict of figures (see module docstring)."""
    import insplug  # noqa: F401
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    path = resolve_config(config)
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    shape = tuple(shape) if shape else default_shape(cfg)
    model = MODELS.build(cfg.model).to(device)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location=device)
    data = synthetic_batch(batch_size, shape, _num_classes(cfg))
    result = dict(config=config, device=device, input_shape=list(shape), batch_size=batch_size,
                  params_m=sum(p.numel() for p in model.parameters()) / 1e6)

    model.eval()
    with torch.no_grad():
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            model.test_step(data)
        result['gflops'] = counter.get_total_flops() / 1e9 / batch_size
        times = _timed(lambda: model.test_step(data), num_iters, warmup, device)
    result['latency_ms'] = statistics.median(times) * 1e3 / batch_size
    result['latency_p90_ms'] = float(np.percentile(times, 90)) * 1e3 / batch_size
    result['images_per_s'] = batch_size / statistics.median(times)
    result['peak_mem_infer_mib'] = _peak_memory_mib(device)

    if train:
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        times = _timed(lambda: model.train_step(data, optim_wrapper), num_iters, warmup, device)
        result['train_step_ms'] = statistics.median(times) * 1e3
        result['peak_mem_train_mib'] = _peak_memory_mib(device)
    return result


ROWS = [('params_m', 'parameters (M)', '{:.2f}'), ('gflops', 'GFLOPs / image', '{:.1f}'),
        ('latency_ms', 'inference latency (ms/img, median)', '{:.1f}'),
        ('latency_p90_ms', 'inference latency (ms/img, p90)', '{:.1f}'),
        ('images_per_s', 'throughput (img/s)', '{:.2f}'),
        ('train_step_ms', 'training step (ms/batch, median)', '{:.1f}'),
        ('peak_mem_infer_mib', 'peak memory, inference (MiB)', '{:.0f}'),
        ('peak_mem_train_mib', 'peak memory, training (MiB)', '{:.0f}')]


def format_table(results):
    names = [osp.splitext(osp.basename(r['config']))[0] for r in results]
    header = ['metric'] + names
    lines = [[label] + [fmt.format(r[key]) if key in r else '-' for r in results]
             for key, label, fmt in ROWS]
    lines.insert(0, ['input (HxW), batch, device',
                     *[f"{r['input_shape'][0]}x{r['input_shape'][1]}, {r['batch_size']}, "
                       f"{r['device']}" for r in results]])
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]
    out = [' | '.join(c.ljust(w) for c, w in zip(header, widths)),
           '-+-'.join('-' * w for w in widths)]
    out += [' | '.join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
    return '\n'.join(out)


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Benchmark a detector config')
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--compare', nargs='+', default=[],
                        help='more configs measured the same way (e.g. mmdet::mask_rcnn/...)')
    parser.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--no-train', action='store_true', help='skip the training step')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='key=value overrides applied to every measured config')
    parser.add_argument('--out', help='JSON file (default: work_dirs/benchmark/NAME.json)')
    args = parser.parse_args(argv)

    results = []
    spawn = multiprocessing.get_context('spawn')
    for i, config in enumerate([args.config] + args.compare):
        # a fresh process per config: peak memory (ru_maxrss) cannot be reset in a process
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results.append(pool.submit(
                measure, config, args.checkpoint if i == 0 else None, args.shape,
                args.batch_size, args.num_iters, args.warmup, args.device,
                not args.no_train, args.cfg_options and dict(args.cfg_options)).result())
    print(format_table(results))
    out = args.out or osp.join('work_dirs', 'benchmark',
                               osp.splitext(osp.basename(args.config))[0] + '.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(results=results, torch=torch.__version__, argv=sys.argv[1:]), f, indent=2)
    print(f'written: {out}')
    return results


if __name__ == '__main__':
    main()
