"""D2Det core: overlap-map targets against brute force, pooling against hand-worked cases and a
direct reading of the release's kernel, decoding round trips, losses by hand, gradients."""
import math

import torch

from insplug.core.d2det import (D2DetHeadNet, DiscriminativeRoIPool, adaptive_weighted_pool,
                                average_boxes, box_overlap_map, decode_dense, decode_targets,
                                deform_psroi_pool, dense_iou_loss, dense_targets, jitter_boxes,
                                mask_area_ratios, mask_iou_loss, mask_iou_targets,
                                mask_overlap_map)


def _brute_overlap(box, gt, size):
    """Cell (j, i) is 1 iff its centre is >= one cell pitch inside the GT box on every side."""
    x1, y1, x2, y2 = box
    out = torch.zeros(size, size)
    pitch_x, pitch_y = (x2 - x1) / (size - 1), (y2 - y1) / (size - 1)
    for j in range(size):
        for i in range(size):
            cx = x1 + (x2 - x1) * (i + 0.5) / size
            cy = y1 + (y2 - y1) * (j + 0.5) / size
            inside = (cx - gt[0] >= pitch_x and gt[2] - cx >= pitch_x
                      and cy - gt[1] >= pitch_y and gt[3] - cy >= pitch_y)
            out[j, i] = float(inside)
    return out


def test_box_overlap_map_brute_force():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=gen, dtype=torch.float64) * 100
    wh = torch.rand(30, 2, generator=gen, dtype=torch.float64) * 80 + 4
    boxes = torch.cat([xy, xy + wh], 1)
    gts = boxes + torch.randn(30, 4, generator=gen, dtype=torch.float64) * 10
    got = box_overlap_map(boxes, gts, 7)
    for n in range(30):
        assert torch.equal(got[n], _brute_overlap(boxes[n].tolist(), gts[n].tolist(), 7)
                           .to(got.dtype)), n
    assert 0 < got.sum() < got.numel()


def test_box_overlap_map_hand_worked():
    # RoI 0..70 on a 7 x 7 grid: centres 5, 15, ..., 65, pitch 70 / 6; GT 0..70 -> the cells
    # with 11.67 <= centre <= 58.33: centres 15..55 (5 of 7) per axis
    got = box_overlap_map(torch.tensor([[0., 0., 70., 70.]]), torch.tensor([[0., 0., 70., 70.]]),
                          7)[0]
    expect = torch.zeros(7, 7)
    expect[1:6, 1:6] = 1
    assert torch.equal(got, expect)


def test_mask_overlap_map():
    masks = torch.zeros(1, 28, 28)
    masks[0, :, :14] = 1  # left half -> the 7 x 7 map's left 3.5 columns: bilinear 0.5 at col 3
    got = mask_overlap_map(masks, 7)[0]
    assert torch.equal(got[:, :3], torch.ones(7, 3))
    assert torch.equal(got[:, 4:], torch.zeros(7, 3))


def test_targets_decode_round_trip():
    boxes = torch.tensor([[10., 20., 50., 90.], [0., 0., 7., 7.]])
    gts = torch.tensor([[12., 18., 47., 95.], [1., 2., 6., 5.]])
    points, targets = dense_targets(boxes, gts, 7)
    # every cell sees the same GT box
    dec = decode_targets(targets, points)
    assert torch.allclose(dec, gts[:, :, None, None].expand_as(dec), atol=1e-5)
    # normalised predictions equal to the targets / (w, h) decode to the GT box too
    wh = torch.stack([points[:, 2], points[:, 2], points[:, 3], points[:, 3]], 1)
    assert torch.allclose(decode_dense(targets / wh, points), dec, atol=1e-5)
    # and averaging all cells at test time gives the GT box back
    avg = average_boxes(boxes, targets / wh, torch.ones(2, 1, 7, 7))
    assert torch.allclose(avg, gts, atol=1e-3)
    # no cell with a positive overlap logit: the release's (0, 0, 0, 0)
    assert torch.equal(average_boxes(boxes, targets / wh, -torch.ones(2, 1, 7, 7)),
                       torch.zeros(2, 4))


