"""ONNX export (insplug.deploy.onnx_export): exported graphs run with onnxruntime and are compared
with the PyTorch model's own predict path (data preprocessor + ``predict``), not with the export
wrapper only: raw outputs within 1e-4 (abs), the same kept detections (labels; scores within
1e-4), 0 differing mask pixels away from the 0.5-threshold ties (|p - thr| <= 1e-4) and equal
boxes. The exact rewrites (adaptive pooling, boxes from masks) are checked against torch."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('onnx', reason='onnx is not installed (pip install onnx; test extra)')
pytest.importorskip('onnxruntime',
                    reason='onnxruntime is not installed (pip install onnxruntime; test extra)')

from insplug.deploy import onnx_export as ox  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPARSEINST_DEMO = osp.join(REPO, 'configs/demo/sparseinst_r18_shapes.py')
SPARSEINST_R50 = osp.join(REPO, 'configs/sparseinst/sparseinst_r50_giam.py')


@pytest.mark.parametrize('size,bins', [((7, 9), (2, 3)), ((19, 19), (6, 6)), ((5, 12), (1, 5)),
                                       ((4, 4), (4, 4)), ((3, 8), (6, 3))])
def test_fixed_adaptive_pool_equals_torch(size, bins):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    ours = ox.FixedAdaptiveAvgPool2d(bins)(x)
    torch.testing.assert_close(ours, F.adaptive_avg_pool2d(x, bins), rtol=0, atol=1e-12)


def test_masks_to_boxes_traceable_equals_core():
    from insplug.core.postprocess.mask_boxes import masks_to_boxes
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 13, 17, generator=gen) > 0.97
    masks[0] = False  # empty mask: zeros
    masks[1] = False
    masks[1, 12, 16] = True  # the last pixel only
    boxes = ox.masks_to_boxes_traceable(masks)
    assert torch.equal(boxes, masks_to_boxes(masks))
    assert boxes[1].tolist() == [16.0, 12.0, 17.0, 13.0]


def _predict(model, image):
    """The PyTorch reference: the model's data preprocessor + predict on a (1, 3, H, W) image."""
    from mmdet.structures import DetDataSample
    h, w = image.shape[-2:]
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(inputs=[image[0].to(torch.uint8)], data_samples=[sample]), False)
    with torch.no_grad():
        return model.predict(data['inputs'], data['data_samples'])[0].pred_instances


