"""tools/benchmark.py and tools/benchmark_nms.py run and write what they promise (no timing is
asserted: speed is measured by the tools, not by the tests)."""
import json
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
KEYS = {'params_m', 'gflops', 'latency_ms', 'latency_p90_ms', 'images_per_s', 'train_step_ms',
        'peak_mem_infer_mib', 'peak_mem_train_mib'}


def test_benchmark_side_by_side_with_a_stock_mmdet_config(tmp_path):
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', 'configs/demo/mask_rcnn_r18_shapes.py',
         '--compare', 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '--shape', '64', '96',
         '--num-iters', '1', '--warmup', '0', '--out', str(out)],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'mask_rcnn_r18_shapes' in result.stdout and 'mask-rcnn_r50_fpn_1x_coco' in result.stdout
    rows = json.loads(out.read_text())['results']
    assert [r['input_shape'] for r in rows] == [[64, 96], [64, 96]]
    for row in rows:
        assert KEYS <= set(row) and row['latency_ms'] > 0 and row['gflops'] > 0
    assert abs(rows[1]['params_m'] - 44.4) < 0.1  # mmdet's R50 Mask R-CNN, 80 classes
    assert rows[0]['params_m'] < rows[1]['params_m']


def test_nms_benchmark_table(tmp_path):
    out = tmp_path / 'nms.json'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark_nms.py', '--sizes', '50', '200', '--mask-size', '16',
         '--repeats', '1', '--warmup', '0', '--out', str(out)],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ('box NMS', 'Fast NMS (boxes)', 'Matrix NMS (Gaussian)', 'mask-IoU NMS'):
        assert name in result.stdout
    assert out.exists() and json.loads(out.read_text())
