"""A converted DeepMask release ``.t7`` in insplug's detectron2 ``DeepMask``: the synthetic release
model of tests/converters/test_deepmask_converter.py, converted by
``tools/convert_checkpoint.py deepmask ... [--to detectron2]``, loads into the model of
``configs/detectron2/deepmask_r18_shapes.yaml`` through detectron2's checkpointers (every
``net.*`` tensor placed) and runs as the Lua module tree does."""
import os.path as osp
import sys

import pytest

from d2_utils import D2_CONFIGS, INSTALL_HINT  # imports no detectron2

pytest.importorskip('detectron2', reason=INSTALL_HINT)

import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'converters'))
from test_deepmask_converter import _Tree, _windows, deepmask_reference  # noqa: E402
from t7_writer import write_t7  # noqa: E402


def test_converted_t7_in_detectron2(tmp_path):
    from insplug.cli.convert import main
    from insplug.detectron2.checkpoint import SafeDetectionCheckpointer
    from insplug.detectron2.train_net import setup_cfg
    lua = _Tree(0).deepmask()
    src = tmp_path / 'model.t7'
    src.write_bytes(write_t7({'model': lua, 'config': {'iSz': 64}}))
    mm_out, d2_out = str(tmp_path / 'mm.pth'), str(tmp_path / 'd2.pth')
    assert main(['deepmask', str(src), mm_out]) == 0
    assert main(['deepmask', str(src), d2_out, '--to', 'detectron2']) == 0
    cfg = setup_cfg(osp.join(D2_CONFIGS, 'deepmask_r18_shapes.yaml'),
                    ['MODEL.DEVICE', 'cpu', 'MODEL.WEIGHTS', ''])
    model = build_model(cfg).eval()
    x = _windows(1)
    ref = deepmask_reference(lua, x)
    state = {k: v for k, v in model.state_dict().items()}
    for checkpointer, path in ((DetectionCheckpointer, d2_out),
                               (SafeDetectionCheckpointer, d2_out),
                               (SafeDetectionCheckpointer, mm_out)):  # mmdet layout on the fly
        with torch.no_grad():
            for value in state.values():
                value.zero_()
        checkpointer(model).load(path)
        assert all(v.abs().sum() > 0 for k, v in model.state_dict().items()
                   if k.endswith('weight')), (checkpointer.__name__, path)
        with torch.no_grad():
            out = model.net.double().forward_windows(x)
        model.float()
        for key in ('mask', 'score'):
            scale = max(1.0, ref[key].abs().max().item())
            assert (out[key] - ref[key]).abs().max() < 1e-5 * scale, (key, path)
