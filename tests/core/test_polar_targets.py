"""PolarMask maths (the official release's rules): ray order, largest contour and integer
centroid, +1 assignment, the ray search against a plain-Python transcription of the rule, the
one-call polygon fill against OpenCV per polygon, +1 NMS and the losses, hand-worked."""
import math

import cv2
import numpy as np
import pytest
import torch

from insplug.core.losses.polar_iou import (legacy_box_iou_loss, legacy_box_ious, polar_iou_loss,
                                           polar_iou_loss_per_point)
from insplug.core.polarmask.inference import (decode_contours, draw_polygons, nms_plus_one,
                                              rays_to_polygons)
from insplug.core.polarmask.targets import (largest_contours, official_ray_order, polar_assign,
                                            polar_centerness, polar_ray_targets, ray_angles)


def test_official_ray_order_maps_directions_and_is_an_involution():
    order = official_ray_order(36)
    phi = ray_angles(36, dtype=torch.float64)
    theta = torch.arange(36, dtype=torch.float64) * math.radians(10)
    insplug_dir = torch.stack((phi.cos(), phi.sin()), 1)
    official_dir = torch.stack((theta.sin(), theta.cos()), 1)  # release: x = d sin, y = d cos
    assert torch.allclose(insplug_dir, official_dir[order], atol=1e-12)
    assert torch.equal(order[order], torch.arange(36))
    with pytest.raises(ValueError):
        official_ray_order(30)


def test_largest_contour_ignores_holes_and_smaller_parts():
    m = np.zeros((3, 60, 80), np.uint8)
    m[0, 10:40, 10:50] = 1
    m[0, 20:30, 20:30] = 0                        # hole: no contour pixel inside the object
    m[1, 5:15, 5:15] = 1                          # small part
    m[1, 30:50, 40:70] = 1                        # larger part
    m[2, 5, 5:25] = 1                             # one-pixel line: zero polygon area
    centers, valid, xy, obj = largest_contours(m)
    assert valid.all()
    pts0 = xy[obj == 0]
    assert not ((pts0[:, 0] > 12) & (pts0[:, 0] < 47) & (pts0[:, 1] > 12) & (pts0[:, 1] < 37)).any()
    assert pts0[:, 0].min() == 10 and pts0[:, 0].max() == 49
    pts1 = xy[obj == 1]
    assert pts1[:, 0].min() == 40 and pts1[:, 1].min() == 30      # only the larger part
    # rectangle [10, 49] x [10, 39] of pixel centres: centroid (29.5, 24.5) -> (29, 24)
    assert centers[0].tolist() == [29.0, 24.0]
    # [40, 69] x [30, 49]: (54.5, 39.5) -> (54, 39)
    assert centers[1].tolist() == [54.0, 39.0]
    # zero-area contour: mean of its points (traced forth and back), truncated
    line = xy[obj == 2]
    assert centers[2].tolist() == [float(int(line[:, 0].double().mean())), 5.0]
    c, v, xy_e, _ = largest_contours(np.zeros((1, 10, 10), np.uint8))
    assert not v[0] and xy_e.shape == (0, 2)


def test_polar_assign_uses_plus_one_areas_and_strict_sampling_square():
    # plain areas prefer A (2 * 60 = 120 < 11 * 11 = 121); +1 areas prefer B (144 < 183)
    boxes = torch.tensor([[0., 0., 2., 60.], [0., 0., 11., 11.]])
    centers = torch.tensor([[1., 5.], [1., 5.]])
    pts = torch.tensor([[1., 5.], [1., 17.], [1., 16.9]])
    idx = polar_assign(pts, torch.full((3,), 8.), torch.tensor([[-1., 1e8]] * 3), boxes, centers)
    # (1, 17) lies on the sampling square's edge (5 + 1.5 * 8): strict test -> background
    assert idx.tolist() == [1, -1, 0]
    off = polar_assign(pts[:1], torch.full((1,), 8.), torch.tensor([[-1., 1e8]]), boxes, centers,
                       valid=torch.tensor([False, True]))
    assert off.tolist() == [1]
    ranged = polar_assign(pts[:1], torch.full((1,), 8.), torch.tensor([[-1., 5.]]), boxes,
                          centers)
    assert ranged.tolist() == [-1]          # max side distance 55 / 10 > 5


def reference_rays(px, py, contour):
    """The release's search written out plainly (float32 as the release): integer angles of
    atan2(dx, dy), then 10k, 10k+1, 10k-1, ..., 10k-3; 1e-6 when none."""
    x = torch.tensor(contour[:, 0], dtype=torch.float32) - torch.tensor(px, dtype=torch.float32)
    y = torch.tensor(contour[:, 1], dtype=torch.float32) - torch.tensor(py, dtype=torch.float32)
    angle = torch.atan2(x, y) * 180 / np.pi
    angle[angle < 0] += 360
    angle = angle.int().tolist()
    dist = torch.sqrt(x ** 2 + y ** 2).tolist()
    out = []
    for k in range(36):
        value = 1e-6
        for off in (0, 1, -1, 2, -2, 3, -3):
            hits = [d for a, d in zip(angle, dist) if a == 10 * k + off]
            if hits:
                value = max(hits)
                break
        out.append(value)
    return torch.tensor(out, dtype=torch.float32)


