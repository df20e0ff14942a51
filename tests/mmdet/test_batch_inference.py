"""Every demo config predicts a batch of 4 differently sized images exactly as 4 batch-1 runs.

Random (seeded) weights, forced detections (score threshold 0, up to 30 per image), 4 images
of different sizes and different original sizes (so each has its own ``img_shape``,
``ori_shape`` and ``scale_factor``). The batch goes through the model's data pre-processor,
which pads it to one ``batch_input_shape``; each batch-1 run predicts on its image's slice of
that same padded tensor with its own data sample. (Padding an image to another size changes
the backbone features near its border, in any batched detector, so the batch-1 runs see the
batch's padding: what is checked is that the predict path keeps each image's detections,
boxes, scale and masks to itself.) Compared: the number of detections and labels (exact),
scores and mask scores (1e-5 abs), boxes (1e-3 px abs), masks (at most 1e-4 of the pixels,
the odd one at the 0.5 threshold, differ).

The models run in float64 where all their ops take it: in float32, a batched convolution may
round differently from a batch-1 one (SparseInst's mask logits differ by up to 3e-5), which
can flip a mask pixel lying at the threshold. Models with float-only mmcv ops (RoIAlign: the
two-stage Mask R-CNN, PointRend, RefineMask) run in float32.
"""
import copy
import json
import glob
import os.path as osp

import numpy as np
import pytest
import torch

from insplug.cli.benchmark import force_detections

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'demo', '*.py')))
SIZES = [(64, 80), (48, 64), (72, 56), (40, 40)]  # (h, w) of the 4 images, as resized
# Demo configs whose random-weight model finds no instance in the noise images of this test,
# however the thresholds are forced: the batch and batch-1 runs are still compared (equal
# numbers of detections: none), but nothing else can be. PRM / CountSeg segment only
# class-agnostic proposals of the image (colour regions of flat-coloured objects; noise gives
# none), so their instances come from content, not from thresholds.
NO_INSTANCES_ON_NOISE = {'prm_r18_shapes.py', 'countseg_r18_shapes.py'}
# RIS's release confidence head reads its flattened ConvLSTM state, so the model runs at its
# training input size only: a batch of differently sized images is refused with a clear error.
FIXED_INPUT_SIZE = {'ris_r18_shapes.py': 'RIS confidence over the flattened state'}


def _batch(model):
    from mmdet.structures import DetDataSample
    rng = np.random.RandomState(0)
    inputs, samples = [], []
    for i, (h, w) in enumerate(SIZES):
        inputs.append(torch.from_numpy(rng.randint(0, 256, (3, h, w), dtype=np.uint8)))
        ori_h, ori_w = int(h * 1.5), int(w * 1.25) + i  # rescaled back to different sizes
        samples.append(DetDataSample(metainfo=dict(
            img_id=i, img_shape=(h, w), ori_shape=(ori_h, ori_w),
            scale_factor=(w / ori_w, h / ori_h))))
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)


@pytest.mark.parametrize('config', DEMO_CONFIGS, ids=[osp.basename(c) for c in DEMO_CONFIGS])
def test_batch_of_four_equals_four_single_runs(config):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    import insplug  # noqa: F401
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'insplug'))
    force_detections(cfg.model, 30)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    data = _batch(model)
    assert data['inputs'].shape[0] == 4
    assert len({tuple(s.img_shape) for s in data['data_samples']}) == 4

    def run(x):
        batch = model.predict(x, copy.deepcopy(data['data_samples']))
        singles = [model.predict(x[i:i + 1], [copy.deepcopy(data['data_samples'][i])])[0]
                   for i in range(4)]
        return batch, singles

    name = osp.basename(config)
    if name in FIXED_INPUT_SIZE:
        with torch.no_grad(), pytest.raises(ValueError, match=FIXED_INPUT_SIZE[name]):
            run(data['inputs'])
        return
    with torch.no_grad():
        try:
            model.double()
            batch, singles = run(data['inputs'].double())
        except RuntimeError as error:  # float-only ops (mmcv RoIAlign)
            if 'double' not in str(error).lower():
                raise
            model.float()
            batch, singles = run(data['inputs'].float())
    assert len(batch) == 4
    total = 0
    for i, (b, s) in enumerate(zip(batch, singles)):
        pb, ps = b.pred_instances, s.pred_instances
        msg = f'image {i}'
        assert len(pb) == len(ps), msg
        total += len(pb)
        ori_shape = tuple(data['data_samples'][i].ori_shape)
        assert torch.equal(pb.labels, ps.labels), msg
        torch.testing.assert_close(pb.scores, ps.scores, rtol=0, atol=1e-5, msg=msg)
        torch.testing.assert_close(pb.bboxes, ps.bboxes, rtol=0, atol=1e-3, msg=msg)
        if 'mask_scores' in ps:
            torch.testing.assert_close(pb.mask_scores, ps.mask_scores, rtol=0, atol=1e-5,
                                       msg=msg)
        assert tuple(pb.masks.shape[-2:]) == ori_shape, msg  # each image at its own size
        # the odd pixel at the 0.5 threshold may flip (batched float32 convolutions round
        # differently; seen on one machine: 1 pixel of RefineMask's image 1)
        assert int((pb.masks != ps.masks).sum()) <= max(1, 1e-4 * pb.masks.numel()), msg
    assert total > 0 or name in NO_INSTANCES_ON_NOISE  # something was compared


