"""InstanceFCN core: targets against a per-window / per-object brute force, dense inference
against a per-window, per-cell brute force of the assembling rule, hand-worked cases, loss
gradients (gradcheck)."""
import math

import torch

from insplug.core.instancefcn import (InstanceFCNHead, cell_masks, instancefcn_loss, propose,
                                      sample_windows, select_windows, window_assignment,
                                      window_boxes, window_mask_targets)


def brute_assignment(boxes, h, w, stride, m, ratio, shift, tol):
    out = torch.full((h, w), -1, dtype=torch.long)
    side = m * stride
    for y in range(h):
        for x in range(w):
            cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
            best, best_d = -1, math.inf
            for n, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
                ox, oy = (x1 + x2) / 2, (y1 + y2) / 2
                d = max(x2 - x1, y2 - y1)
                if abs(ox - cx) <= shift * side and abs(oy - cy) <= shift * side and \
                        ratio * side / tol <= d <= ratio * side * tol:
                    dist = (ox - cx) ** 2 + (oy - cy) ** 2
                    if dist < best_d:
                        best, best_d = n, dist
            out[y, x] = best
    return out


def test_assignment_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    for trial in range(5):
        n = 6
        xy = torch.rand(n, 2, generator=g) * 80
        wh = torch.rand(n, 2, generator=g) * 40 + 8
        boxes = torch.cat([xy, xy + wh], 1)
        args = (12, 10, 8, 5, 0.5, 0.2, 1.3)
        got = window_assignment(boxes, 12, 10, 8, 5, obj_ratio=0.5, center_shift=0.2,
                                scale_tolerance=1.3)
        ref = brute_assignment(boxes, *args)
        assert torch.equal(got, ref), trial
        assert (got >= 0).any() or trial  # the first trial has positives


def test_assignment_hand_worked():
    # stride 4, m = 3: window side 12, centre of cell (1, 2) is (10, 6); canonical side 6
    boxes = torch.tensor([[7.0, 3.0, 13.0, 9.0],     # centre (10, 6), side 6: fits cell (1, 2)
                          [0.0, 0.0, 30.0, 30.0]])   # too large everywhere
    a = window_assignment(boxes, 3, 4, 4, 3, obj_ratio=0.5, center_shift=0.1,
                          scale_tolerance=1.2)
    expect = torch.full((3, 4), -1)
    expect[1, 2] = 0
    assert torch.equal(a, expect)


def test_cell_masks_and_window_targets():
    masks = torch.zeros(1, 8, 8)
    masks[0, 0:4, 0:2] = 1  # cell (0, 0) of stride 4 is half covered -> 1; cell (1, 0) -> 0
    masks[0, 4:8, 4:7] = 1  # cell (1, 1): 12/16 -> 1
    cells = cell_masks(masks, 4, 2, 2)
    assert torch.equal(cells, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    t, v = window_mask_targets(cells, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), 3)
    # window centred on (0, 1): rows -1..1, cols 0..2
    assert torch.equal(v[0], torch.tensor([[0, 0, 0], [1, 1, 0], [1, 1, 0]]).bool())
    assert torch.equal(t[0], torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]))


