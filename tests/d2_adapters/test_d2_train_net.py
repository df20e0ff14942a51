"""``tools/d2_train_net.py`` (``insplug.detectron2.train_net``) end to end on the demo set.

The yacs path a user runs: ``get_cfg`` + ``add_insplug_config`` + ``merge_from_file``, the
shapes splits registered from ``--shapes-root``, detectron2's ``DefaultTrainer`` with insplug's
AdamW, two iterations, then the final evaluation by ``COCOEvaluator`` (bbox and segm results
for all 12 validation images; a 2-iteration model scores near 0 AP, so only the presence and
range of the metrics are checked). A class count that does not match the data is refused
before training, naming the key to fix.
"""
import json
import os.path as osp

import pytest

from d2_utils import INSTALL_HINT, D2_CONFIGS, REPO  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)


from insplug.detectron2.train_net import cli, register_datasets, setup_cfg  # noqa: E402


def test_train_and_evaluate_sparseinst(demo_data, tmp_path):
    results = cli(['--config-file', osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml'),
                   '--shapes-root', demo_data['root'].rstrip('/'),
                   'SOLVER.MAX_ITER', '2', 'SOLVER.IMS_PER_BATCH', '2',
                   'DATALOADER.NUM_WORKERS', '0', 'OUTPUT_DIR', str(tmp_path)])
    assert set(results) >= {'bbox', 'segm'}
    assert 0.0 <= results['segm']['AP'] <= 100.0
    assert osp.isfile(tmp_path / 'model_final.pth')
    with open(tmp_path / 'inference' / 'coco_instances_results.json') as f:
        predictions = json.load(f)
    assert {p['image_id'] for p in predictions} == set(range(1, 13))
    assert all('segmentation' in p for p in predictions)


def test_wrong_class_count_is_refused(demo_data):
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'refinemask_r18_shapes.yaml'),
                    ['MODEL.ROI_HEADS.NUM_CLASSES', 80])
    with pytest.raises(ValueError, match='MODEL.ROI_HEADS.NUM_CLASSES = 80'):
        register_datasets(cfg, demo_data['root'].rstrip('/'))


def test_tool_script_exists():
    assert osp.isfile(osp.join(REPO, 'tools', 'd2_train_net.py'))


def test_trainer_reads_model_weights_weights_only(demo_data, tmp_path):
    """``MODEL.WEIGHTS`` / ``--resume`` go through the trainer's checkpointer: weights-only."""
    import os

    import torch

    from insplug.checkpoints import UnsafeCheckpointError

    class RunsCommand:
        def __reduce__(self):
            return os.system, (f'touch {tmp_path / "pwned"}',)

    evil = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'x': RunsCommand()}, evil)
    with pytest.raises(UnsafeCheckpointError):
        cli(['--config-file', osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml'),
             '--shapes-root', demo_data['root'].rstrip('/'), 'MODEL.WEIGHTS', str(evil),
             'SOLVER.MAX_ITER', '1', 'DATALOADER.NUM_WORKERS', '0', 'OUTPUT_DIR', str(tmp_path)])
    assert not (tmp_path / 'pwned').exists()


def test_two_cpu_processes_train_with_gloo(demo_data, tmp_path):
    """``--num-gpus 2`` on CPU: detectron2's ``launch`` (gloo) and DDP with device_ids=None."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, 'tools/d2_train_net.py', '--num-gpus', '2',
         '--config-file', osp.join(D2_CONFIGS, 'sparseinst_r18_shapes.yaml'),
         '--shapes-root', demo_data['root'].rstrip('/'), 'SOLVER.MAX_ITER', '3',
         'SOLVER.IMS_PER_BATCH', '2', 'DATALOADER.NUM_WORKERS', '0', 'TEST.EVAL_PERIOD', '0',
         'OUTPUT_DIR', str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'World size: 2' in log  # rank 1 logs nothing; a DDP failure would exit non-zero
    assert osp.isfile(tmp_path / 'model_final.pth')


def test_every_insplug_meta_arch_names_its_class_count_key():
    """tools/d2_train_net.py checks the data set's class count against the key the model reads;
    each insplug meta-architecture has its key, and each yaml's key exists with a positive
    count."""
    import glob

    from detectron2.modeling import META_ARCH_REGISTRY

    from insplug.detectron2.train_net import (NUM_CLASSES_KEYS, num_classes_field,
                                              num_classes_key, setup_cfg)
    ours = {name for name, obj in META_ARCH_REGISTRY._obj_map.items()
            if obj.__module__.startswith('insplug.')}
    unnamed = {name for name in ours if name not in NUM_CLASSES_KEYS
               and not getattr(META_ARCH_REGISTRY.get(name), 'num_classes_key', None)
               and not getattr(META_ARCH_REGISTRY.get(name), 'class_agnostic', False)}
    assert ours and not unnamed, unnamed
    yamls = sorted(glob.glob(osp.join(REPO, 'configs', 'detectron2', '*.yaml')))
    assert len(yamls) >= 10
    for path in yamls:
        cfg = setup_cfg(path, [])
        key, value = num_classes_field(cfg)
        if getattr(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), 'class_agnostic', False):
            assert key is None and value is None, path
            continue
        assert isinstance(value, int) and value > 0, (path, key, value)
        assert key == num_classes_key(cfg.MODEL.META_ARCHITECTURE), path
