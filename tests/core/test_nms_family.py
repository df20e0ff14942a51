"""NMS family (insplug.core.postprocess.nms) against hand-worked cases and brute-force loops."""
import math

import pytest
import torch
from torchvision.ops import box_iou

from insplug.core.postprocess.nms import (apply_nms, box_nms, fast_nms, mask_iou_matrix,
                                          mask_nms, matrix_nms)


# --------------------------------------------------------------------------- references
def greedy_reference(scores, labels, iou, thr):
    """Sequential greedy NMS with an explicit loop (the textbook algorithm)."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept = []
    for j in order:
        if all(not (labels[i] == labels[j] and iou[i, j] > thr) for i in kept):
            kept.append(j)
    return kept


def fast_reference(scores, labels, boxes, thr, top_k):
    """Fast NMS per class with loops: candidate j (rank r < top_k in its class) is kept iff
    no higher-ranked candidate of its class -- kept or not -- overlaps it by more than thr."""
    kept = []
    for c in labels.unique().tolist():
        idx = [i for i in scores.argsort(descending=True).tolist() if labels[i] == c][:top_k]
        for r, j in enumerate(idx):
            if all(float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) <= thr for i in idx[:r]):
                kept.append(j)
    return sorted(kept, key=lambda i: -float(scores[i]))


def chain_boxes():
    """A-B and B-C overlap (IoU 0.4286 = 60/140), A-C barely (IoU 20/180 = 0.111)."""
    return torch.tensor([[0., 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])


def rasterise(boxes, size=20):
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[k, y1:y2, x1:x2] = True
    return masks


def random_boxes(n, gen, extent=200.0):
    xy = torch.rand(n, 2, generator=gen) * extent
    wh = torch.rand(n, 2, generator=gen) * 40 + 2
    return torch.cat([xy, xy + wh], 1)


# --------------------------------------------------------------------------- Fast NMS
def test_fast_nms_hand_built_chain_differs_from_greedy():
    boxes = chain_boxes()
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    keep, out = fast_nms(scores, labels, boxes, iou_thr=0.3)
    # B is suppressed by A; C is suppressed by the already-suppressed B (Fast NMS relaxation)
    assert keep.tolist() == [0]
    assert torch.equal(out, torch.tensor([0.9]))
    # greedy NMS keeps C because its only suppressor B was removed
    keep_g, _ = box_nms(scores, labels, boxes, iou_thr=0.3)
    assert keep_g.tolist() == [0, 2]
    # above the chain IoU nothing is suppressed
    assert fast_nms(scores, labels, boxes, iou_thr=0.5)[0].tolist() == [0, 1, 2]


def test_fast_nms_is_per_class_and_obeys_top_k_and_max_num():
    boxes = torch.cat([chain_boxes(), chain_boxes()[:1]])  # D duplicates A
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    labels = torch.tensor([0, 0, 0, 1])
    keep, out = fast_nms(scores, labels, boxes, iou_thr=0.3)
    assert keep.tolist() == [3, 0]  # D (other class) survives its IoU-1 overlap with A
    assert torch.allclose(out, torch.tensor([0.95, 0.9]))
    # class-agnostic: D suppresses A, which still suppresses B; B still suppresses C
    assert fast_nms(scores, labels, boxes, iou_thr=0.3, class_agnostic=True)[0].tolist() == [3]
    # top_k=2 per class drops C before the IoU test; iou_thr 0.5 keeps A and B
    assert fast_nms(scores, labels, boxes, iou_thr=0.5, top_k=2)[0].tolist() == [3, 0, 1]
    assert fast_nms(scores, labels, boxes, iou_thr=0.5, max_num=2)[0].tolist() == [3, 0]


def test_fast_nms_with_masks_matches_boxes_on_rasterised_boxes():
    boxes = chain_boxes()
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    for thr in (0.05, 0.3, 0.5):
        a = fast_nms(scores, labels, boxes, iou_thr=thr)[0]
        b = fast_nms(scores, labels, masks=rasterise(boxes), iou_thr=thr, use_masks=True)[0]
        assert torch.equal(a, b)


def test_fast_nms_thousands_against_loop_reference():
    gen = torch.Generator().manual_seed(0)
    n = 2000
    boxes = random_boxes(n, gen)
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, 4, (n,), generator=gen)
    keep, out = fast_nms(scores, labels, boxes, iou_thr=0.5, top_k=120)
    ref = fast_reference(scores, labels, boxes, 0.5, 120)
    assert keep.tolist() == ref
    assert torch.equal(out, scores[keep])
    assert len(ref) < 4 * 120  # the top_k cut and suppression both acted


# --------------------------------------------------------------------------- Matrix NMS
def matrix_case():
    """Four masks on a 1 x 8 strip. m0={0,1,2}, m1={1,2,3}, m2={3,4,5} (label 0), m3 = m0 with
    label 1. IoU(m0,m1) = 2/4, IoU(m1,m2) = 1/5, IoU(m0,m2) = 0."""
    masks = torch.zeros(4, 1, 8, dtype=torch.bool)
    for k, pix in enumerate([(0, 1, 2), (1, 2, 3), (3, 4, 5), (0, 1, 2)]):
        masks[k, 0, list(pix)] = True
    return masks, torch.tensor([0.9, 0.8, 0.7, 0.85]), torch.tensor([0, 0, 0, 1])


def test_matrix_nms_linear_hand_worked():
    masks, scores, labels = matrix_case()
    keep, out = matrix_nms(scores, labels, masks=masks, kernel='linear')
    # m1: min over i<1 of (1 - 0.5)/(1 - 0) = 0.5 -> 0.4
    # m2: i=0: (1 - 0)/1 = 1; i=1: (1 - 0.2)/(1 - 0.5) = 1.6 -> 1 -> 0.7 ; m3 alone in class 1
    assert keep.tolist() == [0, 3, 2, 1]
    assert torch.allclose(out, torch.tensor([0.9, 0.85, 0.7, 0.4]))
    keep, out = matrix_nms(scores, labels, masks=masks, kernel='linear', filter_thr=0.5)
    assert keep.tolist() == [0, 3, 2]
    # class-agnostic: m3 (0.85, rank 2) overlaps m0 fully -> (1 - 1)/(1 - 0) = 0
    keep, out = matrix_nms(scores, labels, masks=masks, kernel='linear', class_agnostic=True)
    assert dict(zip(keep.tolist(), out.tolist()))[3] == pytest.approx(0.0)


def test_matrix_nms_gaussian_hand_worked():
    masks, scores, labels = matrix_case()
    keep, out = matrix_nms(scores, labels, masks=masks, kernel='gaussian', sigma=2.0)
    d1 = math.exp(-2.0 * 0.5 ** 2)  # m1 decayed by m0 (compensation of m0 is 0)
    # m2: i=1 gives exp(-2 (0.2^2 - 0.5^2)) > 1, i=0 gives 1 -> no decay
    assert keep.tolist() == [0, 3, 2, 1]
    assert torch.allclose(out, torch.tensor([0.9, 0.85, 0.7, 0.8 * d1]))


def test_matrix_nms_thousands_against_mmdet():
    from mmdet.models.layers import mask_matrix_nms  # independent implementation
    gen = torch.Generator().manual_seed(1)
    n = 1500
    masks = torch.rand(n, 12, 12, generator=gen) > 0.7
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    for kernel in ('gaussian', 'linear'):
        keep, out = matrix_nms(scores, labels, masks=masks, kernel=kernel, sigma=2.0,
                               nms_pre=1000, filter_thr=0.05, max_num=300)
        ref_scores, _, _, ref_keep = mask_matrix_nms(masks, labels, scores, filter_thr=0.05,
                                                     nms_pre=1000, max_num=300, kernel=kernel,
                                                     sigma=2.0)
        assert torch.equal(keep, ref_keep)
        assert torch.allclose(out, ref_scores, atol=1e-6)


# --------------------------------------------------------------------------- mask / box NMS
def test_mask_nms_hand_chain_is_greedy():
    masks = rasterise(chain_boxes())
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, out = mask_nms(scores, torch.zeros(3, dtype=torch.long), masks=masks, iou_thr=0.3)
    assert keep.tolist() == [0, 2] and torch.equal(out, torch.tensor([0.9, 0.7]))


def test_mask_and_box_nms_match_sequential_greedy_on_random_inputs():
    gen = torch.Generator().manual_seed(2)
    n = 400
    boxes = random_boxes(n, gen, extent=40.0).clamp(max=63)
    masks = rasterise(boxes, size=64)
    scores = torch.rand(n, generator=gen)
    labels = torch.randint(0, 2, (n,), generator=gen)
    iou_m = mask_iou_matrix(masks.flatten(1), masks.flatten(1))
    ref = greedy_reference(scores, labels, iou_m, 0.4)
    assert mask_nms(scores, labels, masks=masks, iou_thr=0.4)[0].tolist() == ref
    iou_b = box_iou(boxes, boxes)
    ref_b = greedy_reference(scores, labels, iou_b, 0.4)
    assert box_nms(scores, labels, boxes, iou_thr=0.4)[0].tolist() == ref_b
    assert len(ref) < n / 2  # suppression actually happened


# --------------------------------------------------------------------------- interface
@pytest.mark.parametrize('method', ['box', 'fast', 'matrix', 'mask'])
def test_empty_inputs(method):
    keep, out = apply_nms(method, torch.zeros(0), torch.zeros(0, dtype=torch.long),
                          boxes=torch.zeros(0, 4), masks=torch.zeros(0, 8, 8, dtype=torch.bool))
    assert keep.shape == (0,) and keep.dtype == torch.long and out.shape == (0,)


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match='masks'):
        matrix_nms(torch.rand(3), torch.zeros(3, dtype=torch.long), boxes=torch.rand(3, 4))
    with pytest.raises(ValueError, match='boxes'):
        fast_nms(torch.rand(3), torch.zeros(3, dtype=torch.long), boxes=torch.rand(2, 4))
    with pytest.raises(ValueError, match='unknown NMS method'):
        apply_nms('soft', torch.rand(1), torch.zeros(1, dtype=torch.long))
