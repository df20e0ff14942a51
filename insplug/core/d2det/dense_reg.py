"""D2Det dense local regression: per-cell box targets, overlap maps, decoding (release form).

Shapes: N RoIs; an S x S grid of cells over each RoI (official S = 7, the head's output after
its stride-2 first conv on 14 x 14 RoI features); M x M instance-mask targets (official 28).

Cell (j, i) of a RoI ``(x1, y1, x2, y2)`` sits at ``x = x1 + (x2 - x1) / S * (i + 0.5)``,
``y = y1 + (y2 - y1) / S * (j + 0.5)``. It regresses the distances to the four sides of its
ground-truth box, ``l, r, t, b`` (channel order of the release: left, right, top, bottom),
predicted normalised by the RoI's width / height. The binary overlap map says which cells the
box regression trusts: in the detection variant the cells inside the GT box by at least one cell
pitch ``(x2 - x1) / (S - 1)`` on each side (``D2DetHead.get_target``); in the released
instance-segmentation variant the RoI's M x M mask target bilinearly resized to S x S, > 0.5
(``D2DetHead.get_target_mask``). At test time the boxes of the cells with overlap logit > 0 are
averaged (``D2DetHead.get_bboxes_avg``).
"""
import torch
import torch.nn.functional as F

AVERAGE_EPS = 1e-5  # the release's denominator guard in get_bboxes_avg


def cell_centres(boxes, size):
    """Cell centres of each RoI, training form ``x1 + (x2 - x1) / S * (i + 0.5)``.

    Args:
        boxes: (N, 4) x1, y1, x2, y2. size: S.

    Returns:
        xs: (N, S) x of column i; ys: (N, S) y of row j.
    """
    steps = torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5
    xs = boxes[:, 0:1] + ((boxes[:, 2] - boxes[:, 0]) / size)[:, None] * steps[None]
    ys = boxes[:, 1:2] + ((boxes[:, 3] - boxes[:, 1]) / size)[:, None] * steps[None]
    return xs, ys


def dense_targets(pos_boxes, gt_boxes, size):
    """Per-cell points and ltrb targets (``get_target`` / ``get_target_mask``).

    Args:
        pos_boxes: (N, 4) RoIs. gt_boxes: (N, 4) their GT boxes. size: S.

    Returns:
        points: (N, 4, S, S) cell x, cell y, RoI width, RoI height;
        targets: (N, 4, S, S) pixel distances x - gx1, gx2 - x, y - gy1, gy2 - y.
    """
    n = pos_boxes.shape[0]
    xs, ys = cell_centres(pos_boxes, size)
    x = xs[:, None, :].expand(n, size, size)
    y = ys[:, :, None].expand(n, size, size)
    g = gt_boxes[:, :, None, None]
    targets = torch.stack([x - g[:, 0], g[:, 2] - x, y - g[:, 1], g[:, 3] - y], 1)
    w = (pos_boxes[:, 2] - pos_boxes[:, 0])[:, None, None].expand(n, size, size)
    h = (pos_boxes[:, 3] - pos_boxes[:, 1])[:, None, None].expand(n, size, size)
    points = torch.stack([x, y, w, h], 1)
    return points, targets


def box_overlap_map(pos_boxes, gt_boxes, size):
    """Detection-variant overlap target: cells at least one pitch inside the GT box.

    Args:
        pos_boxes: (N, 4). gt_boxes: (N, 4). size: S (> 1).

    Returns:
        (N, S, S) float {0, 1}.
    """
    _, targets = dense_targets(pos_boxes, gt_boxes, size)
    dx = ((pos_boxes[:, 2] - pos_boxes[:, 0]) / (size - 1))[:, None, None]
    dy = ((pos_boxes[:, 3] - pos_boxes[:, 1]) / (size - 1))[:, None, None]
    inside = ((targets[:, 0] >= dx) & (targets[:, 1] >= dx) & (targets[:, 2] >= dy)
              & (targets[:, 3] >= dy))
    return inside.to(pos_boxes.dtype)


