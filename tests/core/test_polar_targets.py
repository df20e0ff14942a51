"""PolarMask maths: ray targets vs a brute-force ray cast, the rasterisation round trip and the
polar IoU loss."""
import math

import pytest
import torch

from insplug.core.losses.polar_iou import polar_iou_loss, polar_iou_loss_per_point
from insplug.core.polarmask.inference import polar_masks, polygon_boxes, rays_to_polygons
from insplug.core.polarmask.targets import mask_boundary, polar_centerness, polar_ray_targets


def disk(size, cx, cy, r):
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing='ij')
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def square(size, x0, y0, side):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def brute_force_rays(mask, cx, cy, num_rays=36, step=0.02):
    """March along each ray in small steps on the rasterised mask; the length is the distance of
    the last sample that is still inside a foreground pixel (the far edge of the object)."""
    h, w = mask.shape
    lengths = []
    for k in range(num_rays):
        a = 2 * math.pi * k / num_rays
        last, t = 0.0, 0.0
        while True:
            x, y = cx + t * math.cos(a), cy + t * math.sin(a)
            if not (0 <= x < w and 0 <= y < h):
                break
            if mask[int(y), int(x)]:
                last = t
            t += step
        lengths.append(last)
    return torch.tensor(lengths)


def test_circle_rays_equal_and_match_ray_cast():
    mask = disk(96, 48.0, 48.0, 30.0)
    got = polar_ray_targets(torch.tensor([[48.0, 48.0]]), torch.tensor([0]), mask[None])[0]
    ref = brute_force_rays(mask, 48.0, 48.0)
    # contour pixels are pixel centres: within one pixel of the marched far edge
    assert (got - ref).abs().max() < 1.0
    assert got.max() - got.min() < 1.2  # all rays equal up to rasterisation
    assert float(polar_centerness(got[None])) > 0.97


def test_square_rays_known_ratios_and_off_centre_point():
    mask = square(80, 20, 20, 40)  # covers [20, 60) x [20, 60), centre (40, 40)
    got = polar_ray_targets(torch.tensor([[40.0, 40.0]]), torch.tensor([0]), mask[None])[0]
    half = 19.5  # farthest contour pixel centre from the centre along an axis
    assert got[0] == pytest.approx(half, abs=0.01)     # 0 degrees
    assert got[9] == pytest.approx(half, abs=0.01)     # 90 degrees
    assert got[4] / got[0] == pytest.approx(1 / math.cos(math.radians(40)), abs=0.04)
    assert got[2] / got[0] == pytest.approx(1 / math.cos(math.radians(20)), abs=0.04)
    assert got[22] / got[0] == pytest.approx(1 / math.cos(math.radians(40)), abs=0.04)
    # an off-centre point and a second object in the same call
    masks = torch.stack([disk(80, 40, 40, 15), mask])
    pts = torch.tensor([[33.0, 45.0], [40.0, 40.0]])
    got2 = polar_ray_targets(pts, torch.tensor([1, 0]), masks)
    ref = brute_force_rays(mask, 33.0, 45.0)
    # rays that graze a corner may pick a contour pixel a little off the exact direction
    assert (got2[0] - ref).abs().max() < 1.5
    assert (got2[0] - ref).abs().mean() < 0.7
    assert (got2[1] - brute_force_rays(masks[0], 40.0, 40.0)).abs().max() < 1.0


def test_empty_points_and_boundary():
    mask = square(10, 2, 2, 5)
    edge = mask_boundary(mask[None])[0]
    assert int(edge.sum()) == 16  # ring of a 5 x 5 square
    assert polar_ray_targets(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long),
                             mask[None]).shape == (0, 36)


@pytest.mark.parametrize('shape', ['disk', 'square', 'hexagon'])
def test_polygon_round_trip(shape):
    size = 128
    if shape == 'disk':
        mask = disk(size, 60.3, 66.1, 35.0)
    elif shape == 'square':
        mask = square(size, 30, 40, 50)
    else:
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5,
                                indexing='ij')
        mask = torch.ones(size, size, dtype=torch.bool)
        for k in range(6):  # intersection of 6 half-planes
            a = math.pi / 3 * k + 0.2
            mask &= (xs - 64) * math.cos(a) + (ys - 64) * math.sin(a) <= 40
    fg = mask.nonzero().float()
    center = torch.stack([fg[:, 1].mean() + 0.5, fg[:, 0].mean() + 0.5])[None]
    rays = polar_ray_targets(center, torch.tensor([0]), mask[None])
    rebuilt = polar_masks(center, rays + 0.5, size, size)[0]  # +0.5: pixel centre to its edge
    iou = (rebuilt & mask).sum() / (rebuilt | mask).sum()
    assert iou > 0.95
    box = polygon_boxes(center, rays)[0]
    ys, xs = mask.nonzero(as_tuple=True)
    assert (box - torch.tensor([xs.min() + .5, ys.min() + .5, xs.max() + .5, ys.max() + .5])
            ).abs().max() < 2.5


def test_rasterised_regular_polygon_matches_area():
    """A polygon of 36 equal rays is a regular 36-gon: its pixel count approximates its area."""
    rays = torch.full((1, 36), 30.0)
    m = polar_masks(torch.tensor([[50.0, 50.0]]), rays, 100, 100)[0]
    area = 0.5 * 36 * 30.0 ** 2 * math.sin(2 * math.pi / 36)
    assert float(m.sum()) == pytest.approx(area, rel=0.01)
    verts = rays_to_polygons(torch.tensor([[50.0, 50.0]]), rays)[0]
    assert torch.allclose(verts[9], torch.tensor([50.0, 80.0]), atol=1e-4)  # 90 deg is +y


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
