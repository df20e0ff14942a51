"""SpatialEmbeddings against golden data of the official release (davyneven/SpatialEmbeddings).

The fixture (tests/fixtures/official/spatialembeddings/golden.pt) is written by
``tools/official_parity/make_spatialembeddings_golden.py --official-repo PATH``: the official
``BranchedERFNet`` (ERFNet widths 4/8/16 instead of 16/64/128), ``SpatialEmbLoss`` and
``Cluster.cluster`` run in float64 on CPU. Here its official-layout state_dict goes through the
``spatialembeddings`` converter into insplug's ``BottomUpSegmentor`` (strict load), and insplug
must reproduce the network output and every loss term (and the loss gradient) within 1e-5
(absolute), and the official clustering (instance masks, their order and seed scores, and the
official instance-id map) with 0 differing pixels.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from insplug.converters import ConversionError, convert_checkpoint, convert_state_dict
from insplug.core.bottomup.spatial_embedding import (spatial_embedding_inference,
                                                     spatial_embedding_loss)
from insplug.core.postprocess.clustering import GreedySeedClustering
from insplug.registry import MODELS

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'spatialembeddings',
                   'golden.pt')
FULL_CFG = 'configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py'
TOL = 1e-5


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


def _model(widths, num_classes=1, n_sigma=1):
    cfg = dict(
        type='BottomUpSegmentor',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0] * 3, std=[255.0] * 3,
                               bgr_to_rgb=True, pad_size_divisor=8),
        backbone=dict(type='ERFNet', num_branches=2, encoder_channels=tuple(widths),
                      decoder_channels=(widths[1], widths[0])),
        head=dict(type='SpatialEmbeddingHead', num_classes=num_classes, n_sigma=n_sigma,
                  in_channels=widths[0]))
    with DefaultScope.overwrite_default_scope('insplug'):
        return MODELS.build(cfg)


def _gt(instance_map):
    """(B, H, W) instance ids -> (M, H, W) masks, labels (car = 0), image index."""
    masks, img = [], []
    for b, ids in enumerate(instance_map):
        for i in ids.unique().tolist():
            if i:
                masks.append(ids == i)
                img.append(b)
    h, w = instance_map.shape[-2:]
    masks = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool)
    return masks, torch.zeros(len(img), dtype=torch.long), torch.tensor(img, dtype=torch.long)


def test_converted_state_dict_loads_strictly_and_forward_matches(golden):
    model = _model(golden['widths'])
    converted = convert_state_dict('spatialembeddings', golden['state_dict'])
    model.load_state_dict(converted, strict=True)
    model = model.double().eval()
    with torch.no_grad():
        offsets, sigma, seeds = model._forward(golden['images'])
    out = torch.cat([offsets, sigma, seeds], 1)
    assert out.shape == golden['output'].shape
    assert (out - golden['output']).abs().max() < TOL


def test_converter_handles_module_prefix_and_full_width_layout():
    """The released checkpoint's key layout (full widths, 'module.' prefix) fills the model of
    the Cityscapes config exactly."""
    golden = torch.load(FIXTURE, weights_only=True)
    full = {'module.' + k: torch.zeros(s) for k, s in zip(golden['full_keys'],
                                                          golden['full_shapes'])}
    converted = convert_state_dict('spatialembeddings', full)
    cfg = Config.fromfile(FULL_CFG)
    with DefaultScope.overwrite_default_scope('insplug'):
        model = MODELS.build(cfg.model)
    state = model.state_dict()
    assert set(converted) == set(state)
    for key, value in state.items():
        assert tuple(converted[key].shape) == tuple(value.shape), key
    model.load_state_dict(converted, strict=True)


def test_convert_checkpoint_reads_the_release_file_format(golden, tmp_path):
    """src/train.py saves {'epoch', 'best_iou', 'model_state_dict' (DataParallel: 'module.'),
    'optim_state_dict', 'logger_data'}; the file converts and fills the Cityscapes model."""
    state = {'module.' + k: torch.zeros(s) for k, s in zip(golden['full_keys'],
                                                           golden['full_shapes'])}
    src, dst = tmp_path / 'checkpoint.pth', tmp_path / 'converted.pth'
    torch.save(dict(epoch=199, best_iou=0.5, model_state_dict=state, optim_state_dict={},
                    logger_data=dict(train=[1.0], val=[1.0], iou=[0.5])), src)
    converted = convert_checkpoint('spatialembeddings', str(src), str(dst), config=FULL_CFG)
    assert len(converted) == len(state) - 2  # encoder.output_conv weight and bias dropped
    saved = torch.load(dst, weights_only=True)
    assert set(saved['state_dict']) == set(converted)


def test_converter_rejects_other_checkpoints(golden):
    with pytest.raises(ConversionError):
        convert_state_dict('spatialembeddings', {'backbone.conv1.weight': torch.zeros(1)})
    bad = dict(golden['state_dict'], **{'decoders.2.output_conv.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match='decoders.2'):
        convert_state_dict('spatialembeddings', bad)


@pytest.mark.parametrize('case', range(4))
def test_loss_terms_and_gradient_match_official(golden, case):
    c = golden['loss_cases'][case]
    pred = c['prediction'].double().clone().requires_grad_()
    n = c['n_sigma']
    masks, labels, img = _gt(golden['loss_instances'].long())
    out = spatial_embedding_loss(pred[:, :2], pred[:, 2:2 + n], pred[:, 2 + n:3 + n], masks,
                                 labels, img, to_center=c['to_center'], foreground_weight=10,
                                 instance_weight=1, sigma_weight=10, seed_weight=1)
    for ours, theirs in (('loss_instance', 'loss_instance'), ('loss_sigma', 'loss_var'),
                         ('loss_seed', 'loss_seed')):
        assert abs(float(out[ours]) - float(c[theirs])) < TOL, (c['name'], ours)
    total = out['loss_instance'] + out['loss_sigma'] + out['loss_seed']
    assert abs(float(total) - float(c['loss_total'])) < TOL
    total.backward()
    assert (pred.grad - c['grad'].double()).abs().max() < TOL


@pytest.mark.parametrize('case', range(6))
def test_clustering_matches_official(golden, case):
    c = golden['cluster_cases'][case]
    pred = c['prediction'].double()
    clusterer = GreedySeedClustering(seed_threshold=c['threshold'])
    masks, labels, scores = spatial_embedding_inference(pred[0:2], pred[2:3], pred[3:4],
                                                        clusterer, foreground_threshold=0.5)
    assert masks.shape == c['masks'].shape
    assert int((masks != c['masks']).sum()) == 0
    assert torch.equal(labels, torch.zeros_like(labels))
    assert torch.allclose(scores, c['scores'], rtol=0, atol=1e-12)
    # the official instance-id map: later instances overwrite earlier ones
    ids = torch.zeros(pred.shape[-2:], dtype=torch.uint8)
    for n, m in enumerate(masks, 1):
        ids[m] = n
    assert int((ids != c['instance_map']).sum()) == 0
    if case < 5:
        assert masks.shape[0] > 0  # the crafted cases do find instances