def mask_overlap_map(mask_targets, size):
    """Instance-variant overlap target: the M x M mask target resized to S x S, > 0.5.

    Args:
        mask_targets: (N, M, M) {0, 1}. size: S (M / S an integer in the release: 28 / 7).

    Returns:
        (N, S, S) float {0, 1}.
    """
    if mask_targets.shape[0] == 0:
        return mask_targets.new_zeros(0, size, size)
    small = F.interpolate(mask_targets[None].float(), size=(size, size), mode='bilinear',
                          align_corners=False)[0]
    return small.gt(0.5).to(mask_targets.dtype if mask_targets.is_floating_point()
                            else torch.float32)


def decode_dense(pred, points):
    """Boxes of every cell from normalised predictions (training decode).

    Args:
        pred: (N, 4, S, S) l, r, t, b in units of the RoI width / height.
        points: (N, 4, S, S) from :func:`dense_targets`.

    Returns:
        (N, 4, S, S) x1, y1, x2, y2.
    """
    px, py, w, h = points.unbind(1)
    return torch.stack([px - pred[:, 0] * w, py - pred[:, 2] * h,
                        px + pred[:, 1] * w, py + pred[:, 3] * h], 1)


def decode_targets(targets, points):
    """GT boxes seen from every cell: (N, 4, S, S) pixel ltrb -> (N, 4, S, S) x1, y1, x2, y2."""
    px, py = points[:, 0], points[:, 1]
    return torch.stack([px - targets[:, 0], py - targets[:, 2], px + targets[:, 1],
                        py + targets[:, 3]], 1)


def average_boxes(boxes, pred, overlap_logits):
    """Test-time box: the mean of the boxes of the cells with overlap logit > 0.

    The release's ``get_bboxes_avg`` (cell x = ``x1 + w * ((i + 0.5) / S)``); a RoI with no such
    cell gets the box (0, 0, 0, 0) as in the release (the sum over no cell, / 1e-5).

    Args:
        boxes: (N, 4) RoIs. pred: (N, 4, S, S) normalised l, r, t, b.
        overlap_logits: (N, 1, S, S) or (N, S, S).

    Returns:
        (N, 4) x1, y1, x2, y2.
    """
    n, _, size, _ = pred.shape
    steps = (torch.arange(size, dtype=pred.dtype, device=pred.device) + 0.5) / size
    h = (boxes[:, 3] - boxes[:, 1]).view(-1, 1, 1)
    w = (boxes[:, 2] - boxes[:, 0]).view(-1, 1, 1)
    y = boxes[:, 1].view(-1, 1, 1) + h * steps.view(1, size, 1)
    x = boxes[:, 0].view(-1, 1, 1) + w * steps.view(1, 1, size)
    cells = torch.stack([x - pred[:, 0] * w, y - pred[:, 2] * h, x + pred[:, 1] * w,
                         y + pred[:, 3] * h], -1).reshape(n, size * size, 4)
    keep = (overlap_logits.reshape(n, size * size, 1) > 0.0).to(pred.dtype)
    return (cells * keep).sum(1) / (keep.sum(1) + AVERAGE_EPS)


def jitter_boxes(boxes, offsets, img_shape=None):
    """The release's ``_random_jitter`` with given offsets (uniform in [-0.15, 0.15]).

    Args:
        boxes: (N, 4). offsets: (N, 4) centre (dx, dy) in units of w, h; scale (sw, sh).
        img_shape: (H, W) or None; boxes are clamped to [0, W - 1] x [0, H - 1].

    Returns:
        (N, 4) jittered boxes.
    """
    cxcy = (boxes[:, 2:4] + boxes[:, :2]) / 2
    wh = (boxes[:, 2:4] - boxes[:, :2]).abs()
    new_cxcy = cxcy + wh * offsets[:, :2]
    new_wh = wh * (1 + offsets[:, 2:])
    out = torch.cat([new_cxcy - new_wh / 2, new_cxcy + new_wh / 2], dim=1)
    if img_shape is not None:
        out = torch.stack([out[:, 0].clamp(0, img_shape[1] - 1),
                           out[:, 1].clamp(0, img_shape[0] - 1),
                           out[:, 2].clamp(0, img_shape[1] - 1),
                           out[:, 3].clamp(0, img_shape[0] - 1)], 1)
    return out
