"""The shared box paste against a brute-force whole-image ``grid_sample`` (what detectron2 does
on GPU and mmdet with ``skip_empty=False``): bit-identical samples, 0 differing pixels."""
import pytest
import torch
import torch.nn.functional as F

from insplug.core.postprocess.paste import paste_masks_in_boxes, paste_windows


def whole_image_paste(masks, boxes, h, w, dtype):
    """One full-image grid per box (the reference the windowed paste must reproduce)."""
    out = []
    for m, (x1, y1, x2, y2) in zip(masks.to(dtype), boxes.to(dtype)):
        ys = torch.arange(h, dtype=dtype) + 0.5
        xs = torch.arange(w, dtype=dtype) + 0.5
        gy = (ys - y1) / (y2 - y1).clamp(min=1e-6) * 2 - 1
        gx = (xs - x1) / (x2 - x1).clamp(min=1e-6) * 2 - 1
        grid = torch.stack([gx[None].expand(h, w), gy[:, None].expand(h, w)], -1)
        out.append(F.grid_sample(m[None, None], grid[None], mode='bilinear',
                                 padding_mode='zeros', align_corners=False)[0, 0])
    return torch.stack(out) if out else torch.zeros((0, h, w), dtype=dtype)


def random_boxes(n, h, w, gen, lo=2.0, hi=None):
    hi = hi or max(h, w) * 1.2
    cx = torch.rand(n, generator=gen) * w * 1.2 - 0.1 * w
    cy = torch.rand(n, generator=gen) * h * 1.2 - 0.1 * h
    bw = lo + torch.rand(n, generator=gen) * (hi - lo)
    bh = lo + torch.rand(n, generator=gen) * (hi - lo)
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('size', [(7, 7), (28, 28), (5, 9)])
def test_paste_equals_whole_image_sampling(dtype, size):
    gen = torch.Generator().manual_seed(sum(size))
    h, w = 61, 83
    n = 40
    masks = torch.rand(n, *size, generator=gen, dtype=dtype)
    boxes = random_boxes(n, h, w, gen).to(dtype)
    # boxes much larger than the mask (support extends > 1 px outside the box), sub-pixel
    # boxes, a box entirely outside the image
    boxes[0] = torch.tensor([3.3, 4.7, 60.2, 58.9])
    boxes[1] = torch.tensor([10.2, 10.1, 10.6, 10.9])
    boxes[2] = torch.tensor([-30.0, -20.0, -5.0, -2.0])
    boxes[3] = torch.tensor([-10.5, -3.2, 95.0, 70.0])
    ref = whole_image_paste(masks, boxes, h, w, dtype)
    vals = paste_masks_in_boxes(masks, boxes, h, w, threshold=None)
    assert vals.dtype == dtype
    assert torch.equal(vals, ref)  # bit for bit
    # thresholds: values at exactly the threshold flip if anything differs
    for thr in (0.5, 0.25, 0.9):
        assert torch.equal(paste_masks_in_boxes(masks, boxes, h, w, threshold=thr), ref >= thr)
    assert torch.equal(paste_masks_in_boxes(masks, boxes, h, w, threshold=-1),
                       (ref * 255).to(torch.uint8))
    # tiny chunks: one instance per chunk, same result
    assert torch.equal(paste_masks_in_boxes(masks, boxes, h, w, None, chunk_pixels=1), ref)


def test_paste_float32_of_float64_masks():
    """``dtype`` fixes the sampling precision (the RefineMask release and mmdet: float32)."""
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(12, 14, 14, generator=gen, dtype=torch.float64)
    boxes = random_boxes(12, 40, 50, gen)
    ref = whole_image_paste(masks, boxes, 40, 50, torch.float32)
    assert torch.equal(paste_masks_in_boxes(masks, boxes, 40, 50, None, dtype=torch.float32),
                       ref)


def test_window_covers_support_and_hand_case():
    """A 2 x 2 mask of ones on box [10, 30]: samples are nonzero for pixel centres within
    half a mask cell (5 px) of the box, i.e. centres in (5, 35): pixels 5..34."""
    masks = torch.ones(1, 2, 2)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    vals = paste_masks_in_boxes(masks, boxes, 40, 40, threshold=None)
    nz = (vals[0] > 0).nonzero()
    assert nz[:, 0].min() == 5 and nz[:, 0].max() == 34
    assert nz[:, 1].min() == 5 and nz[:, 1].max() == 34
    x0, y0, x1, y1 = paste_windows(boxes, (2, 2), 40, 40)[0].tolist()
    assert x0 <= 5 and x1 >= 35 and y0 <= 5 and y1 >= 35
    # centre pixels are fully inside: exactly 1
    assert vals[0, 20, 20] == 1
    # pixel 5 (centre 5.5): mask x = (5.5 - 10) / 20 * 2 - 0.5 = -0.95 -> weight 0.05
    assert torch.isclose(vals[0, 20, 5], torch.tensor(0.05), atol=1e-6)


def test_paste_empty():
    out = paste_masks_in_boxes(torch.zeros(0, 28, 28), torch.zeros(0, 4), 30, 20)
    assert out.shape == (0, 30, 20) and out.dtype == torch.bool
    out = paste_masks_in_boxes(torch.ones(2, 28, 28), torch.ones(2, 4), 0, 20)
    assert out.shape == (2, 0, 20)
