"""tools/leaderboard.py end to end on two demo configs at a tiny budget on the shapes set.

Checks the md / json / png outputs, that a second run skips finished entries (no training,
rows read back), and that an entry with a checkpoint but no result resumes from it (no
iteration trained again, the train time carried over in the checkpoint).
"""
import json
import os
import os.path as osp

import pytest

from insplug.cli import leaderboard

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = [osp.join(REPO, 'configs', 'demo', 'sparseinst_r18_shapes.py'),
           osp.join(REPO, 'configs', 'demo', 'solov2_r18_shapes.py')]
NAMES = ['sparseinst_r18_shapes', 'solov2_r18_shapes']


@pytest.fixture(scope='module')
def tiny_shapes(tmp_path_factory):
    from insplug.datasets.shapes import generate
    root = tmp_path_factory.mktemp('lb_shapes')
    generate(str(root), num_train=4, num_val=2, size=256, seed=0)
    return str(root)


def _argv(root, out, *extra, configs=CONFIGS):
    return [*configs, '--data', 'shapes', '--data-root', root, '--out', out,
            '--max-iters', '2', '--workers', '0', '--latency-images', '2',
            '--progress-interval', '1', *extra]


def test_leaderboard_end_to_end_and_resume(tiny_shapes, tmp_path, capsys):
    out = str(tmp_path / 'board')
    entries = str(tmp_path / 'entries')
    board = leaderboard.main(_argv(tiny_shapes, out, '--entries', entries))
    printed = capsys.readouterr().out
    # outputs
    for name in ('leaderboard.md', 'leaderboard.json', 'leaderboard.png'):
        assert osp.getsize(osp.join(out, name)) > 0, name
    with open(osp.join(out, 'leaderboard.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(osp.join(out, 'leaderboard.json')) as f:
        saved = json.load(f)
    assert [r['name'] for r in saved['rows']] == NAMES
    assert saved['data'] == 'shapes' and saved['rows'] == board['rows']
    families = {r['name']: r['family'] for r in saved['rows']}
    assert families == {'sparseinst_r18_shapes': 'query-based',
                        'solov2_r18_shapes': 'one-stage (grid)'}
    for row in saved['rows']:
        assert row['iters'] == 2 and row['budget'] == '2 iters' and not row['cached']
        assert row['params_m'] > 1 and row['gflops'] > 0.1
        assert row['train_s'] > 0 and row['latency_ms'] > 0
        assert 0 < row['loss_first'] <= row['loss_max'] and row['loss_non_finite'] == 0
        # every trainable tensor was watched; those never reached in 2 iterations are named
        assert row['grad_watched'] > 50
        assert 0 <= row['no_grad_tensors'] < row['grad_watched']
        assert len(row['no_grad_names']) == min(10, row['no_grad_tensors'])
        for key in ('mask_ap', 'ap50', 'ap75'):
            assert 0.0 <= row[key] <= 1.0, (row['name'], key, row[key])
    md = open(osp.join(out, 'leaderboard.md')).read()
    assert 'mask AP' in md and 'AP50' in md and 'APs' in md and 'latency (ms)' in md
    for name in NAMES:
        assert f'| {name} |' in md
    # progress with the board's ETA
    assert 'entry 2/2: iter 2/2' in printed and 'ETA 0:' in printed

    # a second run: both entries finished, read back, nothing trained
    ckpts = {n: osp.join(out, 'work_dirs', n, 'iter_2.pth') for n in NAMES}
    mtimes = {n: os.stat(p).st_mtime_ns for n, p in ckpts.items()}
    again = leaderboard.main(_argv(tiny_shapes, out))
    printed = capsys.readouterr().out
    assert printed.count('not trained again') == 2 and 'iter 1/2' not in printed
    assert all(r['cached'] for r in again['rows'])
    assert [r['mask_ap'] for r in again['rows']] == [r['mask_ap'] for r in board['rows']]

    # an interrupted entry (checkpoint, no result): resumed, not retrained from scratch
    first = board['rows'][0]
    os.remove(osp.join(out, 'work_dirs', NAMES[0], leaderboard.ENTRY_FILE))
    resumed = leaderboard.main(_argv(tiny_shapes, out))
    printed = capsys.readouterr().out
    assert printed.count('not trained again') == 1 and 'iter 1/2' not in printed
    row = resumed['rows'][0]
    assert not row['cached'] and row['iters'] == 2
    assert {n: os.stat(p).st_mtime_ns for n, p in ckpts.items()} == mtimes
    # the train time comes from the checkpoint (saved at the last iteration), not from zero
    assert 0 < row['train_s'] <= first['train_s'] + 1.0
    assert row['train_s'] >= 0.5 * first['train_s']
    assert row['mask_ap'] == first['mask_ap']
    # the loss trace came with the checkpoint too
    assert (row['loss_first'], row['loss_last']) == (first['loss_first'], first['loss_last'])
    # and the gradient watch (resumed after its last iteration: nothing trained again)
    assert (row['no_grad_tensors'], row['grad_watched']) == (first['no_grad_tensors'],
                                                             first['grad_watched'])

    # rows kept in --entries: a board continued elsewhere (a fresh --out) trains nothing
    kept = {n: json.load(open(osp.join(entries, f'{n}.json'))) for n in NAMES}
    for name, row in kept.items():
        assert row['commit'] and len(row['config_digest']) == 12 and row['threads'] >= 1
        assert row['machine']['cpus'] == os.cpu_count() and row['finished'].endswith('UTC')
    elsewhere = str(tmp_path / 'elsewhere')
    moved = leaderboard.main(_argv(tiny_shapes, elsewhere, '--entries', entries))
    printed = capsys.readouterr().out
    assert printed.count('not trained again') == 2 and 'iter 1/2' not in printed
    assert not osp.exists(osp.join(elsewhere, 'work_dirs'))
    assert [r['mask_ap'] for r in moved['rows']] == [kept[n]['mask_ap'] for n in NAMES]
    assert moved['commits'] == sorted({kept[n]['commit'] for n in NAMES})

    # --collect: finished rows plus the configs not run yet; nothing is trained
    third = osp.join(REPO, 'configs', 'demo', 'polarmask_r18_shapes.py')
    collected = leaderboard.main(_argv(tiny_shapes, str(tmp_path / 'collected'), '--entries',
                                       entries, '--collect', configs=[*CONFIGS, third]))
    printed = capsys.readouterr().out
    assert 'not run yet (--collect)' in printed and 'iter 1/2' not in printed
    assert [bool(r.get('pending')) for r in collected['rows']] == [False, False, True]
    md = open(osp.join(str(tmp_path / 'collected'), 'leaderboard.md')).read()
    assert '| polarmask_r18_shapes | 2 iters: not run yet |' in md
    assert md.index('| 1 | ') < md.index('not run yet')


def test_finished_row_needs_same_data_budget_and_config(tmp_path):
    """A kept row counts only for the data, budget and config digest it was made with."""
    path = str(tmp_path / 'm.json')
    with open(path, 'w') as f:
        json.dump(dict(data='nuclei', budget='9 iters', config_digest='abc', mask_ap=0.3), f)
    assert leaderboard.finished_row([path], 'nuclei', '9 iters', 'abc')[0]['mask_ap'] == 0.3
    for data, budget, digest in (('shapes', '9 iters', 'abc'), ('nuclei', '8 iters', 'abc'),
                                 ('nuclei', '9 iters', 'abd')):
        assert leaderboard.finished_row([path], data, budget, digest) == (None, None)
    from mmengine.config import Config
    a, b = Config.fromfile(CONFIGS[0]), Config.fromfile(CONFIGS[0])
    assert leaderboard.config_digest(a) == leaderboard.config_digest(b)
    b.model.criterion.num_classes = 99  # any change of the resolved config changes the digest
    assert leaderboard.config_digest(a) != leaderboard.config_digest(b)
    # --cfg-options: checkpoint / log intervals keep the row, a learning rate does not
    neutral = {'default_hooks.checkpoint.interval': 50, 'log_processor.window_size': 5}
    assert leaderboard.config_digest(a, neutral) == leaderboard.config_digest(a)
    lr = dict(neutral, **{'optim_wrapper.optimizer.lr': 1e-9})
    assert leaderboard.config_digest(a, lr) != leaderboard.config_digest(a)
    assert a.optim_wrapper.optimizer.lr != 1e-9  # the digest did not change the config


def test_budget_options():
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIGS[1])
    assert leaderboard.apply_budget(cfg, max_epochs=3) == '3 epochs'
    assert cfg.train_cfg.max_epochs == 3
    cfg = Config.fromfile(CONFIGS[0])  # iteration-based: --max-epochs is refused
    with pytest.raises(SystemExit, match='max-iters'):
        leaderboard.apply_budget(cfg, max_epochs=3)
    assert leaderboard.apply_budget(cfg, max_iters=7) == '7 iters'
    assert cfg.train_cfg.max_iters == 7 and cfg.train_dataloader.sampler.type == \
        'InfiniteSampler'


def test_board_markdown_ranks_by_mask_ap_and_lists_failures(tmp_path):
    def row(name, ap, latency):
        return dict(name=name, method=name.upper(), family='one-stage', budget='1 iters',
                    params_m=1.0, gflops=2.0, train_s=61.0, latency_ms=latency, mask_ap=ap,
                    ap50=ap, ap75=None, aps=None)
    board = dict(data='shapes', date='2026-01-01 00:00 UTC', torch='x', threads=1,
                 latency_images=1, machine=dict(processor='cpu', cpus=2),
                 rows=[row('low', 0.1, 10.0), dict(name='broken', error='ValueError: x'),
                       row('high', 0.5, 20.0),
                       dict(row('lost', 0.0, 30.0), loss_first=2.0, loss_last=351.0,
                            diverged=True),
                       dict(row('prior', 0.0, 40.0), loss_first=0.63, loss_last=0.5,
                            diverged=False, no_grad_tensors=43, grad_watched=44)])
    lines = leaderboard.board_markdown(board).splitlines()
    ranked = [line for line in lines if line.startswith('| 1 ') or line.startswith('| 2 ')]
    assert ranked[0].startswith('| 1 | HIGH |') and ranked[1].startswith('| 2 | LOW |')
    assert '| 0:01:01 |' in ranked[0] and '| 0.500 | 0.500 | - | - |' in ranked[0]
    assert any('broken' in line and 'failed: ValueError: x' in line for line in lines)
    assert [line for line in lines if '| LOST |' in line][0].count('| 2 → 351 **diverged** |')
    assert '| - | 10 |' in ranked[1]  # a row recorded before losses were kept
    # a run whose loss fell while most of the network got no gradient (SharpMask at km = 16)
    assert [line for line in lines if '| PRIOR |' in line][0].count(
        '| 0.63 → 0.5 **no gradient: 43 of 44 tensors** |')
    assert leaderboard.board_plot(board, str(tmp_path / 'p.png')) == 4


def test_cpu_clock_counts_work_not_waiting():
    """``--clock cpu``: time spent waiting (a shared machine) is not counted; wall time is."""
    import time
    from insplug.cli.benchmark import _timed
    wall = _timed(lambda: time.sleep(0.2), 1, 0, 'cpu', clock=leaderboard.CLOCKS['wall'])
    cpu = _timed(lambda: time.sleep(0.2), 1, 0, 'cpu', clock=leaderboard.CLOCKS['cpu'])
    assert wall[0] >= 0.19 and cpu[0] < 0.05
    board = dict(data='shapes', date='d', machine=dict(processor='p', cpus=2), torch='t',
                 threads=2, latency_images=1, clock='cpu', rows=[])
    assert 'CPU time of the process' in leaderboard.board_markdown(board)


def test_measure_sizes_a_schedule_from_cpu_time(tiny_shapes, tmp_path):
    """``--measure N``: N timed iterations after the warm-up, nothing saved or validated."""
    from insplug.cli.board_sizing import WARMUP_ITERS, iterations_for
    out = str(tmp_path / 'sizing')
    sizes = leaderboard.main([CONFIGS[0], '--data', 'shapes', '--data-root', tiny_shapes,
                              '--out', out, '--measure', '2', '--workers', '0',
                              '--size-cpu-min', '0.5'])
    row = sizes[NAMES[0]]
    assert len(row['samples']) == WARMUP_ITERS - 1 + 2 and min(row['samples']) > 0
    assert row['cpu_s_per_iter'] == pytest.approx(sum(row['samples'][-2:]) / 2)
    assert row['fitting_iters'] == iterations_for(0.5, row['cpu_s_per_iter'])
    assert json.load(open(osp.join(out, 'sizing.json')))[NAMES[0]]['samples'] == row['samples']
    assert not any(f.endswith('.pth') for _, _, fs in os.walk(out) for f in fs)
    # 30 CPU-minutes at 9 s per iteration: 200 iterations (rounded to tens, at least ten)
    assert iterations_for(30, 9.0) == 200 and iterations_for(30, 8.42) == 210
    assert iterations_for(0.01, 9.0) == 10


def _config_with_board_keys(folder, name, base, leaderboard_keys):
    """``folder/name.py``: the repository config ``base`` with a ``leaderboard`` dict."""
    path = folder / f'{name}.py'
    path.write_text(f"_base_ = {osp.join(REPO, 'configs', *base.split('/'))!r}\n"
                    f"leaderboard = dict({leaderboard_keys})\n")
    return str(path)


def _train_chain(root, out, parent, child, parent_name):
    """The child entry alone fails, naming the parent; both train; returns their rows. The
    child's train time includes the parent's."""
    with pytest.raises(RuntimeError, match=f'list {parent_name} before it'):
        leaderboard.main(_argv(root, out, configs=[child]))
    parent_row, child_row = leaderboard.main(_argv(root, out, configs=[parent, child]))['rows']
    assert parent_row['iters'] == 2 and child_row['iters'] == 2
    assert child_row['train_s'] > parent_row['train_s']
    return parent_row, child_row


def test_chained_entry_starts_from_the_trained_parent(tiny_shapes, tmp_path):
    """``leaderboard.init_from``: SharpMask's refinement trains on the DeepMask entry's model."""
    import torch
    from insplug.checkpoints.safe_load import safe_load
    deepmask = osp.join(REPO, 'configs', 'deepmask', 'deepmask_r18_shapes.py')
    sharpmask = _config_with_board_keys(tmp_path, 'sharpmask_chained',
                                        'deepmask/sharpmask_r18_shapes.py',
                                        "method='SharpMask', init_from='deepmask_r18_shapes'")
    out = str(tmp_path / 'board')
    # without the parent trained in this --out: a clear error, nothing trained; the chain's
    # cost includes DeepMask's time
    _, child = _train_chain(tiny_shapes, out, deepmask, sharpmask, 'deepmask_r18_shapes')
    assert child['init_from'] == 'deepmask_r18_shapes'

    def weights(name):
        path = osp.join(out, 'work_dirs', name, 'iter_2.pth')
        return safe_load(path)['state_dict']
    before, after = weights('deepmask_r18_shapes'), weights('sharpmask_chained')
    # the DeepMask mask head is frozen in the SharpMask stage: the parent's final weights
    assert torch.equal(before['net.head.mask.weight'], after['net.head.mask.weight'])
    assert any(k.startswith('net.refine.') for k in after)


def test_boxcaseg_row_trains_mask_rcnn_on_the_segmenter_pseudo_masks(tiny_shapes, tmp_path,
                                                                    monkeypatch):
    """BoxCaseg's steps: salient crops of a generated shapes set, the segmenter (a step, not
    ranked), then a Mask R-CNN trained on the segmenter's pseudo masks of the training boxes."""
    from insplug.cli import board_steps
    from pycocotools import mask as mask_utils
    monkeypatch.setattr(board_steps, 'SALIENT_SOURCE_IMAGES', 6)
    segmenter = _config_with_board_keys(
        tmp_path, 'bc_segmenter', 'boxcaseg/boxcaseg_hrnet_tiny_shapes.py',
        "method='BoxCaseg segmenter', step_of='bc_rcnn', salient='shapes'")
    rcnn = _config_with_board_keys(tmp_path, 'bc_rcnn', 'boxcaseg/mask_rcnn_r18_pseudo_shapes.py',
                                   "method='BoxCaseg', pseudo_masks_from='bc_segmenter'")
    out = str(tmp_path / 'board')
    # the row's train time includes the segmenter's and the pseudo-mask pass
    step, row = _train_chain(tiny_shapes, out, segmenter, rcnn, 'bc_segmenter')
    assert step['step_of'] == 'bc_rcnn'
    salient = json.load(open(osp.join(out, 'salient_shapes', 'salient', 'annotations.json')))
    assert len(salient['images']) == len(salient['annotations']) > 0  # one object per crop

    # the Mask R-CNN trained on pseudo.json: the true training boxes, the segmenter's masks
    work = osp.join(out, 'work_dirs', 'bc_rcnn')
    pseudo = json.load(open(osp.join(work, 'pseudo.json')))
    truth = json.load(open(osp.join(tiny_shapes, 'train', 'annotations.json')))
    assert [a['bbox'] for a in pseudo['annotations']] == [a['bbox'] for a in truth['annotations']]

    def decode(ann, info):
        segm = ann['segmentation']
        if isinstance(segm, list):
            segm = mask_utils.merge(mask_utils.frPyObjects(segm, info['height'], info['width']))
        return mask_utils.decode(segm)
    info = {i['id']: i for i in truth['images']}
    assert any((decode(p, info[p['image_id']]) != decode(t, info[t['image_id']])).any()
               for p, t in zip(pseudo['annotations'], truth['annotations']))
    assert osp.join(work, 'pseudo.json') in open(osp.join(work, 'bc_rcnn.py')).read()

    md = open(osp.join(out, 'leaderboard.md')).read()
    ranked = [line for line in md.splitlines() if line.startswith('| 1 |')]
    assert len(ranked) == 1 and '| bc_rcnn |' in ranked[0] and '| 2 |' not in md
    assert "- bc_segmenter: step of bc_rcnn (2 iters): mask AP" in md