def test_jitter_hand_worked():
    boxes = torch.tensor([[10., 10., 30., 50.]])
    out = jitter_boxes(boxes, torch.tensor([[0.1, -0.1, 0.5, 0.0]]), (40, 100))
    # centre (20, 30) + (2, -4); size (20, 40) * (1.5, 1) -> (7, 6, 37, 46), y2 clamped to H - 1
    assert torch.allclose(out, torch.tensor([[7., 6., 37., 39.]]))


def _kernel_bin(feat, roi, scale, size, k, off=(0.0, 0.0), trans_std=0.0, ph=0, pw=0):
    """One output bin of the release's kernel, read from its description (Python floats)."""
    def c_round(v):
        return math.copysign(math.floor(abs(v) + 0.5), v)
    _, _, height, width = feat.shape
    x_start = c_round(roi[1]) * scale - 0.5
    y_start = c_round(roi[2]) * scale - 0.5
    roi_w = max((c_round(roi[3]) + 1) * scale - 0.5 - x_start, 0.1)
    roi_h = max((c_round(roi[4]) + 1) * scale - 0.5 - y_start, 0.1)
    bw, bh = roi_w / size, roi_h / size
    ws = pw * bw + x_start + off[0] * trans_std * roi_w
    hs = ph * bh + y_start + off[1] * trans_std * roi_h
    acc, count = torch.zeros(feat.shape[1], dtype=feat.dtype), 0
    for ih in range(k):
        for iw in range(k):
            w, h = ws + iw * bw / k, hs + ih * bh / k
            if w < -0.5 or w > width - 0.5 or h < -0.5 or h > height - 0.5:
                continue
            w, h = min(max(w, 0.0), width - 1.0), min(max(h, 0.0), height - 1.0)
            x1, y1 = math.floor(w), math.floor(h)
            x2, y2 = math.ceil(w), math.ceil(h)
            dx, dy = w - x1, h - y1
            m = feat[int(roi[0])]
            acc += ((1 - dx) * (1 - dy) * m[:, y1, x1] + (1 - dx) * dy * m[:, y2, x1]
                    + dx * (1 - dy) * m[:, y1, x2] + dx * dy * m[:, y2, x2])
            count += 1
    return acc / count if count else acc


def test_deform_psroi_pool_kernel_reading():
    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 2.5, 3.5, 30.0, 20.0], [1, -9.0, 4.0, 50.0, 45.0],
                         [1, 20.0, 20.0, 20.0, 20.0]], dtype=torch.float64)
    offset = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    for k in (1, 2):
        got = deform_psroi_pool(feat, rois, offset, 0.25, 3, 3, k, 0.5)
        for r in range(3):
            for ph in range(3):
                for pw in range(3):
                    ref = _kernel_bin(feat, rois[r].tolist(), 0.25, 3, k,
                                      offset[r, :, ph, pw].tolist(), 0.5, ph, pw)
                    assert torch.allclose(got[r, :, ph, pw], ref, atol=1e-12), (k, r, ph, pw)


def test_deform_psroi_pool_constant_map_and_outside():
    feat = torch.full((1, 2, 6, 6), 3.0)
    rois = torch.tensor([[0, 0.0, 0.0, 20.0, 20.0], [0, 200.0, 200.0, 260.0, 260.0]])
    out = deform_psroi_pool(feat, rois, None, 0.25, 2, 2, 2)
    assert torch.equal(out[0], torch.full((2, 2, 2), 3.0))
    assert torch.equal(out[1], torch.zeros(2, 2, 2))  # every sample outside: 0


def test_adaptive_weighted_pool_hand_worked():
    x = torch.arange(9.).view(1, 1, 3, 3)
    # equal weights: the mean over the valid part of each 3 x 3 window (padding cancels)
    out = adaptive_weighted_pool(x, torch.zeros_like(x))
    assert torch.allclose(out[0, 0], torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    # a dominant weight picks its position
    logits = torch.zeros_like(x)
    logits[0, 0, 1, 1] = 50.0
    assert torch.allclose(adaptive_weighted_pool(x, logits)[0, 0], torch.full((2, 2), 4.0))


def test_discriminative_pool_gradients():
    torch.manual_seed(0)
    layer = DiscriminativeRoIPool(0.5, out_size=1, out_channels=1, sample_per_part=2,
                                  deform_fc_channels=2).double()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    feat = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.2, 2.3, 7.1, 8.7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: layer(f, rois), (feat,), atol=1e-6)


