"""NMS-free inference: scoring, maskness rescoring, top-k, crop/resize, boxes from masks."""
import math

import pytest
import torch
from torchvision.ops import masks_to_boxes as tv_masks_to_boxes

from insplug.core.sparseinst.inference import (masks_to_boxes, postprocess_single,
                                               sparseinst_inference)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_masks_to_boxes_hand_worked_and_torchvision():
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True  # rows 1-2, cols 2-4
    masks[1, 5, 7] = True
    boxes = masks_to_boxes(masks)
    assert boxes[0].tolist() == [2, 1, 5, 3]  # x2 / y2 one past the last pixel
    assert boxes[1].tolist() == [7, 5, 8, 6]
    assert boxes[2].tolist() == [0, 0, 0, 0]  # empty mask
    ref = tv_masks_to_boxes(masks[:2].float())  # inclusive corners
    torch.testing.assert_close(boxes[:2], ref + torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)


def test_postprocess_scores_rescoring_and_geometry():
    # 3 queries, 2 classes, 8x8 masks, padded input 32x32 of which the image is 24x32
    cls = torch.tensor([[3.0, -2.0], [-9.0, -9.0], [-1.0, 2.0]])
    obj = torch.tensor([[1.0], [0.0], [0.5]])
    masks = torch.full((3, 8, 8), -6.0)
    masks[0, 0:4, 0:4] = 6.0  # top-left quarter of the padded input
    masks[2, 2:6, 4:8] = 1.0
    res = postprocess_single(cls, obj, masks, pad_shape=(32, 32), img_shape=(24, 32),
                             out_shape=(48, 64), cls_threshold=0.005, mask_threshold=0.45)
    s0 = math.sqrt(sigmoid(3.0) * sigmoid(1.0)) * sigmoid(6.0)  # maskness = sigmoid(6)
    s2 = math.sqrt(sigmoid(2.0) * sigmoid(0.5)) * sigmoid(1.0)
    # query 1: sqrt(sigmoid(-9) * 0.5) = 0.0078 > 0.005 but its mask is empty: maskness 0
    assert res['scores'].tolist() == pytest.approx([s0, s2, 0.0], rel=1e-5)
    assert res['labels'].tolist() == [0, 1, 0]  # queries 0, 2, 1
    assert res['masks'].shape == (3, 48, 64) and res['masks'].dtype == torch.bool
    # query 0 covers input rows 0-15 and cols 0-15 -> x2 in output (input 24x32 -> 48x64)
    assert res['bboxes'][0].tolist() == pytest.approx([0, 0, 32, 32], abs=2)
    # sorted by score: query 2 second, input rows 8-23 (the crop keeps them), cols 16-31
    assert res['bboxes'][1].tolist() == pytest.approx([32, 16, 64, 48], abs=2)
    assert not res['masks'][2].any() and res['bboxes'][2].tolist() == [0, 0, 0, 0]


def test_threshold_topk_and_empty():
    gen = torch.Generator().manual_seed(0)
    cls, obj = torch.randn(10, 3, generator=gen), torch.randn(10, 1, generator=gen)
    masks = torch.randn(10, 4, 4, generator=gen) * 4
    res = postprocess_single(cls, obj, masks, (16, 16), (16, 16), (16, 16), max_per_img=3)
    assert len(res['scores']) == 3
    assert res['scores'].tolist() == sorted(res['scores'].tolist(), reverse=True)
    full = postprocess_single(cls, obj, masks, (16, 16), (16, 16), (16, 16), max_per_img=100)
    assert res['scores'].tolist() == pytest.approx(full['scores'][:3].tolist())
    none = postprocess_single(cls, obj, masks, (16, 16), (12, 16), (30, 40), cls_threshold=1.0)
    assert none['masks'].shape == (0, 30, 40) and none['bboxes'].shape == (0, 4)
    assert none['labels'].shape == (0,) and none['scores'].shape == (0,)


def test_batched_inference_per_image_shapes():
    outputs = dict(cls_logits=torch.randn(2, 5, 3), obj_logits=torch.randn(2, 5, 1),
                   mask_logits=torch.randn(2, 5, 8, 8))
    res = sparseinst_inference(outputs, (32, 32), [(32, 20), (24, 32)], [(64, 40), (12, 16)])
    assert res[0]['masks'].shape[1:] == (64, 40) and res[1]['masks'].shape[1:] == (12, 16)


def test_postprocess_equal_sizes_skips_the_identity_resize():
    """Output size equal to the image size: the masks are those of the release's two resizes
    (the second one, at equal size, is the identity and is skipped)."""
    import torch.nn.functional as F
    from insplug.core.sparseinst.inference import postprocess_single
    gen = torch.Generator().manual_seed(5)
    cls = torch.randn(6, 3, generator=gen)
    obj = torch.randn(6, 1, generator=gen)
    mask = torch.randn(6, 8, 10, generator=gen) * 3
    out = postprocess_single(cls, obj, mask, (32, 40), (32, 40), (32, 40), cls_threshold=0.0)
    scores, labels = torch.sqrt(cls.sigmoid() * obj.sigmoid()).max(-1)
    probs = mask.sigmoid()
    keep_mask = (probs > 0.45).float()
    scores = scores * (probs * keep_mask).sum((1, 2)) / (keep_mask.sum((1, 2)) + 1e-6)
    order = scores.argsort(descending=True)
    up = F.interpolate(probs[order][:, None], size=(32, 40), mode='bilinear',
                       align_corners=False)
    up = F.interpolate(up, size=(32, 40), mode='bilinear', align_corners=False)[:, 0]
    assert torch.equal(out['masks'], up > 0.45)
    assert torch.equal(out['labels'], labels[order])
