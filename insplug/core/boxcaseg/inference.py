"""BoxCaseg inference: box-conditioned masks and the release's pseudo-mask merge.

Shapes: N boxes of one image, S x S crop predictions, H x W image.

- ``minmax_normalize``: the release's ``normPRED_new``: each crop's probabilities rescaled to
  [0, 1] by its own min and max (full-branch sigmoid), then thresholded at 0.5 in the box.
- ``crop_masks_to_image``: each crop's map resized into its box and thresholded. The release
  resizes an 8-bit copy of the map with PIL to the box's integer size and pastes it at the
  integer box; insplug pastes the float map with the shared ``paste_masks_in_boxes`` (bilinear,
  the detectron2 / mmdet geometry): see docs/deviations/boxcaseg.md.
- ``merge_instance_masks``: ``proxy_mask/*_proxy_mask_generate.py``: the instances of an image
  are painted from the largest box area to the smallest, so a pixel claimed by several masks
  goes to the smallest box; each pseudo mask gets a confidence, the IoU (``+1`` convention) of
  the tight box of its merged mask with the integer annotation box.
"""
import torch

from insplug.core.postprocess.paste import paste_masks_in_boxes


def minmax_normalize(probs):
    """Per-crop min-max rescaling (the release's ``normPRED_new``).

    Args:
        probs: (N, S, S) probabilities.

    Returns:
        (N, S, S) ``(p - min) / (max - min)`` per crop (NaN for a constant crop, as the
        release; such a crop gives an empty mask).
    """
    flat = probs.reshape(probs.shape[0], -1)
    mx = flat.amax(dim=1).view(-1, 1, 1)
    mn = flat.amin(dim=1).view(-1, 1, 1)
    return (probs - mn) / (mx - mn)


def crop_masks_to_image(probs, boxes, height, width, threshold=0.5):
    """Paste normalised crop maps into their boxes and threshold them.

    Args:
        probs: (N, S, S) normalised probabilities in box coordinates.
        boxes: (N, 4) x1, y1, x2, y2 in the output image.
        height, width: H, W.
        threshold: the release's 0.5 (strictly above; equal to ``>=`` on a non-grid value).

    Returns:
        (N, H, W) bool masks.
    """
    probs = torch.nan_to_num(probs, nan=0.0)
    return paste_masks_in_boxes(probs, boxes, height, width, threshold=threshold)


def integer_boxes(boxes_xywh):
    """The release's integer boxes: ``int`` of x, y, w, h (w, h at least 1), then x2 = x + w.

    Args:
        boxes_xywh: (N, 4) COCO boxes.

    Returns:
        (N, 4) float integer-valued x1, y1, x2, y2.
    """
    xywh = boxes_xywh.double().trunc()
    xywh[:, 2:] = xywh[:, 2:].clamp(min=1)
    return torch.cat((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), dim=1).float()


def merge_instance_masks(masks, boxes_xywh):
    """The release's overlap resolution and confidence of one image's pseudo masks.

    Args:
        masks: (N, H, W) bool predicted masks.
        boxes_xywh: (N, 4) the annotation boxes (COCO x, y, w, h).

    Returns:
        merged: (N, H, W) bool, disjoint masks (a pixel goes to the smallest box covering it;
            equal areas: the earlier annotation wins, as the release's insertion-sorted order).
        confidence: (N,) float64 IoU of each merged mask's tight box with its integer box.
    """
    n = masks.shape[0]
    if n == 0:
        return masks.bool(), torch.zeros(0, dtype=torch.float64)
    areas = (boxes_xywh[:, 2] * boxes_xywh[:, 3]).double()
    # painting order: stable ascending sort reversed (largest first); painted last wins
    order = torch.argsort(areas, stable=True).flip(0)
    rank = torch.empty(n, dtype=torch.long, device=masks.device)
    rank[order] = torch.arange(n, device=masks.device)
    score = masks.long() * (rank + 1).view(-1, 1, 1)
    owner = score.argmax(dim=0)
    merged = (owner[None] == torch.arange(n, device=masks.device).view(-1, 1, 1)) \
        & masks.any(dim=0)[None]
    return merged, mask_box_confidence(merged, boxes_xywh)


def mask_box_confidence(masks, boxes_xywh):
    """The release's ``get_iou`` between each mask's inclusive tight box (or ``[0, 0, 0, 0]``
    for an empty mask) and the annotation box ``[int x, int y, int x + int w, int y + int h]``,
    both with the ``+1`` area convention.

    Args:
        masks: (N, H, W) bool.
        boxes_xywh: (N, 4).

    Returns:
        (N,) float64.
    """
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[-2:]
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    nonempty = rows.any(dim=1)
    y0 = torch.where(rows, ar_h, big).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1)
    x0 = torch.where(cols, ar_w, big).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1)
    mbox = torch.stack((x0, y0, x1, y1), dim=1).double()
    mbox[~nonempty] = 0
    xy = boxes_xywh[:, :2].double().trunc()
    gbox = torch.cat((xy, xy + boxes_xywh[:, 2:].double().trunc()), dim=1)
    iw = (torch.minimum(mbox[:, 2], gbox[:, 2]) - torch.maximum(mbox[:, 0], gbox[:, 0])
          + 1).clamp(min=0)
    ih = (torch.minimum(mbox[:, 3], gbox[:, 3]) - torch.maximum(mbox[:, 1], gbox[:, 1])
          + 1).clamp(min=0)
    inter = iw * ih
    union = ((mbox[:, 2] - mbox[:, 0] + 1) * (mbox[:, 3] - mbox[:, 1] + 1)
             + (gbox[:, 2] - gbox[:, 0] + 1) * (gbox[:, 3] - gbox[:, 1] + 1) - inter)
    return inter / union
