"""Measure configs: latency, throughput, training step, peak memory, size, FLOPs; and a suite.

    python tools/benchmark.py CONFIG [CHECKPOINT] [--compare CONFIG2 ...] [--shape H W]
        [--batch-size 1] [--num-iters 10] [--warmup 2] [--device cpu|cuda] [--out result.json]
        [--force-detections N] [--threads T]
    python tools/benchmark.py --suite [--sizes 512 800] [--out DIR] [--num-iters 3 --warmup 1]
        [--quick] [--ap-json AP.json] [--suite-spec SPEC.json] [--only NAME ...] [--jobs N]

CONFIG may be a file or a packaged config written ``mmdet::mask_rcnn/...py`` or
``insplug::...``, so insplug and stock mmdet models are measured by the same code on the same
synthetic input and printed side by side. The input is synthetic (fixed seed): images of
``--shape`` (default: the test pipeline's Resize scale) with a few random box/mask instances for
the training step, so no data set is needed.

Measured, each as the median of ``--num-iters`` timed iterations after ``--warmup``:
* inference: ``model.test_step`` (pre-processing, forward, post-processing), in eval mode;
* training step: ``model.train_step`` (forward, losses, backward, optimizer step).
Each config is measured in a fresh process, so figures do not carry over between configs. Peak
memory is torch's peak allocation on CUDA, and the process's peak resident set size on CPU
(inference is measured first, so its figure is the peak before any training step ran). FLOPs
are counted by ``torch.utils.flop_counter`` over one inference forward (2 FLOPs per
multiply-add; ops it does not know, such as RoIAlign or grid sampling, count as zero).

Untrained models often keep no box above the score threshold on a synthetic image, so their
mask head never runs: pass a checkpoint, or ``--force-detections N`` (score threshold 0, N
detections per image kept: every ``score_thr`` / ``filter_thr`` of the model's test_cfg set to
0, every ``max_per_img`` to N, ``nms_pre`` / ``top_k`` raised to N; the RPN's proposal count is
left alone). Bottom-up models (clustering) have no score threshold: their count is what the
clustering finds. The number of detections per image actually kept is reported.

The suite (``--suite``) runs every method's full config against its anchor, all with
``--force-detections 100`` (``SUITE``; ``--suite-spec`` a JSON list of the same groups), at
each of ``--sizes`` (an S x S input), one fresh process per config, ``--threads`` intra-op
threads (default 1), ``--jobs`` configs at a time (default 1; the suite also reports the CPU
time its measuring processes used, which the machine's load does not inflate). For each config
and size it reports latency (median and p90 at batch 1, per image), images/s at batch 1 and at
batch 4 (at ``--batch4-sizes``, default the smallest size), the training-step time (batch 1,
at ``--train-sizes``, default the smallest size), peak RSS of inference (batch 1) and of
training, parameters, FLOPs per
image, achieved GFLOP/s and its share of the conv peak (a large 3x3 conv2d timed in the same
run with the same thread count), and from one profiled inference (torch.profiler): the
convolution share of the self time, the post-processing share (time inside the heads'
``predict_by_feat`` and functions named ``*_inference`` / ``*postprocess*``, minus the
convolutions run there: decoding, NMS, thresholds, mask
assembly, paste) and the paste share (time inside any function whose name contains ``paste``
in insplug's and mmdet's modules, e.g. mmdet's ``_do_paste_mask``). Scaling rows for the
groups marked ``scaling`` (RefineMask, SparseInst): latency against the number of forced
detections (``--scaling-dets``, default 10 100 300, at the smallest size) and against the image
size (``--scaling-sizes``, default 256 512 800, at 100 detections). Output in ``--out``
(default work_dirs/benchmark/suite): ``suite.md`` (markdown tables), ``suite.json`` and
``suite.png`` (latency against demo-set mask AP, one point per method, when ``--ap-json`` gives
``{config name: AP}``; otherwise latency only, and the plot says so). Only ratios within one
run are comparable: absolute figures depend on the machine and its load. ``--quick``: 256 px,
one timed iteration, no warm-up, scaling at 10/100 detections and 128/256 px.
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


def _timed(fn, num_iters, warmup, device, clock=time.perf_counter):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(num_iters):
        _sync(device)
        start = clock()
        fn()
        _sync(device)
        times.append(clock() - start)
    return times


def _peak_memory_mib(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def force_detections(model_cfg, num):
    """Force ``num`` detections per image: score thresholds 0, ``max_per_img`` = num.

    Walks every ``test_cfg`` in the model config (the detector's and any sub-module's, e.g. a
    bottom-up head's): ``score_thr`` and ``filter_thr`` -> 0, ``max_per_img`` -> num,
    ``nms_pre`` and ``top_k`` -> at least num, ``class_threshold`` (PRM, CountSeg) and
    ``stop_thr`` (the recurrent models' per-step objectness threshold) -> 0. The two-stage ``rpn`` proposal settings are left alone.
    Modifies ``model_cfg`` in place and returns it.
    """
    def visit(test_cfg):
        for key, value in list(test_cfg.items()):
            if key == 'rpn':
                continue
            if key in ('score_thr', 'filter_thr', 'stop_thr', 'class_threshold'):
                test_cfg[key] = 0.0
            elif key == 'max_per_img':
                test_cfg[key] = num
            elif key in ('nms_pre', 'top_k') and isinstance(value, int):
                test_cfg[key] = max(value, num)
            elif isinstance(value, dict):
                visit(value)

    def walk(cfg):
        for key, value in cfg.items():
            if isinstance(value, dict):
                if key == 'test_cfg':
                    visit(value)
                else:
                    walk(value)
    walk(model_cfg)
    return model_cfg


def _load_cfg(config, cfg_options=None, force=None):
    import insplug  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(resolve_config(config))
    if force:
        force_detections(cfg.model, force)
    if cfg_options:  # after forcing: explicit options win
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def _build(cfg, device='cpu', seed=0):
    from mmengine.registry import MODELS
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).to(device)


def measure(config, checkpoint=None, shape=None, batch_size=1, num_iters=10, warmup=2,
            device='cpu', train=True, cfg_options=None, force=None, threads=None):
    """Benchmark one config; returns a dict of figures (see module docstring)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import load_checkpoint
    if threads:
        torch.set_num_threads(threads)
    cfg = _load_cfg(config, cfg_options, force)
    shape = tuple(shape) if shape else default_shape(cfg)
    model = _build(cfg, device)
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
            outputs = model.test_step(data)
        result['gflops'] = counter.get_total_flops() / 1e9 / batch_size
        result['dets_per_img'] = _dets_per_image(outputs)
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


def _dets_per_image(outputs):
    return float(np.mean([len(o.pred_instances) for o in outputs])) if outputs else 0.0


ROWS = [('params_m', 'parameters (M)', '{:.2f}'), ('gflops', 'GFLOPs / image', '{:.1f}'),
        ('latency_ms', 'inference latency (ms/img, median)', '{:.1f}'),
        ('latency_p90_ms', 'inference latency (ms/img, p90)', '{:.1f}'),
        ('images_per_s', 'throughput (img/s)', '{:.2f}'),
        ('dets_per_img', 'detections / image', '{:.0f}'),
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


# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------
# Each group: its methods against its anchor (stock mmdet) config; ``scaling`` adds latency
# against detections and image size. The bottom-up group has no anchor: its models are
# compared with each other.
SUITE = [
    dict(name='RefineMask vs Mask R-CNN', anchor='mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
         methods=['insplug::refinemask_r50.py'], scaling=True),
    dict(name='YOLACT vs mmdet YOLACT', anchor='mmdet::yolact/yolact_r50_1xb8-55e_coco.py',
         methods=['insplug::yolact/yolact_r50_coco.py']),
    # mmdet's SOLOv2 computes a mask for every (grid cell, class) above score_thr before its
    # nms_pre: with score_thr 0 that is 3872 x 80 masks (17 GB at 800 px). 0.745 keeps about
    # its nms_pre (500) candidates of the seeded random model at 256-800 px.
    dict(name='SparseInst vs SOLOv2', anchor='mmdet::solov2/solov2_r50_fpn_1x_coco.py',
         methods=['insplug::sparseinst/sparseinst_r50_giam.py'], scaling=True,
         cfg_options={'mmdet::solov2/solov2_r50_fpn_1x_coco.py': {
             'model.test_cfg.score_thr': 0.745}}),
    dict(name='one-stage vs CondInst',
         anchor='mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py',
         methods=['insplug::blendmask/blendmask_r50_1x.py',
                  'insplug::centermask/centermask_r50_3x.py',
                  'insplug::embedmask/embedmask_r50_1x.py',
                  'insplug::polarmask/polarmask_r50_1x.py']),
    dict(name='bottom-up', anchor=None,
         methods=['insplug::spatialembeddings/spatialembeddings_r50_fpn_coco.py',
                  'insplug::discriminative/discriminative_r50_fpn_kmeans_coco.py']),
]
_LABEL = 'insplug_bench::'


def config_name(config):
    return osp.splitext(osp.basename(config))[0]


def _reset_peak_rss():
    """Reset the process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _peak_rss_mib():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def conv_peak_gflops(threads=1, repeats=5):
    """GFLOP/s of a large 3x3 conv2d (256 -> 256 channels, 1 x 64 x 64), median of repeats."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    x = torch.randn(1, 256, 64, 64)
    w = torch.randn(256, 256, 3, 3)
    flops = 2 * 256 * 256 * 9 * 64 * 64
    try:
        with torch.no_grad():
            times = _timed(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats, 2,
                           'cpu')
    finally:
        torch.set_num_threads(saved)
    return flops / statistics.median(times) / 1e9


def _annotate(model):
    """Label the post-processing and paste calls for torch.profiler (in this process only).

    Every module's ``predict_by_feat`` (instance attribute wrapping the bound method), every
    function of the loaded insplug / mmdet modules whose name has a word ``inference`` or
    ``postprocess`` (post-processing, e.g. ``sparseinst_inference``) and every one whose name
    contains ``paste`` (paste) run inside a ``record_function`` range.
    """
    import functools
    import re
    import types
    from torch.profiler import record_function

    def wrap(fn, label):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)
        inner._insplug_bench = True
        return inner

    for module in model.modules():
        fn = getattr(module, 'predict_by_feat', None)
        if callable(fn) and not getattr(fn, '_insplug_bench', False):
            module.predict_by_feat = wrap(fn, _LABEL + 'postprocess')
    postprocess = re.compile(r'(^|_)(inference|postprocess)($|_)')
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(('insplug.', 'mmdet.')):
            continue
        for attr, value in list(vars(module).items()):
            if (not isinstance(value, types.FunctionType)
                    or getattr(value, '_insplug_bench', False)):
                continue
            if 'paste' in attr.lower():
                setattr(module, attr, wrap(value, _LABEL + 'paste'))
            elif postprocess.search(attr.lower()):  # e.g. sparseinst_inference
                setattr(module, attr, wrap(value, _LABEL + 'postprocess'))


def _union_length(intervals):
    total, end = 0.0, -float('inf')
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _inside(t, intervals):
    return any(a <= t < b for a, b in intervals)


def _is_conv(name):
    return name.startswith('aten::') and 'conv' in name


def profile_shares(fn):
    """Run ``fn`` once under torch.profiler: conv share of self time, post-proc and paste shares.

    Returns dict(conv_share, postproc_share, paste_share, num_ops): ``conv_share`` is the self
    CPU time of ``aten::*conv*`` ops over all self time; ``postproc_share`` the wall time inside
    ``predict_by_feat`` ranges (union, so nested calls count once) minus the self time of the
    convolutions run inside them, over the whole call; ``paste_share`` the wall time inside
    paste functions over the whole call; ``num_ops`` the number of aten ops run.
    """
    from torch.profiler import ProfilerActivity, profile, record_function
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function(_LABEL + 'inference'):
            fn()
    events = prof.events()
    spans = {}
    for e in events:
        if e.name.startswith(_LABEL):
            spans.setdefault(e.name[len(_LABEL):], []).append(
                (e.time_range.start, e.time_range.end))
    total = _union_length(spans['inference'])
    post = spans.get('postprocess', [])
    self_total = sum(e.self_cpu_time_total for e in events)
    conv = [e for e in events if _is_conv(e.name)]
    conv_in_post = sum(e.self_cpu_time_total for e in conv if _inside(e.time_range.start, post))
    return dict(
        conv_share=sum(e.self_cpu_time_total for e in conv) / max(self_total, 1e-9),
        postproc_share=max(_union_length(post) - conv_in_post, 0.0) / max(total, 1e-9),
        paste_share=_union_length(spans.get('paste', [])) / max(total, 1e-9),
        num_ops=sum(1 for e in events if e.name.startswith('aten::')))


def measure_suite_config(config, sizes, train_sizes=(), num_iters=3, warmup=1, threads=1,
                         dets=100, scaling_dets=(), scaling_sizes=(), cfg_options=None,
                         batch4_sizes=None):
    """One config of the suite, in this process: a row per size, plus the scaling rows.

    Returns dict(rows=[...], scaling=[...]); see the module docstring for the figures.
    """
    from mmengine.optim import build_optim_wrapper
    if threads:
        torch.set_num_threads(threads)
    cfg = _load_cfg(config, cfg_options, dets)
    num_classes = _num_classes(cfg)
    model = _build(cfg)
    _annotate(model)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    rows, latency_at = [], {}

    def infer(m, batch):
        return lambda: m.test_step(batch)

    model.eval()
    for size in sorted(sizes):
        shape = (size, size)
        data1 = synthetic_batch(1, shape, num_classes)
        row = dict(config=config, name=config_name(config), size=size, threads=threads,
                   params_m=params_m)
        exact_peak = _reset_peak_rss()
        with torch.no_grad():
            from torch.utils.flop_counter import FlopCounterMode
            counter = FlopCounterMode(display=False)
            with counter:
                outputs = model.test_step(data1)
            row['gflops'] = counter.get_total_flops() / 1e9
            row['dets_per_img'] = _dets_per_image(outputs)
            # the FLOP-counting pass is the first warm-up iteration
            times = _timed(infer(model, data1), num_iters, max(0, warmup - 1), 'cpu')
            row.update(profile_shares(infer(model, data1)))
        row['peak_rss_infer_mib'] = _peak_rss_mib()
        row['peak_rss_exact'] = exact_peak
        row['latency_ms'] = statistics.median(times) * 1e3
        row['latency_p90_ms'] = float(np.percentile(times, 90)) * 1e3
        row['images_per_s_b1'] = 1 / statistics.median(times)
        if batch4_sizes is None or size in batch4_sizes:
            data4 = synthetic_batch(4, shape, num_classes)
            with torch.no_grad():
                times4 = _timed(infer(model, data4), max(1, num_iters // 3), 0, 'cpu')
            row['images_per_s_b4'] = 4 / statistics.median(times4)
        row['gflops_per_s'] = row['gflops'] / statistics.median(times)
        latency_at[(size, dets)] = row['latency_ms'], row['dets_per_img']
        rows.append(row)

    scaling = []
    if scaling_dets or scaling_sizes:
        state = model.state_dict()
        base = min(sizes)
        points = list(dict.fromkeys(  # no point twice
            [(base, n) for n in scaling_dets] + [(s, dets) for s in scaling_sizes]))
        models = {dets: model}
        for size, n in points:
            point = dict(config=config, name=config_name(config), size=size, dets=n)
            if n not in models:
                other = _build(_load_cfg(config, cfg_options, n))
                other.load_state_dict(state)
                models[n] = other.eval()
            data1 = synthetic_batch(1, (size, size), num_classes)
            with torch.no_grad():
                if (size, n) in latency_at:  # measured above
                    point['latency_ms'], point['dets_per_img'] = latency_at[(size, n)]
                else:
                    point['dets_per_img'] = _dets_per_image(models[n].test_step(data1))
                    # the detection-counting pass above is the first warm-up iteration
                    point['latency_ms'] = statistics.median(_timed(
                        infer(models[n], data1), num_iters, max(0, warmup - 1), 'cpu')) * 1e3
                point['num_ops'] = profile_shares(infer(models[n], data1))['num_ops']
            scaling.append(point)
        del models

    if train_sizes:
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        for row in rows:
            if row['size'] not in train_sizes:
                continue
            data1 = synthetic_batch(1, (row['size'], row['size']), num_classes)
            _reset_peak_rss()
            times = _timed(lambda: model.train_step(data1, optim_wrapper), num_iters, warmup,
                           'cpu')
            row['train_step_ms'] = statistics.median(times) * 1e3
            row['peak_rss_train_mib'] = _peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return dict(rows=rows, scaling=scaling, cpu_s=usage.ru_utime + usage.ru_stime)


def _in_fresh_process(fn, *args, **kwargs):
    spawn = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def run_suite(groups, sizes, train_sizes, num_iters, warmup, threads, dets, scaling_dets,
              scaling_sizes, cfg_options=None, log=print, jobs=1, batch4_sizes=None,
              partial_path=None):
    """Measure every config of ``groups`` (each in a fresh process); returns the suite dict.

    ``jobs`` configs are measured at the same time (each in its own process, ``threads``
    threads each); the conv peak is measured alone, before and after. ``partial_path``: a
    JSON file rewritten with the results so far after each config.
    """
    from concurrent.futures import as_completed
    started = time.time()
    peak_before = conv_peak_gflops(threads)
    tasks = []
    for group in groups:
        configs = ([group['anchor']] if group.get('anchor') else []) + list(group['methods'])
        for config in configs:
            # scaling rows for the group's methods (not its anchor)
            scaling = bool(group.get('scaling')) and config != group.get('anchor')
            tasks.append((group, config, scaling))
    results = [None] * len(tasks)
    # each config in its own fresh process (peak RSS and caches do not carry over, and a
    # config that crashes or is killed, e.g. out of memory, fails alone); ``jobs`` at a time
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {}
        for i, (group, config, scaling) in enumerate(tasks):
            options = dict(cfg_options or {}, **group.get('cfg_options', {}).get(config, {}))
            futures[pool.submit(
                _in_fresh_process, _timed_config, measure_suite_config, config, sizes,
                train_sizes, num_iters, warmup, threads, dets, scaling_dets if scaling else (),
                scaling_sizes if scaling else (), options or None, batch4_sizes)] = i
            log(f'[suite] queued {group["name"]}: {config}')
        for future in as_completed(futures):
            i = futures[future]
            group, config, _ = tasks[i]
            try:
                out = future.result()
            except Exception as error:  # a failing config is reported, the suite goes on
                log(f'[suite] FAILED {config}: {type(error).__name__}: {error}')
                out = dict(rows=[], scaling=[], error=f'{type(error).__name__}: {error}')
            out.update(group=group['name'], config=config, name=config_name(config),
                       anchor=config == group.get('anchor'))
            results[i] = out
            log(f'[suite] done {config} ({out.get("seconds", 0):.0f} s wall, '
                f'{out.get("cpu_s", 0):.0f} s CPU)')
            if partial_path:
                with open(partial_path, 'w') as f:
                    json.dump(dict(results=[r for r in results if r is not None],
                                   conv_peak_before=peak_before), f, indent=2)
    peak_after = conv_peak_gflops(threads)
    peak = max(peak_before, peak_after)
    for result in results:
        for row in result['rows']:
            row['peak_share'] = row['gflops_per_s'] / peak
    import platform
    return dict(results=results, conv_peak_gflops=[peak_before, peak_after],
                sizes=list(sizes), train_sizes=list(train_sizes), num_iters=num_iters,
                batch4_sizes=list(sizes if batch4_sizes is None else batch4_sizes),
                warmup=warmup, threads=threads, jobs=jobs, forced_detections=dets,
                torch=torch.__version__, machine=dict(
                    processor=platform.processor() or platform.machine(),
                    cpus=os.cpu_count(), load_avg=list(os.getloadavg())),
                seconds=time.time() - started,
                cpu_s=sum(r.get('cpu_s', 0) for r in results))


def _timed_config(fn, *args):
    start = time.time()
    out = fn(*args)
    out['seconds'] = time.time() - start
    return out


def _fmt(value, fmt):
    return '-' if value is None else fmt.format(value)


def suite_markdown(suite):
    peak = max(suite['conv_peak_gflops'])
    lines = [f"Forced detections: {suite['forced_detections']} per image (score threshold 0); "
             f"{suite['threads']} thread(s), {suite.get('jobs', 1)} config(s) at a time; "
             f"median of {suite['num_iters']} after "
             f"{suite['warmup']} warm-up; conv peak {suite['conv_peak_gflops'][0]:.1f} / "
             f"{suite['conv_peak_gflops'][1]:.1f} GFLOP/s (before / after); machine: "
             f"{suite['machine']['processor']}, {suite['machine']['cpus']} CPUs, load average "
             f"{', '.join(f'{x:.2f}' for x in suite['machine']['load_avg'])} at the end; "
             f"torch {suite['torch']}. Only ratios within one run are comparable.", '']
    cols = ['group', 'config', 'vs anchor', 'latency ms (median)', 'p90 ms', 'img/s b1',
            'img/s b4', 'train step ms', 'peak RSS infer MiB', 'peak RSS train MiB',
            'params M', 'GFLOPs', 'GFLOP/s', '% of conv peak', 'conv % of self time',
            'post-proc %', 'paste %', 'dets/img']
    for size in suite['sizes']:
        lines += [f'### {size} x {size}', '', '| ' + ' | '.join(cols) + ' |',
                  '|' + '---|' * len(cols)]
        anchors = {r['group']: r for r in suite['results'] if r['anchor']}
        for result in suite['results']:
            row = next((r for r in result['rows'] if r['size'] == size), None)
            if row is None:
                lines.append(f"| {result['group']} | {result['name']} | failed: "
                             f"{result.get('error', '-')} |" + ' |' * (len(cols) - 3))
                continue
            anchor = anchors.get(result['group'])
            anchor_row = anchor and next((r for r in anchor['rows'] if r['size'] == size), None)
            ratio = ('anchor' if result['anchor'] else
                     f"{row['latency_ms'] / anchor_row['latency_ms']:.2f}x" if anchor_row
                     else '-')
            lines.append('| ' + ' | '.join([
                result['group'], result['name'], ratio, _fmt(row['latency_ms'], '{:.0f}'),
                _fmt(row['latency_p90_ms'], '{:.0f}'), _fmt(row['images_per_s_b1'], '{:.2f}'),
                _fmt(row.get('images_per_s_b4'), '{:.2f}'),
                _fmt(row.get('train_step_ms'), '{:.0f}'),
                _fmt(row['peak_rss_infer_mib'], '{:.0f}'),
                _fmt(row.get('peak_rss_train_mib'), '{:.0f}'), _fmt(row['params_m'], '{:.1f}'),
                _fmt(row['gflops'], '{:.1f}'), _fmt(row['gflops_per_s'], '{:.1f}'),
                _fmt(100 * row['gflops_per_s'] / peak, '{:.0f}'),
                _fmt(100 * row['conv_share'], '{:.0f}'),
                _fmt(100 * row['postproc_share'], '{:.1f}'),
                _fmt(100 * row['paste_share'], '{:.1f}'), _fmt(row['dets_per_img'], '{:.0f}')])
                + ' |')
        lines.append('')
    scaling = [r for r in suite['results'] if r['scaling']]
    if scaling:
        lines += ['### Scaling (latency ms, aten ops per inference)', '',
                  '| config | size | detections | latency ms | aten ops | dets/img |',
                  '|---|---|---|---|---|---|']
        for result in scaling:
            for p in result['scaling']:
                lines.append(f"| {result['name']} | {p['size']} | {p['dets']} | "
                             f"{p['latency_ms']:.0f} | {p['num_ops']} | "
                             f"{p['dets_per_img']:.0f} |")
        lines.append('')
    return '\n'.join(lines)


def suite_plot(suite, path, ap=None):
    """Latency (first size) against demo-set mask AP, one point per method; bars without AP."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    size = suite['sizes'][0]
    points = [(r['name'], next((x['latency_ms'] for x in r['rows'] if x['size'] == size), None))
              for r in suite['results']]
    points = [(n, t) for n, t in points if t is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    with_ap = [(n, t, ap[n]) for n, t in points if ap and n in ap]
    if with_ap:
        for name, latency, value in with_ap:
            ax.scatter(latency, value)
            ax.annotate(name, (latency, value), fontsize=7)
        ax.set_xlabel(f'latency at {size} x {size} (ms / image)')
        ax.set_ylabel('mask AP (demo set)')
        missing = [n for n, _ in points if n not in ap]
        ax.set_title('latency vs mask AP' + (f' (no AP for: {", ".join(missing)})'
                                             if missing else ''), fontsize=8)
    else:
        ax.barh([n for n, _ in points], [t for _, t in points])
        ax.set_xlabel(f'latency at {size} x {size} (ms / image)')
        ax.set_title('latency only: no mask AP given (--ap-json)', fontsize=9)
        ax.tick_params(axis='y', labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return bool(with_ap)


def _suite_main(args):
    if args.quick:
        sizes = args.sizes or [256]
        num_iters, warmup = args.num_iters or 1, args.warmup if args.warmup is not None else 0
        scaling_dets = args.scaling_dets or [10, 100]
        scaling_sizes = args.scaling_sizes or [128, 256]
    else:
        sizes = args.sizes or [512, 800]
        num_iters = args.num_iters or 3
        warmup = args.warmup if args.warmup is not None else 1
        scaling_dets = args.scaling_dets or [10, 100, 300]
        scaling_sizes = args.scaling_sizes or [256, 512, 800]
    train_sizes = args.train_sizes if args.train_sizes is not None else [min(sizes)]
    batch4_sizes = args.batch4_sizes if args.batch4_sizes is not None else [min(sizes)]
    groups = SUITE
    if args.suite_spec:
        with open(args.suite_spec) as f:
            groups = json.load(f)
    if args.only:
        groups = [g for g in groups if any(o.lower() in g['name'].lower() for o in args.only)]
    ap = None
    if args.ap_json:
        with open(args.ap_json) as f:
            ap = {config_name(k): float(v) for k, v in json.load(f).items()}
    out = args.out or osp.join('work_dirs', 'benchmark', 'suite')
    os.makedirs(out, exist_ok=True)
    suite = run_suite(groups, sizes, train_sizes, num_iters, warmup, args.threads or 1,
                      args.force_detections or 100, scaling_dets, scaling_sizes,
                      args.cfg_options and dict(args.cfg_options), jobs=args.jobs,
                      batch4_sizes=batch4_sizes,
                      partial_path=osp.join(out, 'suite.partial.json'))
    table = suite_markdown(suite)
    suite['plot_has_ap'] = suite_plot(suite, osp.join(out, 'suite.png'), ap)
    if not suite['plot_has_ap']:
        table += '\nPlot: latency only (no demo-set mask AP given with --ap-json).\n'
    with open(osp.join(out, 'suite.md'), 'w') as f:
        f.write(table)
    with open(osp.join(out, 'suite.json'), 'w') as f:
        json.dump(dict(suite, argv=sys.argv[1:]), f, indent=2)
    if osp.exists(osp.join(out, 'suite.partial.json')):
        os.remove(osp.join(out, 'suite.partial.json'))  # complete results are in suite.json
    print(table)
    print(f"written: {out}/suite.md, suite.json, suite.png ({suite['seconds']:.0f} s wall, "
          f"{suite['cpu_s']:.0f} s CPU in the measuring processes)")
    return suite


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Benchmark detector configs (or the whole suite: --suite)')
    parser.add_argument('config', nargs='?')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--compare', nargs='+', default=[],
                        help='more configs measured the same way (e.g. mmdet::mask_rcnn/...)')
    parser.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'))
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-iters', type=int, help='timed iterations (default 10; suite 3)')
    parser.add_argument('--warmup', type=int, help='warm-up iterations (default 2; suite 1)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--no-train', action='store_true', help='skip the training step')
    parser.add_argument('--force-detections', type=int, metavar='N',
                        help='score thresholds 0, N detections per image (suite: 100)')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default: torch\'s; suite: 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='key=value overrides applied to every measured config')
    parser.add_argument('--out', help='JSON file (default: work_dirs/benchmark/NAME.json); '
                                      'with --suite a folder (default work_dirs/benchmark/suite)')
    suite = parser.add_argument_group('suite')
    suite.add_argument('--suite', action='store_true', help='every method against its anchor')
    suite.add_argument('--sizes', nargs='+', type=int, help='S x S inputs (default 512 800)')
    suite.add_argument('--train-sizes', nargs='*', type=int,
                       help='sizes with a training step (default: the smallest)')
    suite.add_argument('--batch4-sizes', nargs='*', type=int,
                       help='sizes with a batch-4 throughput (default: the smallest)')
    suite.add_argument('--scaling-dets', nargs='+', type=int)
    suite.add_argument('--scaling-sizes', nargs='+', type=int)
    suite.add_argument('--quick', action='store_true',
                       help='256 px, 1 timed iteration, no warm-up, small scaling')
    suite.add_argument('--ap-json', help='{config name: demo-set mask AP} for the plot')
    suite.add_argument('--suite-spec', help='JSON list of groups replacing the built-in suite: '
                                            '[{"name", "anchor", "methods", "scaling", '
                                            '"cfg_options": {config: {key: value}}}]')
    suite.add_argument('--only', nargs='+', help='groups whose name contains one of these')
    suite.add_argument('--jobs', type=int, default=1,
                       help='configs measured at the same time, one process each (default 1; '
                            'e.g. 2 on 2 cores with --threads 1)')
    args = parser.parse_args(argv)
    if args.suite:
        return _suite_main(args)
    if args.config is None:
        parser.error('a config is needed (or --suite)')

    results = []
    for i, config in enumerate([args.config] + args.compare):
        # a fresh process per config: peak memory (ru_maxrss) cannot be reset in a process
        results.append(_in_fresh_process(
            measure, config, args.checkpoint if i == 0 else None, args.shape,
            args.batch_size, args.num_iters or 10,
            args.warmup if args.warmup is not None else 2, args.device, not args.no_train,
            args.cfg_options and dict(args.cfg_options), args.force_detections, args.threads))
    print(format_table(results))
    out = args.out or osp.join('work_dirs', 'benchmark', config_name(args.config) + '.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(results=results, torch=torch.__version__, argv=sys.argv[1:]), f, indent=2)
    print(f'written: {out}')
    return results


if __name__ == '__main__':
    main()
