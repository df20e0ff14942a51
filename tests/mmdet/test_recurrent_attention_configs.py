"""Recurrent attention configs: every full config and the demo build through the registry with
the release's network sizes (checked against the release's run scripts: input size, timespan,
glimpse map, patch features), the CVPPP model (2 steps) runs inference on one image (masks at
the original size, consistent fields), and the box-stage checkpoint fills the full model's box
network."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# config -> (input size, timespan, glimpse locations, patch-feature size, classes, stage)
EXPECTED = {
    'recurrent_attention/recurrent_attention_cvppp.py': ((224, 224), 21, 7 * 7, 32 * 6 * 6, 1,
                                                         'full'),
    'recurrent_attention/recurrent_attention_box_cvppp.py': ((224, 224), 21, 7 * 7, None, 1,
                                                             'box'),
    'recurrent_attention/recurrent_attention_kitti.py': ((128, 448), 20, 4 * 14, 96 * 6 * 6, 1,
                                                         'full'),
    'recurrent_attention/recurrent_attention_cityscapes.py': ((256, 512), 20, 8 * 16,
                                                              96 * 6 * 6, 8, 'full'),
    'demo/recurrent_attention_shapes.py': ((96, 96), 7, 6 * 6, 32 * 3 * 3, 5, 'full'),
}


def build(name, **net):
    import insplug.mmdet  # noqa: F401
    from insplug.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    cfg.model.net.update(net)
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg.model), cfg


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_config_builds_release_sizes(name):
    size, timespan, locations, core, classes, stage = EXPECTED[name]
    model, cfg = build(name)
    net = model.net
    assert (net.height, net.width) == size and net.timespan == timespan
    assert net.stage == stage and model.num_classes == classes
    assert net.controller.glimpse_mlp[-1].out_features == locations
    if core is not None:
        hid = net.controller.hidden_dim
        assert net.score.in_features == hid + core
        assert (net.cls is None) == (classes == 1)
    assert len(net.ctrl_cnn.norms[0].norms) == timespan  # per-step batch norm


def test_cvppp_predicts():
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    # two of the 21 steps (CPU time): the release's sizes otherwise
    model, _ = build('recurrent_attention/recurrent_attention_cvppp.py', timespan=2)
    model.eval()
    sample = DetDataSample(metainfo=dict(img_shape=(224, 224), ori_shape=(300, 400)))
    with torch.no_grad():
        out = model.predict(torch.rand(1, 3, 224, 224), [sample])
    pred = out[0].pred_instances
    assert pred.masks.shape[1:] == (300, 400) and pred.masks.dtype == torch.bool
    assert len(pred.masks) == len(pred.scores) == len(pred.labels) == len(pred.bboxes) <= 2


def test_box_stage_checkpoint_fills_the_box_network_of_the_full_model():
    """Stage 1 -> stage 2: every box-stage tensor but its own score layer has a same-shaped
    home in the full model (controller CNN with per-step norms, LSTM, glimpse / controller
    MLPs), as the release's pretrain_ctrl_net loading."""
    box, _ = build('recurrent_attention/recurrent_attention_box_cvppp.py')
    full, cfg = build('recurrent_attention/recurrent_attention_cvppp.py')
    assert cfg.load_from_strict is False
    full_sd = full.state_dict()
    moved = {k: v for k, v in box.state_dict().items() if not k.startswith('net.box_score.')}
    assert moved and all(k.startswith(('net.ctrl_cnn.', 'net.controller.')) for k in moved)
    assert all(full_sd[k].shape == v.shape for k, v in moved.items())
    missing, unexpected = full.load_state_dict(moved, strict=False)
    assert not unexpected
    assert all(k.startswith(('net.attn_cnn.', 'net.attn_dcnn.', 'net.score.')) for k in missing)