def test_select_windows_equals_per_window_brute_force():
    g = torch.Generator().manual_seed(1)
    k, m, h, w = 3, 5, 6, 7
    inst = torch.randn(k * k, h, w, generator=g, dtype=torch.float64)
    obj = torch.randn(h, w, generator=g, dtype=torch.float64)
    scores, ys, xs, seg = select_windows(inst, obj, m, 10)
    assert torch.allclose(scores, torch.sigmoid(obj.flatten().sort(descending=True).values[:10]))
    for n in range(10):
        for i in range(m):
            for j in range(m):
                y, x = int(ys[n]) - m // 2 + i, int(xs[n]) - m // 2 + j
                c = (i * k // m) * k + (j * k // m)
                ref = torch.sigmoid(inst[c, y, x]) if 0 <= y < h and 0 <= x < w else 0.0
                assert abs(float(seg[n, i, j]) - float(ref)) < 1e-12


def test_window_boxes_and_propose_geometry():
    # one confident window of 3 cells on a stride-4 map at scale 0.5: image box side 24 px
    k, m = 1, 3
    inst = torch.full((1, 5, 5), -10.0)
    inst[0, 1:4, 1:4] = 10.0  # the window centred on (2, 2) is all foreground
    obj = torch.full((5, 5), -5.0)
    obj[2, 2] = 5.0
    box = window_boxes(torch.tensor([2]), torch.tensor([2]), m, 4, 0.5)
    assert torch.equal(box, torch.tensor([[8.0, 8.0, 32.0, 32.0]]))
    masks, scores, boxes = propose([(inst, obj, 0.5)], m, 4, 40, 40, pre_nms=1,
                                   max_per_img=5)
    assert masks.shape == (1, 40, 40) and abs(float(scores[0]) - 1 / (1 + math.exp(-5))) < 1e-6
    # bilinear paste with zero padding (the shared paster): inside the box, the corners
    # (0.5625^2 < 0.5) are cut, nothing outside it
    assert masks[0, 11:29, 8:32].all() and masks[0, 8:32, 11:29].all()
    assert masks[0].sum() == masks[0, 8:32, 8:32].sum() and not masks[0, 8, 8]
    assert torch.equal(boxes, torch.tensor([[8.0, 8.0, 32.0, 32.0]]))


def test_propose_nms_drops_duplicates():
    inst = torch.full((1, 6, 6), 10.0)
    obj = torch.zeros(6, 6)
    obj[2, 2], obj[2, 3] = 3.0, 2.0  # neighbouring windows: mask boxes 12 x 12, offset 4: IoU 0.5 (> 0.4)
    masks, scores, _ = propose([(inst, obj, 1.0)], 3, 4, 24, 24, pre_nms=2, nms_iou=0.4)
    assert masks.shape[0] == 1 and abs(float(scores[0]) - torch.sigmoid(torch.tensor(3.0))) < 1e-6


def test_sampling_ratio():
    a = torch.full((10, 10), -1)
    a[0, :3] = 0
    g = torch.Generator().manual_seed(0)
    idx, is_pos = sample_windows(a, 8, 0.5, g)
    assert idx.numel() == 8 and int(is_pos.sum()) == 3
    assert (a.flatten()[idx[is_pos]] >= 0).all() and (a.flatten()[idx[~is_pos]] < 0).all()
    a[1] = 0
    idx, is_pos = sample_windows(a, 8, 0.5, g)
    assert int(is_pos.sum()) == 4


def test_loss_values_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    k, m, h, w = 2, 3, 4, 5
    inst = torch.randn(1, k * k, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    obj = torch.randn(1, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    assign = torch.full((h, w), -1)
    assign[1, 1] = 0
    cells = (torch.rand(1, h, w, generator=g) > 0.5).float()

    def run(inst, obj):
        torch.manual_seed(0)
        loss = instancefcn_loss(inst, obj, [assign], [cells.double()], m, num_samples=h * w,
                                generator=torch.Generator().manual_seed(0))
        return loss['loss_objectness'] + loss['loss_segment']

    # all 20 windows sampled: objectness = mean BCE over all cells with one positive
    loss = instancefcn_loss(inst, obj, [assign], [cells.double()], m, num_samples=h * w)
    labels = torch.zeros(h, w, dtype=torch.float64)
    labels[1, 1] = 1
    ref_obj = torch.nn.functional.binary_cross_entropy_with_logits(obj[0], labels)
    assert torch.allclose(loss['loss_objectness'], ref_obj)
    # segment: window centred on (1, 1), rows/cols 0..2, cell (i, j) from map (i*2//3, j*2//3)
    terms = []
    for i in range(3):
        for j in range(3):
            c = (i * k // m) * k + (j * k // m)
            terms.append(torch.nn.functional.binary_cross_entropy_with_logits(
                inst[0, c, i, j], cells[0, i, j].double()))
    assert torch.allclose(loss['loss_segment'], torch.stack(terms).mean())
    assert torch.autograd.gradcheck(run, (inst, obj))


def test_head_shapes():
    head = InstanceFCNHead(8, feat_channels=16, k=3, window=7)
    inst, obj = head(torch.randn(2, 8, 9, 10))
    assert inst.shape == (2, 9, 9, 10) and obj.shape == (2, 9, 10)
