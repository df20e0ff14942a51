"""FCIS against golden data of the official MXNet release (msracver/FCIS), recorded by
``tools/official_parity/make_fcis_golden.py`` (3 classes, stand-in 16-channel trunk feature,
the release's head widths, COCO OHEM config).

Compared: the converted weights loaded strictly; the test-time head outputs of both iterations
(class probabilities, box deltas, inside probabilities of the arg-max class) and the
second-iteration RoIs (1e-5 abs); RoI targets (labels, box targets / weights, 21 x 21 masks:
0 differing cells); OHEM selection (identical); mask voting (boxes, scores, 21 x 21 voted masks
1e-5 abs, pasted image masks 0 differing pixels).
"""
import os.path as osp

import pytest
import torch

from insplug.converters import convert_state_dict
from insplug.core.fcis import (FCISHeadNet, fcis_roi_outputs, fcis_roi_targets, mask_voting,
                               ohem_select, parse_boxes, paste_cv2, pick_class, inference_probs)

FIXTURE = osp.join(osp.dirname(__file__), '..', 'fixtures', 'official', 'fcis', 'golden.pt')


@pytest.fixture(scope='module')
def golden():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope='module')
def head(golden):
    sd = {k[len('param/'):]: v.float() for k, v in golden.items() if k.startswith('param/')}
    converted = convert_state_dict('fcis', sd)
    net = FCISHeadNet(16, golden['meta/num_classes']).double()
    head_sd = {k[len('roi_head.head.'):]: v.double() for k, v in converted.items()
               if k.startswith('roi_head.head.')}
    net.load_state_dict(head_sd, strict=True)
    assert {k.split('.')[0] for k in converted} == {'rpn_head', 'roi_head'}
    return net


def test_head_two_iterations(golden, head):
    k = golden['meta/num_classes']
    c5 = torch.relu(golden['test/data'].double())
    height, width = [int(v) for v in golden['test/im_info'][0, :2]]
    rois = golden['test/rois_output'].double()
    half = rois.shape[0] // 2
    cls_prob_ref = golden['test/cls_prob_reshape_output'][0].double()
    bbox_ref = golden['test/bbox_pred_reshape_output'][0].double()
    seg_ref = golden['test/seg_pred_output'].double()
    with torch.no_grad():
        maps = head(c5)
        first = rois[:half]
        cls_score, seg_logits, bbox_pred = fcis_roi_outputs(*maps, first, k)
        cls_prob, mask_prob = inference_probs(cls_score, seg_logits)
        moved = parse_boxes(first[:, 1:], bbox_pred, height, width)
        second = torch.cat([first[:, :1], moved], 1)
        cls2, seg2, bbox2 = fcis_roi_outputs(*maps, second, k)
        cls_prob2, mask_prob2 = inference_probs(cls2, seg2)
    assert (cls_prob - cls_prob_ref[:half]).abs().max() < 1e-5
    assert (bbox_pred - bbox_ref[:half]).abs().max() < 1e-5
    assert (mask_prob - seg_ref[:half, 1]).abs().max() < 1e-5
    assert (moved - rois[half:, 1:]).abs().max() < 1e-3  # pixels, float32 in the release
    assert (cls_prob2 - cls_prob_ref[half:]).abs().max() < 1e-5
    assert (bbox2 - bbox_ref[half:]).abs().max() < 1e-5
    assert (mask_prob2 - seg_ref[half:, 1]).abs().max() < 1e-5
    # the probabilities are not uniform (the comparison is not vacuous)
    assert cls_prob_ref.std() > 0.01 and seg_ref[:, 1].std() > 0.05


def test_roi_targets(golden):
    gt = golden['targets/gt_boxes'].double()
    out = fcis_roi_targets(golden['targets/in_rois'].double(), gt[:, :4], gt[:, 4].long(),
                           golden['targets/gt_masks'].double())
    assert torch.equal(out['rois'].float(), golden['targets/rois'][:, 1:])
    assert torch.equal(out['labels'], golden['targets/labels'].long())
    ref_w = golden['targets/bbox_weights'].double()
    assert torch.equal(out['bbox_weights'], ref_w)
    diff = ((out['bbox_targets'] - golden['targets/bbox_targets'].double()) * ref_w).abs()
    assert diff.max() < 1e-5
    ref_m = golden['targets/mask_targets'][:, 0].double()
    assert torch.equal(out['mask_targets'], ref_m)
    fg = out['labels'] > 0
    assert fg.sum() >= 5 and (ref_m[fg] == 1).any() and (ref_m[fg] == 0).any()


def test_ohem(golden):
    labels = golden['ohem/in_labels'].long()
    seg = golden['ohem/in_seg_pred'].double()
    out_labels, out_masks, out_w = ohem_select(
        golden['ohem/in_cls_score'].double(), seg, golden['ohem/in_bbox_pred'].double(),
        labels, golden['ohem/in_mask_targets'][:, 0].double(),
        golden['ohem/in_bbox_targets'].double(), golden['ohem/in_bbox_weights'].double())
    assert torch.equal(out_labels, golden['ohem/labels'].long())
    assert torch.equal(out_masks, golden['ohem/mask_targets'][:, 0].double())
    assert torch.equal(out_w, golden['ohem/bbox_weights'].double())
    assert (out_labels == -1).sum() == labels.numel() - 128


