"""tools/benchmark.py --suite runs end to end (quick mode, two small demo configs) and writes
the markdown table, the JSON and the PNG plot with every promised figure. No timing is
asserted: speed is measured by the tool, not by the tests."""
import json
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ROW_KEYS = {'latency_ms', 'latency_p90_ms', 'images_per_s_b1', 'images_per_s_b4',
            'train_step_ms', 'peak_rss_infer_mib', 'peak_rss_train_mib', 'params_m', 'gflops',
            'gflops_per_s', 'peak_share', 'conv_share', 'postproc_share', 'paste_share',
            'dets_per_img'}


def test_suite_quick_on_two_demo_configs(tmp_path):
    spec = tmp_path / 'spec.json'
    spec.write_text(json.dumps([dict(
        name='demo RefineMask vs Mask R-CNN', anchor='configs/demo/mask_rcnn_r18_shapes.py',
        methods=['configs/demo/refinemask_r18_shapes.py'], scaling=True)]))
    ap = tmp_path / 'ap.json'
    ap.write_text(json.dumps({'mask_rcnn_r18_shapes': 8.0, 'refinemask_r18_shapes.py': 8.3}))
    out = tmp_path / 'suite'
    result = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--suite', '--quick', '--suite-spec', str(spec),
         '--sizes', '64', '--scaling-sizes', '32', '64', '--scaling-dets', '5', '10',
         '--force-detections', '10', '--ap-json', str(ap), '--out', str(out)],
        cwd=REPO, capture_output=True, text=True, env=dict(__import__('os').environ,
                                                           OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    suite = json.loads((out / 'suite.json').read_text())
    assert suite['threads'] == 1 and suite['num_iters'] == 1 and suite['warmup'] == 0
    assert len(suite['conv_peak_gflops']) == 2 and min(suite['conv_peak_gflops']) > 0
    by_name = {r['name']: r for r in suite['results']}
    assert set(by_name) == {'mask_rcnn_r18_shapes', 'refinemask_r18_shapes'}
    assert by_name['mask_rcnn_r18_shapes']['anchor']
    for name, res in by_name.items():
        assert 'error' not in res, res.get('error')
        (row,) = res['rows']
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row['size'] == 64 and row['dets_per_img'] == 10  # forced detections
        assert row['latency_ms'] > 0 and row['gflops'] > 0 and row['params_m'] > 0
        assert 0 < row['conv_share'] < 1 and 0 <= row['postproc_share'] < 1
        assert 0 < row['paste_share'] < 1, name  # mmdet's and insplug's paste are profiled
        assert abs(row['peak_share'] - row['gflops_per_s'] / max(suite['conv_peak_gflops'])) \
            < 1e-9
    # scaling rows: the method only (not the anchor), detections at the smallest size and sizes
    assert by_name['mask_rcnn_r18_shapes']['scaling'] == []
    scaling = by_name['refinemask_r18_shapes']['scaling']
    points = {(p['size'], p['dets']): p for p in scaling}
    assert len(points) == len(scaling)  # no point twice
    assert set(points) == {(64, 5), (64, 10), (32, 10)}
    assert [points[(64, n)]['dets_per_img'] for n in (5, 10)] == [5, 10]
    assert all(p['num_ops'] > 0 and p['latency_ms'] > 0 for p in points.values())
    table = (out / 'suite.md').read_text()
    assert '### 64 x 64' in table and '| refinemask_r18_shapes |' in table
    assert 'x |' in table and 'anchor' in table  # ratio to the anchor
    assert 'Only ratios within one run are comparable' in table
    assert suite['plot_has_ap']
    assert (out / 'suite.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
