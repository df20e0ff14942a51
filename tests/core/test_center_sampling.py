"""FCOS centre-sampling assignment against a per-point brute-force reading of the rules."""
import torch

from insplug.core.assigners.center_sampling import center_sampling_assign, mask_mass_centers


def brute_force(points, strides, ranges, boxes, centers, radius):
    out = []
    for (x, y), s, (lo, hi) in zip(points.tolist(), strides.tolist(), ranges.tolist()):
        best, best_area = -1, None
        for g, ((x1, y1, x2, y2), (cx, cy)) in enumerate(zip(boxes.tolist(), centers.tolist())):
            rx1, ry1 = max(cx - s * radius, x1), max(cy - s * radius, y1)
            rx2, ry2 = min(cx + s * radius, x2), min(cy + s * radius, y2)
            if not (rx1 < x < rx2 and ry1 < y < ry2):
                continue
            m = max(x - x1, y - y1, x2 - x, y2 - y)
            if not (lo <= m <= hi):
                continue
            area = (x2 - x1) * (y2 - y1)
            if best_area is None or area < best_area:
                best, best_area = g, area
        out.append(best)
    return torch.tensor(out)


def grid(stride, size):
    c = torch.arange(0, size, stride, dtype=torch.float32) + stride / 2
    ys, xs = torch.meshgrid(c, c, indexing='ij')
    return torch.stack([xs.flatten(), ys.flatten()], 1)


def test_matches_brute_force_with_box_and_custom_centres():
    gen = torch.Generator().manual_seed(0)
    strides, ranges = [8, 16, 32], [(-1, 32), (32, 64), (64, 1e8)]
    pts = torch.cat([grid(s, 128) for s in strides])
    pstr = torch.cat([torch.full((len(grid(s, 128)),), float(s)) for s in strides])
    prng = torch.cat([torch.tensor(r).expand(len(grid(s, 128)), 2)
                      for s, r in zip(strides, ranges)]).float()
    xy = torch.rand(6, 2, generator=gen) * 90
    wh = torch.rand(6, 2, generator=gen) * 60 + 8
    boxes = torch.cat([xy, xy + wh], 1)
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    got = center_sampling_assign(pts, pstr, prng, boxes, None, 1.5)
    assert torch.equal(got, brute_force(pts, pstr, prng, boxes, box_centres, 1.5))
    assert (got >= 0).sum() > 5
    shifted = boxes[:, :2] + wh * 0.3
    got = center_sampling_assign(pts, pstr, prng, boxes, shifted, 1.5)
    assert torch.equal(got, brute_force(pts, pstr, prng, boxes, shifted, 1.5))
    assert torch.equal(center_sampling_assign(pts, pstr, prng, boxes, None, 100.0),
                       brute_force(pts, pstr, prng, boxes, box_centres, 100.0))


def test_no_objects_and_mass_centre():
    pts = grid(8, 32)
    got = center_sampling_assign(pts, torch.full((16,), 8.),
                                 torch.tensor([[-1., 1e8]]).expand(16, 2),
                                 torch.zeros(0, 4))
    assert (got == -1).all()
    m = torch.zeros(2, 10, 20, dtype=torch.bool)
    m[0, 2:4, 3:9] = True  # centre x = (3 + 9) / 2, y = (2 + 4) / 2
    m[1, 0, 0] = True
    m[1, 9, 19] = True
    c = mask_mass_centers(m)
    assert torch.allclose(c, torch.tensor([[6.0, 3.0], [10.0, 5.0]]))