def test_mask_voting(golden):
    boxes, scores = golden['voting/boxes'], golden['voting/scores']
    masks = golden['voting/masks']
    h, w = golden['targets/gt_masks'].shape[-2:]
    out_boxes, out_masks, out_labels, out_scores = mask_voting(boxes, masks, scores, h, w)
    pasted = paste_cv2(out_masks, out_boxes, h, w)
    for c in range(1, golden['meta/num_classes']):
        ref_boxes = golden[f'voting/out_boxes_{c}'].double()
        ref_masks = golden[f'voting/out_masks_{c}'].double()
        ref_image = golden[f'voting/out_image_masks_{c}']
        # gpu_mask_voting (the released config) drops empty / one-pixel-wide results;
        # cpu_mask_voting, which recorded the golden data, keeps them
        valid = (ref_boxes[:, 2] > ref_boxes[:, 0]) & (ref_boxes[:, 3] > ref_boxes[:, 1])
        sel = out_labels == c
        assert sel.sum() == valid.sum() and valid.sum() > 0
        assert torch.equal(out_boxes[sel].double(), ref_boxes[valid, :4])
        assert (out_scores[sel].double() - ref_boxes[valid, 4]).abs().max() < 1e-6
        assert (out_masks[sel].double() - ref_masks[valid]).abs().max() < 1e-5
        assert torch.equal(pasted[sel], ref_image[valid])


def caffe_resnet101_names():
    """Every trunk tensor of the release's caffe ResNet-v1-101 (conv1, res2a..res5c)."""
    blocks = {2: ['a', 'b', 'c'], 3: ['a'] + [f'b{i}' for i in range(1, 4)],
              4: ['a'] + [f'b{i}' for i in range(1, 23)], 5: ['a', 'b', 'c']}
    names = ['conv1_weight'] + [f'bn_conv1_{p}' for p in ('gamma', 'beta', 'moving_mean',
                                                           'moving_var')]
    for stage, letters in blocks.items():
        for letter in letters:
            branches = ['2a', '2b', '2c'] + (['1'] if letter == 'a' else [])
            for br in branches:
                names.append(f'res{stage}{letter}_branch{br}_weight')
                names += [f'bn{stage}{letter}_branch{br}_{p}'
                          for p in ('gamma', 'beta', 'moving_mean', 'moving_var')]
    return names


def test_converter_fills_the_mmdet_resnet101_trunk():
    from mmdet.models.backbones import ResNet
    trunk = ResNet(depth=101, style='caffe', strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                   out_indices=(2, 3))
    want = {f'backbone.{k}' for k in trunk.state_dict() if not k.endswith('num_batches_tracked')}
    names = caffe_resnet101_names()
    official = {f'arg:{n}': torch.zeros(1) for n in names}
    official['arg:fcis_cls_seg_weight'] = torch.zeros(1)
    converted = convert_state_dict('fcis', official)
    assert set(converted) - {'roi_head.head.fcis_cls_seg.weight'} == want
    # the softmax RPN's 2A channels (background block, foreground block) -> per anchor [fg, bg]
    cls = torch.arange(24.0)
    out = convert_state_dict('fcis', {'rpn_cls_score_bias': cls,
                                      'fcis_cls_seg_weight': torch.zeros(1)})
    assert out['rpn_head.rpn_cls.bias'][:4].tolist() == [12.0, 0.0, 13.0, 1.0]


def _mx_array(header, shape_fmt, shape, flag, data):
    import struct
    out = header + struct.pack(f'<I{len(shape)}{shape_fmt}', len(shape), *shape)
    return out + struct.pack('<iii', 1, 0, flag) + data.tobytes()


def test_mxnet_params_reader(tmp_path):
    """The three NDArray headers of MXNet's save format (V2 with storage type, V1, legacy
    32-bit shapes) and the name list, written here byte by byte from the format."""
    import struct

    import numpy as np

    from insplug.converters.fcis import load_mxnet_params
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.0], dtype=np.float64)
    c = np.ones((1, 2), dtype=np.float16)
    body = (_mx_array(struct.pack('<Ii', 0xF993FAC9, 0), 'q', a.shape, 0, a)
            + _mx_array(struct.pack('<I', 0xF993FAC8), 'q', b.shape, 1, b)
            + struct.pack('<I2I', 2, 1, 2) + struct.pack('<iii', 1, 0, 2) + c.tobytes())
    names = [b'arg:fcis_cls_seg_weight', b'aux:bn_conv1_moving_var', b'arg:conv1_weight']
    tail = struct.pack('<Q', 3) + b''.join(struct.pack('<Q', len(n)) + n for n in names)
    path = tmp_path / 'x.params'
    path.write_bytes(struct.pack('<QQQ', 0x112, 0, 3) + body + tail)
    out = load_mxnet_params(str(path))
    assert list(out) == [n.decode() for n in names]
    assert torch.equal(out['arg:fcis_cls_seg_weight'], torch.from_numpy(a))
    assert torch.equal(out['aux:bn_conv1_moving_var'], torch.from_numpy(b))
    assert torch.equal(out['arg:conv1_weight'], torch.from_numpy(c))
