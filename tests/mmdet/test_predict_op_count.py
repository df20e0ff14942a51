"""No per-instance Python loop in any predict path: the number of recorded torch ops of a
whole ``model.predict`` (torch.profiler events) must not grow with the number of detections.

Every demo config (small widths, seeded random weights) predicts one 256 x 256 image with
10, 100 and 300 forced detections (score thresholds 0, NMS IoU 1, ``max_per_img`` = the count;
boxes that detectron2-style post-processing drops after clipping make some counts smaller).
A loop over instances costs at least one op per instance (in practice several); the bound,
100 ops + 0.1 op per extra detection, is far below that. It is applied from the first count
with at least ``PASTE_GROUPS`` (4) detections: the shared paste samples ``min(4, N)`` size
groups, a bounded step below 4 detections. Not wall time.

RefineMask runs its mask head on RoIs in chunks of ``TEST_ROIS_PER_CHUNK`` (100, a memory
bound, N / 100 iterations): the test raises the chunk to 300 so the comparison is between
equal chunk counts; ``test_refinemask_chunks_cost_per_chunk_not_per_roi`` checks the chunked
path separately.
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

from insplug.core.postprocess.paste import PASTE_GROUPS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NAMES = ['refinemask_r18_shapes', 'centermask_r18_shapes', 'blendmask_r18_shapes',
         'yolact_protonet_r18_shapes', 'embedmask_r18_shapes', 'polarmask_r18_shapes',
         'sparseinst_r18_shapes', 'd2det_r18_shapes']
COUNTS = (10, 100, 300)


def force(model_cfg, num):
    """Score thresholds 0, NMS IoU 1, ``max_per_img`` = num in every test_cfg (not the RPN)."""
    def visit(cfg):
        for key, value in list(cfg.items()):
            if key == 'rpn':
                continue
            if key in ('score_thr', 'filter_thr'):
                cfg[key] = 0.0
            elif key == 'max_per_img':
                cfg[key] = num
            elif key in ('nms_pre', 'top_k') and isinstance(value, int):
                cfg[key] = max(value, num)
            elif key in ('iou_threshold', 'iou_thr'):
                cfg[key] = 1.0
            elif isinstance(value, dict):
                visit(value)

    def walk(cfg):
        for key, value in cfg.items():
            if isinstance(value, dict):
                (visit if key == 'test_cfg' else walk)(value)
    walk(model_cfg)
    if 'decoder' in model_cfg and 'num_masks' in model_cfg.decoder:  # SparseInst: N queries
        model_cfg.decoder.num_masks = max(model_cfg.decoder.num_masks, num)


def count_ops(name, num, size=(256, 256)):
    """(detections, recorded op events) of one ``model.predict``."""
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from torch.profiler import ProfilerActivity, profile
    import insplug  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'demo', name + '.py'))
    init_default_scope(cfg.get('default_scope', 'insplug'))
    force(cfg.model, num)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    h, w = size
    rng = np.random.RandomState(0)
    data = model.data_preprocessor(dict(
        inputs=[torch.from_numpy(rng.randint(0, 256, (3, h, w), dtype=np.uint8))],
        data_samples=[DetDataSample(metainfo=dict(img_id=0, img_shape=(h, w),
                                                  ori_shape=(h, w), scale_factor=(1.0, 1.0)))]),
        False)
    with torch.no_grad():
        model.predict(data['inputs'], data['data_samples'])  # warm-up (lazy init)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = model.predict(data['inputs'], data['data_samples'])
    return len(out[0].pred_instances), len(prof.events())


@pytest.mark.parametrize('name', NAMES)
def test_predict_op_count_does_not_grow_with_detections(name, monkeypatch):
    if name.startswith('refinemask'):
        import insplug.mmdet.refinemask.roi_head as roi_head
        monkeypatch.setattr(roi_head, 'TEST_ROIS_PER_CHUNK', max(COUNTS))
    runs = [count_ops(name, num) for num in COUNTS]
    # compare from the first run with at least PASTE_GROUPS detections (below it the paste
    # runs min(N, 4) groups: a bounded step, not a per-instance cost)
    lo = [r for r in runs if r[0] >= PASTE_GROUPS]
    assert lo, runs
    (d_lo, ops_lo), (d_hi, ops_hi) = lo[0], runs[-1]
    # the forcing works: many more detections at the top count
    assert d_hi >= max(3 * d_lo, 60), runs
    # far below one op per extra detection (a per-instance loop costs several)
    for d, ops in lo[1:]:
        assert abs(ops - ops_lo) <= 100 + 0.1 * (d - d_lo), runs


def test_refinemask_chunks_cost_per_chunk_not_per_roi():
    """At the default chunk (100 RoIs), 300 RoIs cost 3 chunks: the growth from 100 to 300
    detections is at most two chunks' worth (measured between 1 and 2 chunks at 10/100)."""
    (d10, o10), (d100, o100), (d300, o300) = [count_ops('refinemask_r18_shapes', n)
                                              for n in COUNTS]
    assert (d10, d100, d300) == (10, 100, 300)
    assert abs(o100 - o10) <= 100
    per_chunk = o300 - o100  # two more chunks
    assert 0 < per_chunk <= 2 * 1000 and per_chunk < (d300 - d100) * 10, (o10, o100, o300)
