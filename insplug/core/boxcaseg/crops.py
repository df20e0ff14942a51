"""BoxCaseg crops: the release's box jitter, batched crops of images and labels.

Shapes: N boxes / crops, B images; every crop is resampled to S x S.

The release (``hybrid_data_loader.py``) cuts each box-annotated instance out of its image with a
"shaken" box (``bbox_broaden``: the centre moves by up to a quarter of the half side, each half
side is scaled by a factor in [0.5, 1.5], integer coordinates clipped to the image), labels the
crop with the original box (1 inside, 0 outside) and resizes both to 288 x 288. Salient images
are used whole (resized, randomly cropped and flipped by the data pipeline) with their saliency
mask as the label. Here every crop is taken at once with ``roi_align`` (bilinear, aligned,
one sample per output cell), so a whole batch of boxes costs one call.
"""
import torch
from torchvision.ops import roi_align


def broaden_boxes(boxes, img_hw, generator=None):
    """The release's ``bbox_broaden`` for N boxes at once (random jitter of the crop window).

    Args:
        boxes: (N, 4) x1, y1, x2, y2 (the release's integer boxes; any float works).
        img_hw: (N, 2) image height, width of each box's image.
        generator: optional ``torch.Generator``.

    Returns:
        (N, 4) float integer-valued crop windows ``[xmin, ymin, xmax, ymax]`` (exclusive max as
        the release slices ``image[ymin:ymax, xmin:xmax]``), each at least 1 px wide and high.
    """
    n = boxes.shape[0]
    boxes = boxes.double()
    rnd = torch.rand((n, 4), generator=generator, dtype=torch.float64)
    shift = rnd[:, :2] * 0.5 - 0.25           # uniform(-0.25, 0.25)
    ratio = rnd[:, 2:] + 0.5                  # uniform(0.5, 1.5)
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift * half
    img_wh = img_hw.double().flip(-1)
    lo = torch.clamp(centre - ratio * half, min=0).trunc()
    hi = torch.minimum(img_wh - 1, centre + ratio * half).trunc()
    # the release widens a degenerate window by one pixel (to the right at 0, else to the left)
    same = hi == lo
    hi = torch.where(same & (lo == 0), torch.ones_like(hi), hi)
    lo = torch.where(same & (lo != 0), lo - 1, lo)
    return torch.cat((lo, hi), dim=1).float()


def crop_and_resize(images, batch_idx, windows, size):
    """Bilinear crops of windows of a batch of maps, resampled to ``size`` x ``size``.

    Output cell ``(i, j)`` samples the source at ``x1 + (j + 0.5) * (x2 - x1) / S - 0.5``
    (pixel-index coordinates), ``y`` likewise: the window's pixel edges map to the crop's.

    Args:
        images: (B, C, H, W) float maps (images, or masks as float).
        batch_idx: (N,) long, the image of each window.
        windows: (N, 4) x1, y1, x2, y2 pixel-edge coordinates.
        size: S.

    Returns:
        (N, C, S, S) crops.
    """
    rois = torch.cat((batch_idx[:, None].to(images.dtype), windows.to(images.dtype)), dim=1)
    return roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=1,
                     aligned=True)


def box_labels_in_windows(boxes, windows, size):
    """Box masks in crop coordinates: 1 where the crop cell's centre lies inside the box.

    Args:
        boxes: (N, 4) labelled boxes x1, y1, x2, y2 (image pixel edges).
        windows: (N, 4) crop windows in the same frame.
        size: S.

    Returns:
        (N, 1, S, S) float {0, 1}.
    """
    steps = (torch.arange(size, dtype=torch.float64, device=boxes.device) + 0.5) / size
    w = windows.double()
    b = boxes.double()
    xs = w[:, 0:1] + steps[None] * (w[:, 2:3] - w[:, 0:1])   # (N, S) cell centres
    ys = w[:, 1:2] + steps[None] * (w[:, 3:4] - w[:, 1:2])
    in_x = (xs >= b[:, 0:1]) & (xs < b[:, 2:3])
    in_y = (ys >= b[:, 1:2]) & (ys < b[:, 3:4])
    return (in_y[:, :, None] & in_x[:, None, :]).float()[:, None]


def training_crops(images, boxes, image_hw, salient_masks, size, max_box_crops=None,
                   generator=None):
    """All training crops of a batch: jittered box crops and whole salient images.

    Args:
        images: (B, C, Hp, Wp) normalised, padded batch.
        boxes: list of B tensors (n_b, 4) x1, y1, x2, y2 (ignored for salient images).
        image_hw: list of B (h, w) unpadded image sizes.
        salient_masks: list of B: None for a box image, else an (h, w) float/bool mask (the
            union of the salient image's masks).
        size: S.
        max_box_crops: optional cap on box crops (a random subset, drawn with ``generator``).
        generator: optional ``torch.Generator`` for the jitter and the cap.

    Returns:
        crops (N, C, S, S), labels (N, 1, S, S) float {0, 1}, salient (N,) bool: the box
        crops first (image order), then the salient crops.
    """
    dev = images.device
    hp, wp = images.shape[-2:]
    b_idx, b_boxes, b_hw, s_idx, s_masks = [], [], [], [], []
    for i, (b, hw, m) in enumerate(zip(boxes, image_hw, salient_masks)):
        if m is None:
            b = b.to(dev).float()
            b_idx.append(torch.full((len(b),), i, dtype=torch.long, device=dev))
            b_boxes.append(b)
            b_hw.append(b.new_tensor(tuple(hw)).expand(len(b), 2))
        else:
            s_idx.append(i)
            m = m.to(dev).float()
            s_masks.append(torch.nn.functional.pad(m, (0, wp - m.shape[-1], 0, hp - m.shape[-2])))
    crops, labels = [], []
    n_box = 0
    if b_idx:
        idx, bx, hw = torch.cat(b_idx), torch.cat(b_boxes), torch.cat(b_hw)
        if max_box_crops is not None and len(idx) > max_box_crops:
            keep = torch.randperm(len(idx), generator=generator)[:max_box_crops].to(dev)
            idx, bx, hw = idx[keep], bx[keep], hw[keep]
        windows = broaden_boxes(bx.cpu(), hw.cpu(), generator).to(dev)
        crops.append(crop_and_resize(images, idx, windows, size))
        labels.append(box_labels_in_windows(bx, windows, size).to(images.dtype))
        n_box = len(idx)
    if s_idx:
        hw = torch.tensor([tuple(image_hw[i]) for i in s_idx], device=dev, dtype=images.dtype)
        windows = torch.cat((torch.zeros_like(hw), hw.flip(-1)), dim=1)
        crops.append(crop_and_resize(images, torch.tensor(s_idx, device=dev), windows, size))
        mask_crops = crop_and_resize(torch.stack(s_masks)[:, None].to(images.dtype),
                                     torch.arange(len(s_idx), device=dev), windows, size)
        labels.append((mask_crops >= 0.5).to(images.dtype))
    salient = torch.zeros(n_box + len(s_idx), dtype=torch.bool, device=dev)
    salient[n_box:] = True
    return torch.cat(crops), torch.cat(labels), salient
