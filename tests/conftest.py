"""Shared fixtures: the bundled demo set (small, generated once per session) and data paths.

``tests/`` is on ``sys.path`` (pytest inserts this file's folder), so tests can
``import e2e_utils``. Test file names must be unique across sub-folders.
"""
import os
import os.path as osp

import pytest
import torch

# One intra-op thread: with two, CPU float reductions may sum in another order from run to run,
# and the end-to-end AP floors were measured on bit-reproducible single-thread runs.
torch.set_num_threads(1)

# Test folders in order of cost: the end-to-end trainings first. `make test` hands whole files to
# one process per core in collection order (--dist loadfile --no-loadscope-reorder), so the long
# files start first and the short unit-test files fill in at the end, instead of one process
# finishing a 90 s training alone while the other is idle.
FOLDERS_BY_COST = ('e2e', 'foundation', 'deploy', 'parity', 'mmdet')


def pytest_collection_modifyitems(config, items):
    def cost_rank(item):
        folder = osp.basename(osp.dirname(str(item.fspath)))
        return FOLDERS_BY_COST.index(folder) if folder in FOLDERS_BY_COST \
            else len(FOLDERS_BY_COST)
    items.sort(key=cost_rank)  # stable: the order inside a folder and a file is kept


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = os.environ.get('INSPLUG_SHARED', osp.join(osp.dirname(REPO), 'shared'))
NUCLEI_ROOT = osp.join(SHARED, 'data', 'nuclei')


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """A small split of the bundled shapes set: 24 train / 12 val images at 256 px.

    Returns a dict with ``root`` (ending in '/'), ``train_ann``, ``val_ann`` (paths relative to
    root, as the configs use them) and ``classes``.
    """
    from insplug.datasets.shapes import CLASSES, generate
    root = tmp_path_factory.mktemp('shapes')
    generate(str(root), num_train=24, num_val=12, size=256, seed=0)
    return dict(root=str(root) + '/', train_ann='train/annotations.json',
                val_ann='val/annotations.json', classes=CLASSES)


@pytest.fixture(scope='session')
def nuclei_root():
    """Root of the real DSB2018 nuclei set in ../shared; skips only where ../shared is absent."""
    if not osp.isdir(NUCLEI_ROOT):
        pytest.skip(f'real-data check: needs the nuclei set at {NUCLEI_ROOT} (../shared absent)')
    return NUCLEI_ROOT + '/'