def _check_against_predict(model, wrapper, path, image):
    onnx = dict(zip(ox.SparseInstFull.output_names,
                    ox.run_onnxruntime(path, {'image': image.numpy()})))
    wrapper.return_probs = True
    with torch.no_grad():
        raw = model._decode(wrapper.preprocess(image))
        probs = wrapper(image)[-1].numpy()  # (K, H, W) mask probabilities, slot order
    wrapper.return_probs = False
    diffs = {k: float((raw[k] - torch.from_numpy(onnx[k])).abs().max())
             for k in ('cls_logits', 'obj_logits', 'mask_logits')}
    assert max(diffs.values()) <= 1e-4, diffs
    ref = _predict(model, image)
    valid = np.flatnonzero(onnx['valid'])
    assert len(valid) == len(ref.scores)  # the same kept detections
    assert (onnx['scores'][~onnx['valid']] == -1).all()
    # both are in descending score order; random weights give distinct scores
    np.testing.assert_allclose(onnx['scores'][valid], ref.scores.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(onnx['labels'][valid], ref.labels.numpy())
    differ = onnx['masks'][valid] != ref.masks.numpy()
    ties = np.abs(probs[valid] - wrapper.mask_thr) <= 1e-4
    assert int((differ & ~ties).sum()) == 0
    same = ~differ.any((1, 2))
    np.testing.assert_array_equal(onnx['bboxes'][valid][same], ref.bboxes.numpy()[same])
    return diffs, len(valid), len(onnx['valid'])


@pytest.mark.parametrize('config,shape', [(SPARSEINST_DEMO, (128, 128)),
                                          (SPARSEINST_R50, (100, 120))])
def test_sparseinst_full_export_matches_predict(tmp_path, config, shape):
    """Whole model (BGR image -> scores / labels / masks / boxes), 100 x 120 exercises padding to
    128 and pyramid pooling whose bins do not divide the C5 map (4 x 4 -> 3 and 6 bins)."""
    model = ox.build_model(config, seed=0)
    # spread the scores of the random network (near-uniform activation maps make the instances
    # nearly equal, and the threshold below must fall between two distinct scores)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.decoder.inst_branch.iam_conv.weight, std=1.0)
    torch.nn.init.normal_(model.decoder.inst_branch.cls_score.weight, std=0.1)
    torch.nn.init.normal_(model.decoder.inst_branch.objectness.weight, std=0.1)
    path = str(tmp_path / 'sparseinst.onnx')
    report = ox.export_onnx(model, shape, path, mode='auto')
    assert report['mode'] == 'full' and report['ok'] and osp.isfile(path)
    wrapper = ox.SparseInstFull(model, shape).eval()
    image = ox.random_image(shape, seed=5)
    _, kept, slots = _check_against_predict(model, wrapper, path, image)
    assert kept == slots == min(model.test_cfg['max_per_img'], model.decoder.num_masks)
    # a threshold that drops about half of the predictions: they sort last, marked not valid
    from insplug.core.sparseinst.inference import instance_scores
    with torch.no_grad():
        raw = model._decode(wrapper.preprocess(image))
    raw_scores = instance_scores(raw['cls_logits'], raw['obj_logits']).max(-1)[0].flatten()
    raw_scores = raw_scores.sort().values
    # the largest gap between consecutive scores in the middle half: no tie at the threshold
    n = len(raw_scores)
    gaps = raw_scores[n // 4 + 1:3 * n // 4 + 1] - raw_scores[n // 4:3 * n // 4]
    half = n // 4 + 1 + int(gaps.argmax())
    assert raw_scores[half] - raw_scores[half - 1] > 1e-5
    thr = float(raw_scores[half - 1] + raw_scores[half]) / 2
    model.test_cfg['score_thr'] = thr
    path2 = str(tmp_path / 'sparseinst_thr.onnx')
    ox.export_onnx(model, shape, path2, mode='full')
    wrapper = ox.SparseInstFull(model, shape).eval()
    _, kept, slots = _check_against_predict(model, wrapper, path2, image)
    assert 0 < kept < slots


def test_sparseinst_network_export_and_numpy_postprocess(tmp_path):
    model = ox.build_model(SPARSEINST_DEMO, seed=1)
    shape = (96, 112)
    path = str(tmp_path / 'net.onnx')
    report = ox.export_onnx(model, shape, path, mode='network')
    assert report['mode'] == 'network' and max(report['max_abs_outputs']) <= 1e-4
    image = ox.random_image(shape, seed=3)
    params = ox.preprocess_params(model)
    inputs = ox.preprocess_numpy(image[0].permute(1, 2, 0).numpy(), params)
    assert inputs.shape == (1, 3, 96, 128)
    cls_logits, obj_logits, mask_logits = ox.run_onnxruntime(path, {'inputs': inputs})
    cfg = model.test_cfg
    dets = ox.sparseinst_postprocess_numpy(cls_logits[0], obj_logits[0], mask_logits[0], shape,
                                           cfg['score_thr'], cfg['mask_thr_binary'],
                                           cfg['max_per_img'])
    ref = _predict(model, image)
    np.testing.assert_allclose(dets['scores'], ref.scores.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(dets['labels'], ref.labels.numpy())
    assert dets['masks'].shape == tuple(ref.masks.shape)
    # ties: ONNX logits differ from torch by < 1e-4, so only near-threshold pixels may flip
    assert (dets['masks'] != ref.masks.numpy()).mean() < 1e-3


def test_export_never_writes_a_wrong_model(tmp_path, monkeypatch):
    """A graph that disagrees with PyTorch is refused and deleted, with the difference named."""
    model = ox.build_model(SPARSEINST_DEMO, seed=0)
    real = ox.run_onnxruntime

    def corrupted(path, inputs):
        outs = real(path, inputs)
        outs[5] = outs[5] + 1e-3  # cls_logits off by 1e-3
        return outs

    monkeypatch.setattr(ox, 'run_onnxruntime', corrupted)
    path = tmp_path / 'bad.onnx'
    with pytest.raises(ox.OnnxExportError, match='disagrees'):
        ox.export_onnx(model, (64, 64), str(path))
    assert not path.exists()


def test_cli_writes_verified_model(tmp_path, capsys):
    out = tmp_path / 'cli.onnx'
    assert ox.main([SPARSEINST_DEMO, 'none', '--shape', '64', '96', '--out', str(out)]) == 0
    assert out.is_file() and 'verified with onnxruntime' in capsys.readouterr().out


def _spread_heads(model, seed=0):
    """Random RPN / box-head weights with spread (std 0.1 / 0.02), so proposals and class
    scores differ from image to image and have no ties: a graph that froze the tracing image's
    selections would disagree on the other images."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(('rpn_head', 'roi_head.bbox_head')):
                std = 0.1 if name.startswith('rpn_head') else 0.02
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return model


@pytest.mark.parametrize('config,score_thr', [
    ('configs/demo/refinemask_r18_shapes.py', None),
    ('configs/demo/refinemask_r18_shapes.py', 0.19),   # fewer detections than the K slots
    ('configs/demo/mask_rcnn_r18_shapes.py', None),
    ('configs/demo/point_rend_r18_shapes.py', None),   # 5 subdivision steps, 784 points each
    ('configs/demo/d2det_r18_shapes.py', None)])   # + dense box refinement and mask scores
def test_two_stage_full_export_matches_predict(tmp_path, config, score_thr):
    """RefineMask / Mask R-CNN / PointRend / D2Det, pre-processing to pasted masks in one graph
    (traceable RPN, RoI pooling, NMS): on images other than the tracing one, onnxruntime gives
    mmdet's own ``predict`` detections (same labels in the same order, scores -- and D2Det's mask
    scores -- within 1e-4, boxes within 1e-3 px) and 0 differing mask pixels away from the
    threshold ties."""
    from insplug.deploy.two_stage import compare_two_stage
    model = _spread_heads(ox.build_model(osp.join(REPO, config), seed=0))
    if score_thr is not None:
        model.test_cfg.rcnn.score_thr = score_thr
        model.roi_head.test_cfg.score_thr = score_thr
    shape = (128, 160)
    path = tmp_path / 'two_stage.onnx'
    report = ox.export_onnx(model, shape, str(path), mode='auto')
    assert report['mode'] == 'full' and report['ok'] and path.is_file()
    wrapper = ox.full_wrapper_class(model)(model, shape).eval()
    assert type(wrapper).__name__ == ('D2DetFull' if 'd2det' in config else 'TwoStageFull')
    wrapper.return_probs = True
    kept = []
    for seed in (2,):  # export_onnx already checked image seed 1
        image = ox.random_image(shape, seed)
        onnx_outs = ox.run_onnxruntime(str(path), {'image': image.numpy()})
        with torch.no_grad():
            torch_outs = wrapper(image)
        result = compare_two_stage(torch_outs, onnx_outs, wrapper.reference(image),
                                   wrapper.mask_thr, output_names=wrapper.output_names)
        assert result['ok'], result
        if 'd2det' in config:  # the refined boxes and the mask scores were compared too
            assert result['max_abs_mask_scores'] <= 1e-4
        assert result['mask_pixels_differing_off_ties'] == 0
        kept.append(result['kept_onnx'])
        assert result['kept_onnx'] > 0
    if score_thr is not None:  # the padding path: fewer real detections than slots
        assert max(kept) < model.test_cfg.rcnn.max_per_img, kept


# --------------------------------------------------------------------------- methods added since
# (demo configs at 64 px, seeded random weights): network mode; the graph's onnxruntime outputs
# post-processed with the method's own PyTorch function (insplug.deploy.networks.postprocess)
# give the model's ``predict`` detections
NETWORK_METHODS = {
    'deepmask': 'configs/deepmask/deepmask_r18_shapes.py',
    'sharpmask': 'configs/deepmask/sharpmask_r18_shapes.py',
    'instancefcn': 'configs/instancefcn/instancefcn_r18_shapes.py',
    'rsis': 'configs/demo/rsis_r18_shapes.py',
    'ris': 'configs/demo/ris_r18_shapes.py',
    'recurrent_embedding': 'configs/demo/recurrent_embedding_erfnet_shapes.py',
    'metric_seediness': 'configs/demo/metric_seediness_erfnet_shapes.py',
    'boxcaseg': 'configs/boxcaseg/boxcaseg_hrnet_tiny_shapes.py',
}


def _predict_with_boxes(model, image, boxes=None):
    """``_predict`` with ground-truth boxes in the sample (BoxCaseg segments given boxes)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    h, w = image.shape[-2:]
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    if boxes is not None:
        sample.gt_instances = InstanceData(bboxes=boxes.float(),
                                           labels=torch.zeros(len(boxes), dtype=torch.long))
    data = model.data_preprocessor(
        dict(inputs=[image[0].to(torch.uint8)], data_samples=[sample]), False)
    with torch.no_grad():
        return model.predict(data['inputs'], data['data_samples'])[0].pred_instances


# CI time: fewer pyramid scales / proposals / recurrent steps than the demo configs (the graph
# and the post-processing are the same code for any number)
NETWORK_CFG_OPTIONS = {
    'deepmask': {'model.test_cfg.smin': -0.5, 'model.test_cfg.smax': 0.0,
                 'model.test_cfg.num_proposals': 20},
    'sharpmask': {'model.test_cfg.smin': -0.5, 'model.test_cfg.smax': 0.0,
                  'model.test_cfg.num_proposals': 20},
    'instancefcn': {'model.test_cfg.scales': (2 ** -0.5, 1.0), 'model.test_cfg.pre_nms': 30},
    # keep every step (a random network's stop / step scores are ~0.5)
    'rsis': {'model.head.max_steps': 4, 'model.head.test_cfg.stop_thr': 0.0},
    'ris': {'model.head.test_cfg.max_steps': 4},
}


@pytest.mark.parametrize('method', sorted(NETWORK_METHODS))
def test_network_export_postprocess_matches_predict(tmp_path, method):
    from insplug.deploy import networks
    model = ox.build_model(osp.join(REPO, NETWORK_METHODS[method]),
                           cfg_options=NETWORK_CFG_OPTIONS.get(method), seed=0)
    shape = (64, 64)
    path = str(tmp_path / f'{method}.onnx')
    report = ox.export_onnx(model, shape, path, mode='auto')
    assert report['mode'] == 'network' and report['ok'], report  # no full mode for these
    assert max(report['max_abs_outputs']) <= 1e-4
    print(method, 'max abs', max(report['max_abs_outputs']))
    wrapper = (networks.network_wrapper_class(model) or ox.NetworkOnly)(model, shape)
    inputs = ox._network_inputs(wrapper, shape, seed=2)
    names = list(getattr(wrapper, 'input_names', ['inputs']))
    onnx_outs = ox.run_onnxruntime(path, {n: t.numpy() for n, t in zip(names, inputs)})
    boxes = inputs[1] if len(inputs) > 1 else None
    dets = networks.postprocess(model, onnx_outs, shape, boxes)
    ref = _predict_with_boxes(model, ox.random_image(shape, seed=2), boxes)
    print(method, 'kept', len(ref.scores), len(dets['scores']))
    assert len(dets['scores']) == len(ref.scores) > 0
    np.testing.assert_array_equal(dets['labels'].numpy(), ref.labels.numpy())
    np.testing.assert_allclose(dets['scores'].numpy(), ref.scores.numpy(), rtol=0, atol=1e-4)
    differ = int((dets['masks'].numpy() != ref.masks.numpy()).sum())
    print(method, 'mask pixels differing', differ)
    assert differ == 0


@pytest.mark.parametrize('config', ['configs/demo/prm_r18_shapes.py',
                                    'configs/demo/countseg_r18_shapes.py'])
def test_prm_countseg_export_maps_only(tmp_path, config):
    """PRM / CountSeg: the class response (and density) maps export; the instances need peak
    back-propagation (a backward pass), which the report names and post-processing refuses."""
    from insplug.deploy import networks
    model = ox.build_model(osp.join(REPO, config), seed=0)
    path = str(tmp_path / 'prm.onnx')
    report = ox.export_onnx(model, (64, 64), path, mode='auto')
    assert report['mode'] == 'network' and report['ok'] and osp.isfile(path)
    assert max(report['max_abs_outputs']) <= 1e-4
    assert 'peak back-propagation' in report['not_in_graph']
    with torch.no_grad():
        maps = model._forward(torch.zeros(1, 3, 64, 64))
    with pytest.raises(NotImplementedError, match='peak back-propagation'):
        networks.postprocess(model, ox.flatten_outputs(maps), (64, 64))


@pytest.mark.parametrize('config,name', [
    ('configs/demo/fcis_r18_shapes.py', 'FCIS'),
    ('configs/demo/zsi_r18_shapes.py', 'ZSIMaskRCNN'),
    # D2Det's official setting: mmdet 1.x's legacy anchors and RPN decoding
    ('configs/d2det/d2det_instance_r101_fpn_2x_coco.py', 'MaskRCNN')])
def test_untraceable_two_stage_export_is_refused(tmp_path, config, name):
    """RPN + RoI-head models without a traceable wrapper (FCIS, ZSI, D2Det with the legacy
    RPN) are refused with the reason named, before tracing, and no file is written."""
    model = ox.build_model(osp.join(REPO, config), seed=0)
    path = tmp_path / 'two_stage.onnx'
    with pytest.raises(ox.OnnxExportError, match=f'{name} .*blocked: two-stage'):
        ox.export_onnx(model, (64, 64), str(path))
    assert not path.exists()


def test_recurrent_attention_full_export_matches_predict(tmp_path):
    """Recurrent attention, pre-processing to kept instances in one graph (the network and
    ``instances_from_steps`` traced; the kept steps are a boolean index): with a score threshold
    between the steps' scores, onnxruntime keeps the same steps as ``predict`` (masks, scores,
    labels) on images other than the tracing one, and the count varies with the image."""
    from insplug.deploy.networks import PipelineFull, compare_pipeline
    model = ox.build_model(osp.join(REPO, 'configs/demo/recurrent_attention_shapes.py'),
                           cfg_options={'model.net.timespan': 4}, seed=0)
    shape = (64, 64)
    wrapper = PipelineFull(model, shape).eval()
    with torch.no_grad():
        scores = torch.cat([wrapper.raw(ox.random_image(shape, s))[1].flatten()
                            for s in (1, 2, 3)]).sort().values
    # the widest gap in the middle half of the steps' scores: no tie at the threshold
    n = len(scores)
    gaps = scores[n // 4 + 1:3 * n // 4 + 1] - scores[n // 4:3 * n // 4]
    half = n // 4 + 1 + int(gaps.argmax())
    model.test_cfg['score_thr'] = float(scores[half - 1] + scores[half]) / 2
    path = str(tmp_path / 'recurrent_attention.onnx')
    report = ox.export_onnx(model, shape, path, mode='auto')
    assert report['mode'] == 'full' and report['ok'], report
    assert max(report['max_abs_outputs']) <= 1e-4
    kept = []
    for seed in (2, 3):
        image = ox.random_image(shape, seed)
        onnx_outs = ox.run_onnxruntime(path, {'image': image.numpy()})
        with torch.no_grad():
            result = compare_pipeline(wrapper.raw(image), onnx_outs, wrapper.reference(image))
        assert result['ok'] and result.get('mask_pixels_differing', 0) == 0, result
        kept.append(result['kept_onnx'])
    kept.append(report['kept_onnx'])  # image seed 1
    assert len(set(kept)) > 1, kept  # the number kept follows the image: not frozen


def test_full_mode_names_the_blocking_op(tmp_path):
    """``mode='full'`` on a method whose pipeline does not trace names the op (RIS: cumprod in
    the stop rule) and writes nothing; ``auto`` gives its network."""
    model = ox.build_model(osp.join(REPO, 'configs/demo/ris_r18_shapes.py'),
                           cfg_options={'model.head.test_cfg.max_steps': 3}, seed=0)
    path = tmp_path / 'ris.onnx'
    with pytest.raises(ox.OnnxExportError, match='cumprod'):
        ox.export_onnx(model, (64, 64), str(path), mode='full')
    assert not path.exists()
