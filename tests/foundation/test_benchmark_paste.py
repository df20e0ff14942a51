"""``tools/benchmark_paste.py`` runs and compares like with like: on a small setting, every
paster it times (insplug's shared paste, mmdet's per-box and whole-image pastes, detectron2's
when installed) gives the same pixels as insplug's. Timing itself is not asserted (speed is
measured by the tool, not in tests)."""
import importlib.util
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_paste', osp.join(REPO, 'tools', 'benchmark_paste.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_paster_gives_insplugs_pixels():
    rows = load_tool().run(num=12, mask_sizes=(14, 56), image=96, repeats=1)
    names = {r['paster'] for r in rows}
    assert {'insplug', 'mmdet 2.x per box (RefineMask release)', 'mmdet whole image'} <= names
    assert all(r['differing_pixels'] == 0 for r in rows), rows
    assert all(r['cpu_ms'] >= 0 for r in rows)
