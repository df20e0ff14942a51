"""Position-sensitive pooling and assembling (insplug.core.position_sensitive) against
torchvision's ``ps_roi_pool``, hand-worked grids and gradient checks."""
import pytest
import torch
import torchvision

from insplug.core.position_sensitive import (assemble_windows, ps_bin_bounds, ps_roi_pool,
                                             round_half_away, window_cell_index)


def test_round_half_away():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999])
    assert torch.equal(round_half_away(x), torch.tensor([1.0, 2.0, 3.0, -1.0, -2.0, 2.0]))


def test_torchvision_convention_matches_torchvision():
    torch.manual_seed(0)
    x = torch.randn(2, 3 * 9, 13, 17, requires_grad=True)
    # RoIs that stay off the last row / column: torchvision's CPU forward clips bin ends to
    # H - 1 / W - 1 (its CUDA kernel and its backward clip to H / W, as here)
    rois = torch.tensor([[0, 3.2, 4.7, 40.1, 30.4], [1, 0, 0, 60, 45], [0, 10, 10, 12, 11],
                         [1, -5, -3, 50, 40], [0, 22.5, 13.5, 49.5, 37.5]])
    ours = ps_roi_pool(x, rois, 3, 3, 3, 0.25, 'torchvision')
    ref = torchvision.ops.ps_roi_pool(x, rois, 3, 0.25)
    assert (ours - ref).abs().max() < 1e-6
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad((ours * g).sum(), x)
    (gb,) = torch.autograd.grad((ref * g).sum(), x)
    assert (ga - gb).abs().max() < 1e-6


def test_mxnet_convention_hand_worked():
    # 1 output channel, 2 x 2 groups, pooled 4 x 4 (each group cell read by 2 x 2 bins);
    # channel (gy, gx) holds the constant 10 * gy + gx plus the cell's position
    h, w = 4, 4
    ys, xs = torch.meshgrid(torch.arange(h.__index__()), torch.arange(w), indexing='ij')
    x = torch.stack([100 * (2 * gy + gx) + (ys * w + xs).float()
                     for gy in range(2) for gx in range(2)])[None].double()
    # RoI covering pixels 0..15 at scale 1/4 -> feature cells [0, 4) x [0, 4), bins of 1 cell
    rois = torch.tensor([[0, 0.0, 0.0, 15.0, 15.0]], dtype=torch.float64)
    out = ps_roi_pool(x, rois, 1, 2, 4, 0.25)[0, 0]
    for py in range(4):
        for px in range(4):
            group = 2 * (py // 2) + px // 2
            assert out[py, px] == 100 * group + py * w + px
    # the release's bounds: start round(x1) * s, end (round(x2) + 1) * s, floor / ceil
    hs, he, ws, we = ps_bin_bounds(torch.tensor([[0, 2.0, 1.4, 9.6, 6.5]]), 2, 0.25, 10, 10)
    # x: start 0.5, end 2.75, bin 1.125 -> [0, 2), [1, 3); y: start 0.25, end 2.0 (round 6.5
    # = 7 away from zero), bin 0.875 -> [0, 2), [1, 2)
    assert ws.tolist() == [[0, 1]] and we.tolist() == [[2, 3]]
    assert hs.tolist() == [[0, 1]] and he.tolist() == [[2, 2]]


def test_mxnet_convention_brute_force_and_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(1, 2 * 4, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 3.0, 2.0, 50.0, 40.0], [0, -8.0, 5.0, 20.0, 90.0],
                         [0, 30.0, 30.0, 30.0, 30.0]], dtype=torch.float64)
    out = ps_roi_pool(x, rois, 2, 2, 4, 1 / 8)
    hs, he, ws, we = ps_bin_bounds(rois, 4, 1 / 8, 6, 7)
    for r in range(3):
        for c in range(2):
            for py in range(4):
                for px in range(4):
                    ch = (c * 2 + py // 2) * 2 + px // 2
                    cells = x[0, ch, hs[r, py]:he[r, py], ws[r, px]:we[r, px]]
                    ref = cells.mean() if cells.numel() else torch.zeros((), dtype=x.dtype)
                    assert torch.allclose(out[r, c, py, px], ref)
    assert torch.autograd.gradcheck(lambda t: ps_roi_pool(t, rois, 2, 2, 4, 1 / 8), (x,))


def test_window_cell_index_hand_worked():
    assert window_cell_index(3, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert window_cell_index(2, 2).tolist() == [[0, 1], [2, 3]]
    # m = 5, k = 2: rows 0-2 read cell row 0 (floor(i * 2 / 5)), rows 3-4 cell row 1
    assert window_cell_index(5, 2)[:, 0].tolist() == [0, 0, 0, 2, 2]


def test_assemble_3x3_hand_worked():
    # map c holds 100 * c + the flat position: each window cell must read its own map at its
    # own position
    h, w = 5, 6
    pos = torch.arange(h * w, dtype=torch.float64).view(h, w)
    maps = torch.stack([100 * c + pos for c in range(9)])[None]
    out = assemble_windows(maps, torch.tensor([0, 0]), torch.tensor([1, 3]),
                           torch.tensor([2, 4]), 3, fill=-1.0)
    for i in range(3):
        for j in range(3):
            assert out[0, i, j] == 100 * (3 * i + j) + pos[1 + i, 2 + j]
            y, x = 3 + i, 4 + j
            expect = 100 * (3 * i + j) + pos[y, x] if y < h and x < w else -1.0
            assert out[1, i, j] == expect


def test_assemble_2x2_cells_of_2_and_gradient():
    maps = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    b, y0, x0 = torch.tensor([1]), torch.tensor([1]), torch.tensor([0])
    out = assemble_windows(maps, b, y0, x0, 4)
    for i in range(4):
        for j in range(4):
            assert out[0, i, j] == maps[1, (i // 2) * 2 + j // 2, 1 + i, j]
    assert torch.autograd.gradcheck(lambda m: assemble_windows(m, b, y0, x0, 4), (maps,))


def test_ps_roi_pool_rejects_wrong_channels():
    with pytest.raises(ValueError):
        ps_roi_pool(torch.zeros(1, 10, 4, 4), torch.zeros(1, 5), 1, 3, 3, 1.0)