def test_test_tool_batch_size_gives_the_batch_1_results(demo_data, tmp_path):
    """tools/test.py --batch-size 4 writes the same COCO results as --batch-size 1.

    The real pipeline in float32: the same detections, labels, scores (1e-5) and boxes;
    masks may differ in the odd pixel lying at the threshold (batched float32 convolutions
    round differently; the exact check is the float64 one above): at most 1e-4 of the pixels.
    """
    from pycocotools import mask as mask_utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    import insplug  # noqa: F401
    from insplug.cli.test import main
    config = osp.join(REPO, 'configs', 'demo', 'sparseinst_r18_shapes.py')
    cfg = Config.fromfile(config)
    init_default_scope('insplug')
    torch.manual_seed(0)
    ckpt = tmp_path / 'random.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta=dict()), ckpt)
    root = demo_data['root']
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            f'test_evaluator.ann_file={root}val/annotations.json',
            'model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=10']
    results, metrics = {}, {}
    for batch_size in (1, 4):
        prefix = tmp_path / f'b{batch_size}' / 'results'
        prefix.parent.mkdir()
        # evaluated (InsplugCocoMetric) and the results kept as COCO json files
        metrics[batch_size] = main(
            [config, str(ckpt), '--batch-size', str(batch_size), '--work-dir',
             str(tmp_path / f'w{batch_size}')] + opts + [f'test_evaluator.outfile_prefix={prefix}'])
        results[batch_size] = {kind: json.loads(open(f'{prefix}.{kind}.json').read())
                               for kind in ('bbox', 'segm')}
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert abs(metrics[1][key] - metrics[4][key]) <= 0.002, (key, metrics)
    assert len(results[1]['segm']) == 10 * 12  # 12 validation images, 10 forced detections
    for kind in ('bbox', 'segm'):
        a = sorted(results[1][kind], key=lambda r: (r['image_id'], -r['score']))
        b = sorted(results[4][kind], key=lambda r: (r['image_id'], -r['score']))
        assert [r['image_id'] for r in a] == [r['image_id'] for r in b]
        assert [r['category_id'] for r in a] == [r['category_id'] for r in b]
        np.testing.assert_allclose([r['score'] for r in a], [r['score'] for r in b], atol=1e-5)
        if kind == 'segm':
            ma = mask_utils.decode([r['segmentation'] for r in a]).astype(bool)
            mb = mask_utils.decode([r['segmentation'] for r in b]).astype(bool)
            assert ma.any() and (ma != mb).sum() <= 1e-4 * ma.size, (ma != mb).sum()
        else:
            np.testing.assert_allclose([r['bbox'] for r in a], [r['bbox'] for r in b], atol=1e-3)


def test_test_tool_sets_the_test_batch_size():
    from insplug.cli.test import configure, parse_args
    config = osp.join(REPO, 'configs', 'demo', 'refinemask_r18_shapes.py')
    assert configure(parse_args([config, 'x.pth'])).test_dataloader.batch_size == 4  # config's
    assert configure(parse_args([config, 'x.pth', '--batch-size', '3'])
                     ).test_dataloader.batch_size == 3
    with pytest.raises(SystemExit):
        configure(parse_args([config, 'x.pth', '--batch-size', '0']))
