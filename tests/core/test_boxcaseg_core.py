"""BoxCaseg core: the box losses against brute-force references, crops and labels on
hand-worked cases, the pseudo-mask merge and confidence by hand, salient windows."""
import math

import numpy as np
import torch

from insplug.core.boxcaseg.crops import (box_labels_in_windows, broaden_boxes,
                                         crop_and_resize)
from insplug.core.boxcaseg.inference import (mask_box_confidence, merge_instance_masks,
                                             minmax_normalize)
from insplug.core.boxcaseg.loss import mil_projection_loss, pairwise_loss
from insplug.core.boxcaseg.salient import single_object_windows


def _bce(x, y):
    return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))


def test_mil_projection_loss_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 7, generator=g, dtype=torch.float64)
    labels = torch.zeros(2, 1, 5, 7, dtype=torch.float64)
    labels[0, 0, 1:4, 2:5] = 1
    labels[1, 0, 0:2, 0:7] = 1
    terms = []
    for n in range(2):
        for x in range(7):   # columns: max over rows
            terms.append(_bce(float(logits[n, 0, :, x].max()), float(labels[n, 0, :, x].max())))
        for y in range(5):   # rows: max over columns
            terms.append(_bce(float(logits[n, 0, y, :].max()), float(labels[n, 0, y, :].max())))
    ref = sum(terms) / len(terms)
    assert abs(float(mil_projection_loss(logits, labels)) - ref) < 1e-12


def test_pairwise_loss_brute_force():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 4, 6, generator=g, dtype=torch.float64)
    p = logits.sigmoid()
    total = 0.0
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for dy, dx in offsets:
        acc = 0.0
        for n in range(2):
            for y in range(4):
                for x in range(6):
                    yy, xx = y + dy, x + dx
                    q = float(p[n, 0, yy, xx]) if 0 <= yy < 4 and 0 <= xx < 6 else 0.0
                    acc += (float(p[n, 0, y, x]) - q) ** 2
        total += acc / (2 * 4 * 6)
    ref = 0.05 * total / 8
    assert abs(float(pairwise_loss(logits)) - ref) < 1e-12


def test_box_labels_hand_worked():
    box = torch.tensor([[10., 20., 30., 40.]])
    # window equal to the box: every cell inside
    assert box_labels_in_windows(box, box, 4).min() == 1
    # window twice the box around its centre: the central half of the cells
    win = torch.tensor([[0., 10., 40., 50.]])
    lab = box_labels_in_windows(box, win, 8)[0, 0]
    expect = torch.zeros(8, 8)
    expect[2:6, 2:6] = 1
    assert torch.equal(lab, expect)


def test_crop_and_resize_identity_and_half():
    img = torch.arange(2 * 1 * 4 * 6, dtype=torch.float64).view(2, 1, 4, 6)
    win = torch.tensor([[0., 0., 6., 4.]], dtype=torch.float64)
    out = roi = crop_and_resize(img, torch.tensor([1]), win, 4)
    assert out.shape == (1, 1, 4, 4)
    # a 6 x 4 window sampled on 4 x 4 cells: rows exact, columns at (j + 0.5) * 1.5 - 0.5
    full = crop_and_resize(img, torch.tensor([1]), torch.tensor([[0., 0., 4., 4.]],
                                                                dtype=torch.float64), 4)
    assert torch.equal(full[0, 0], img[1, 0, :, :4])
    col = (torch.arange(4, dtype=torch.float64) + 0.5) * 1.5 - 0.5
    ref = img[1, 0, :, 0:1] + col[None]   # the image is linear in x (step 1)
    assert torch.allclose(roi[0, 0], ref)


def test_broaden_boxes_release_formula():
    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[10., 10., 50., 30.], [0., 0., 2., 2.]])
    hw = torch.tensor([[40., 60.], [40., 60.]])
    out = broaden_boxes(boxes, hw, generator=torch.Generator().manual_seed(3))
    rnd = torch.rand((2, 4), generator=g, dtype=torch.float64).tolist()
    for i, (b, r) in enumerate(zip(boxes.tolist(), rnd)):
        cx = (b[0] + b[2]) / 2 + (r[0] * 0.5 - 0.25) * (b[2] - b[0]) / 2
        cy = (b[1] + b[3]) / 2 + (r[1] * 0.5 - 0.25) * (b[3] - b[1]) / 2
        rx, ry = r[2] + 0.5, r[3] + 0.5
        xmin = int(max(0, cx - rx * (b[2] - b[0]) / 2))
        xmax = int(min(60 - 1, cx + rx * (b[2] - b[0]) / 2))
        ymin = int(max(0, cy - ry * (b[3] - b[1]) / 2))
        ymax = int(min(40 - 1, cy + ry * (b[3] - b[1]) / 2))
        if xmax == xmin:
            xmax, xmin = (1, xmin) if xmin == 0 else (xmax, xmin - 1)
        if ymax == ymin:
            ymax, ymin = (1, ymin) if ymin == 0 else (ymax, ymin - 1)
        assert out[i].tolist() == [xmin, ymin, xmax, ymax]


def test_merge_and_confidence_hand_worked():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, 1:9, 1:9] = True          # big box
    masks[1, 4:7, 4:7] = True          # small box inside: wins the overlap
    masks[2] = False                   # empty prediction
    xywh = torch.tensor([[1., 1., 8., 8.], [4., 4., 3., 3.], [0., 0., 2., 2.]])
    merged, conf = merge_instance_masks(masks, xywh)
    assert int(merged[0].sum()) == 64 - 9 and int(merged[1].sum()) == 9
    assert not (merged[0] & merged[1]).any()
    # mask 0 still spans rows/cols 1..8 -> tight box [1, 1, 8, 8] vs gt [1, 1, 9, 9], +1 areas:
    # inter 8 * 8 = 64, union 64 + 81 - 64 = 81
    assert abs(float(conf[0]) - 64 / 81) < 1e-12
    # mask 1: [4, 4, 6, 6] vs [4, 4, 7, 7]: inter 9, union 9 + 16 - 9 = 16
    assert abs(float(conf[1]) - 9 / 16) < 1e-12
    # empty: the release's box [0, 0, 0, 0] vs [0, 0, 2, 2]: inter 1, union 1 + 9 - 1 = 9
    assert abs(float(conf[2]) - 1 / 9) < 1e-12
    assert torch.equal(mask_box_confidence(merged, xywh), conf)


def test_merge_equal_areas_earlier_annotation_wins():
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 0:4, 0:4] = True
    masks[1, 2:6, 2:6] = True
    xywh = torch.tensor([[0., 0., 4., 4.], [2., 2., 4., 4.]])
    merged, _ = merge_instance_masks(masks, xywh)
    assert merged[0, 2:4, 2:4].all() and not merged[1, 2:4, 2:4].any()


def test_minmax_normalize():
    p = torch.tensor([[[0.2, 0.4], [0.6, 1.0]]])
    assert torch.allclose(minmax_normalize(p), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


def test_single_object_windows():
    masks = np.zeros((2, 40, 40), dtype=bool)
    masks[0, 5:15, 5:15] = True
    masks[1, 25:35, 25:35] = True
    boxes = np.array([[5, 5, 10, 10], [25, 25, 10, 10]], dtype=float)
    wins = single_object_windows(masks, boxes, 40, 40, margin=0.2)
    assert wins == [(0, (3, 3, 17, 17)), (1, (23, 23, 37, 37))]
    # a margin reaching the other object rejects both
    assert single_object_windows(masks, boxes, 40, 40, margin=1.2) == []