def test_ray_targets_match_the_plain_search_rule():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    masks = np.stack([((xx - 40) ** 2 / 900 + (yy - 50) ** 2 / 400 <= 1),
                      ((xx > 70) & (xx < 120) & (yy > 10) & (yy < 90) & ~((xx > 85) & (yy < 70)))
                      ]).astype(np.uint8)          # an ellipse and a U (centre outside)
    centers, valid, xy, obj = largest_contours(masks)
    pts = torch.tensor(rng.uniform([10, 10], [120, 90], (12, 2)), dtype=torch.float32).round()
    gt = torch.tensor([0] * 6 + [1] * 6)
    got = polar_ray_targets(pts, gt, xy, obj)[:, official_ray_order(36)]
    for i in range(len(pts)):
        contour = xy[obj == gt[i]].numpy()
        ref = reference_rays(float(pts[i, 0]), float(pts[i, 1]), contour)
        assert torch.equal(got[i], ref), i
    assert (got == 1e-6).any()              # points far outside see few directions
    # small chunks give the same result
    assert torch.equal(polar_ray_targets(pts, gt, xy, obj, chunk=50),
                       polar_ray_targets(pts, gt, xy, obj))
    assert polar_ray_targets(pts[:0], gt[:0], xy, obj).shape == (0, 36)


def test_ray_targets_of_a_square_hand_worked():
    m = np.zeros((1, 60, 60), np.uint8)
    m[0, 20:41, 10:51] = 1                   # x in [10, 50], y in [20, 40]
    _, _, xy, obj = largest_contours(m)
    rays = polar_ray_targets(torch.tensor([[30., 30.]]), torch.tensor([0]), xy, obj)[0]
    # insplug ray 0 points to +x: the farthest contour pixel at exactly 0 degrees is (50, 30)
    assert float(rays[0]) == 20.0
    assert float(rays[9]) == 10.0           # +y: (30, 40)
    assert float(rays[18]) == 20.0 and float(rays[27]) == 10.0
    assert float(polar_centerness(rays[None])) == pytest.approx(
        math.sqrt(10.0 / float(rays.max())))


def test_draw_polygons_equals_opencv_per_polygon():
    rng = np.random.default_rng(1)
    h, w = 70, 90
    centers = torch.tensor(rng.uniform([-5, -5], [w + 5, h + 5], (40, 2)), dtype=torch.float32)
    rays = torch.tensor(rng.uniform(0, 60, (40, 36)), dtype=torch.float32)
    rays[:5] = rays[:5] * 0.01                  # degenerate, sub-pixel polygons
    verts = decode_contours(centers, rays, (h, w))
    got = draw_polygons(verts, h, w)
    for i in range(len(verts)):
        ref = np.zeros((h, w), np.uint8)
        cv2.drawContours(ref, [verts[i].int().numpy()[:, None, :]], -1, 1, -1)
        assert np.array_equal(got[i].numpy(), ref.astype(bool)), i
    assert draw_polygons(verts[:0], h, w).shape == (0, h, w)


def test_decode_contours_official_order_and_clamp():
    rays = torch.zeros(1, 36)
    rays[0, 9] = 10.0      # insplug ray 9 (+y) is official ray 0: its vertex is (cx, cy + 10)
    rays[0, 0] = 100.0     # +x, beyond the image: clamped to W - 1
    v = decode_contours(torch.tensor([[20., 30.]]), rays, (50, 60))[0]
    assert torch.allclose(v[0], torch.tensor([20., 40.]), atol=1e-5)
    assert torch.allclose(v[9], torch.tensor([59., 30.]), atol=1e-5)   # official 90 deg: +x
    assert torch.allclose(rays_to_polygons(torch.tensor([[20., 30.]]), rays)[0, 9],
                          torch.tensor([20., 40.]), atol=1e-5)


def test_nms_plus_one_hand_worked():
    boxes = torch.tensor([[0., 0., 9., 9.], [5., 0., 14., 9.], [5., 0., 14., 9.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    # +1 IoU of boxes 0 and 1: 5 * 10 / (100 + 100 - 50) = 1/3 (plain: 36 / 126 = 0.29)
    assert nms_plus_one(boxes, scores, labels, 0.3, 100).tolist() == [0, 2]
    assert nms_plus_one(boxes, scores, labels, 0.34, 100).tolist() == [0, 1, 2]
    assert nms_plus_one(boxes, scores, labels, 0.3, 1).tolist() == [0]
    assert nms_plus_one(boxes[:0], scores[:0], labels[:0], 0.5, 10).numel() == 0


def test_legacy_box_iou_loss_hand_worked():
    a = torch.tensor([[0., 0., 9., 9.], [0., 0., 9., 9.]], dtype=torch.float64)
    b = torch.tensor([[0., 0., 9., 9.], [0., 0., 4., 9.]], dtype=torch.float64)
    assert legacy_box_ious(a, b).tolist() == [1.0, 0.5]     # 50 / 100 with +1 sizes
    w = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert float(legacy_box_iou_loss(a, b, w, avg_factor=2.0)) == pytest.approx(
        0.5 * math.log(2) / 2)
    x = torch.tensor([[0.5, 0.5, 9., 9.]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: legacy_box_iou_loss(p, b[:1]), (x,))


def test_polar_iou_loss_hand_worked_and_gradient():
    pred = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], dtype=torch.float64)
    per = polar_iou_loss_per_point(pred, target)
    # point 0: sum max = 2 + 2 + 3 = 7, sum min = 1 + 2 + 2 = 5
    assert float(per[0]) == pytest.approx(math.log(7 / 5))
    assert float(per[1]) == 0.0
    w = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert float(polar_iou_loss(pred, target, w, avg_factor=1.5)) == pytest.approx(
        0.5 * math.log(7 / 5) / 1.5)
    x = (torch.rand(4, 6, dtype=torch.float64) + 0.5).requires_grad_()
    t = torch.rand(4, 6, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda p: polar_iou_loss(p, t), (x,))
    empty = torch.zeros(0, 36, requires_grad=True)
    assert float(polar_iou_loss(empty, empty.detach())) == 0.0
    with pytest.raises(ValueError, match='target'):
        polar_iou_loss_per_point(pred, target[:, :2])