def test_mask_area_ratios_brute_force():
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(3, 20, 30, generator=gen) > 0.6
    boxes = torch.tensor([[2.7, 3.2, 15.9, 12.1], [0.0, 0.0, 29.0, 19.0], [10.5, 5.5, 40.0, 30.0],
                          [5.0, 5.0, 5.0, 5.0]])
    inds = torch.tensor([0, 1, 2, 0])
    got = mask_area_ratios(boxes, masks, inds)
    for n in range(4):
        x1, y1, x2, y2 = [int(v) for v in boxes[n].tolist()]
        m = masks[inds[n]]
        ref = m[y1:y2 + 1, x1:x2 + 1].sum().item() / (m.sum().item() + 1e-7)
        assert abs(got[n].item() - ref) < 1e-6


def test_mask_iou_targets_hand_worked():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1                     # 8 pixels inside the RoI, half of the instance
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :, :2] = 0.6                # 8 predicted pixels (logit > 0.5), 4 overlapping
    iou = mask_iou_targets(logits, target, torch.tensor([0.5]))
    assert torch.allclose(iou, torch.tensor([4 / (8 + 16 - 4)]), atol=1e-6)


def test_losses_hand_worked():
    pred = torch.tensor([[0., 0., 9., 9.]]).view(1, 4, 1, 1)
    target = torch.tensor([[0., 0., 4., 9.]]).view(1, 4, 1, 1)
    # +1 widths: IoU = 50 / 100
    loss = dense_iou_loss(pred, target, torch.ones(1, 1, 1))
    assert torch.allclose(loss, torch.tensor(2.0 * math.log(2.0)))
    # IoU below 0.1 gets +0.1
    far = torch.tensor([[0., 0., 0., 9.]]).view(1, 4, 1, 1)  # IoU 10 / 100 = 0.1 -> 0.2
    assert torch.allclose(dense_iou_loss(pred, far, torch.ones(1, 1, 1)),
                          torch.tensor(-2.0 * math.log(0.2)))
    # no positive weight: 0 with a graph
    p = pred.clone().requires_grad_()
    zero = dense_iou_loss(p, target, torch.zeros(1, 1, 1))
    assert zero.item() == 0 and zero.requires_grad
    # release broadcast: mean(loss) * mean(weight) over two cells
    pred2 = torch.cat([pred, pred], 2)
    tgt2 = torch.cat([target, pred], 2)
    w = torch.tensor([[[0.], [1.]]])
    assert torch.allclose(dense_iou_loss(pred2, tgt2, w.view(1, 2, 1), release_broadcast=True),
                          torch.tensor(2.0 * math.log(2.0) / 2 * 0.5))
    assert torch.allclose(dense_iou_loss(pred2, tgt2, w.view(1, 2, 1)), torch.tensor(0.0),
                          atol=1e-6)
    iou_pred, iou_t = torch.tensor([0.5, 0.2]), torch.tensor([0.7, 0.05])
    assert torch.allclose(mask_iou_loss(iou_pred, iou_t), torch.tensor(0.5 * 0.04 / 2))
    assert torch.allclose(mask_iou_loss(iou_pred, iou_t, release_broadcast=True),
                          torch.tensor(0.5 * (0.04 + 0.0225) / 2 * 0.5))


def test_head_shapes_and_detached_mask_input():
    net = D2DetHeadNet(in_channels=4, num_convs=2, conv_channels=8, num_groups=2, num_classes=3,
                       deconv_channels=4, deconv_groups=2, fc_channels=8)
    x = torch.randn(5, 4, 14, 14)
    reg, overlap, feats = net(x)
    assert reg.shape == (5, 4, 7, 7) and bool((reg >= 0).all()) and overlap.shape == (5, 1, 7, 7)
    masks, iou = net.forward_mask(feats, torch.tensor([0, 1, 2, 0, 1]))
    assert masks.shape == (5, 3, 28, 28) and iou.shape == (5, 3)
    # the mask-IoU branch does not back-propagate into the mask logits (release: .detach())
    iou.sum().backward()
    assert net.mask_logits.weight.grad is None or not net.mask_logits.weight.grad.any()
