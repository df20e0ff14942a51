"""Class-agnostic segment proposals without MCG: a deterministic colour-region fallback.

Shapes: an RGB image 3 x H x W (0-255), Q proposals H x W.

The PRM and CountSeg releases retrieve instances among off-the-shelf MCG / COB proposals, which
are not available here (see docs/deviations/prm.md). Proposals can be read from a file
(``insplug.mmdet.prm.FileProposals``); this module is the fallback when no file is given: the
4-connected regions of equal quantised colour, for several quantisation steps and offsets,
de-duplicated and kept within an area range, largest first. It suits images of flat-ish
coloured objects (the bundled shapes set); it is no substitute for MCG on natural images.
"""
import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def equal_colour_regions(quantised):
    """4-connected components of equal quantised colour.

    Args:
        quantised: (H, W, C) int array.

    Returns:
        (H, W) int64 component ids, number of components.
    """
    h, w = quantised.shape[:2]
    idx = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for a, b, sa, sb in ((idx[:, :-1], idx[:, 1:], quantised[:, :-1], quantised[:, 1:]),
                         (idx[:-1], idx[1:], quantised[:-1], quantised[1:])):
        same = (sa == sb).all(-1)
        rows.append(a[same])
        cols.append(b[same])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(h * w, h * w))
    n, labels = connected_components(graph, directed=False)
    return labels.reshape(h, w).astype(np.int64), n


def colour_region_proposals(image, steps=(32, 48, 64), min_area=16, max_fraction=0.85,
                            max_proposals=200):
    """Colour-region proposals of one image (see the module docstring).

    Args:
        image: (3, H, W) tensor, RGB 0-255.
        steps: quantisation steps; each is used at offsets 0 and step/2.
        min_area: smallest region in pixels; max_fraction: largest region, fraction of H*W.
        max_proposals: keep the largest ones.

    Returns:
        (Q, H, W) bool tensor on ``image``'s device.
    """
    img = image.detach().cpu().float().permute(1, 2, 0).numpy()
    h, w = img.shape[:2]
    keys, masks, areas = set(), [], []
    for step in steps:
        for offset in (0.0, step / 2.0):
            labels, n = equal_colour_regions(np.floor((img + offset) / step).astype(np.int64))
            area = np.bincount(labels.ravel(), minlength=n)
            for comp in np.flatnonzero((area >= min_area) & (area < max_fraction * h * w)):
                mask = labels == comp
                key = np.packbits(mask).tobytes()
                if key not in keys:
                    keys.add(key)
                    masks.append(mask)
                    areas.append(area[comp])
    if not masks:
        return torch.zeros((0, h, w), dtype=torch.bool, device=image.device)
    order = np.argsort(-np.asarray(areas), kind='stable')[:max_proposals]
    return torch.from_numpy(np.stack([masks[i] for i in order])).to(image.device)


def proposals_on_input_grid(masks, img_shape, pad_shape):
    """(Q, h0, w0) bool proposals of the original image -> (Q, *pad_shape) bool on the padded
    input grid (nearest resize to ``img_shape`` = the unpadded input size, zero padding)."""
    img_h, img_w = img_shape
    out = torch.zeros((masks.shape[0],) + tuple(pad_shape), dtype=torch.bool)
    if masks.shape[0]:
        resized = torch.nn.functional.interpolate(
            masks[:, None].float(), size=(img_h, img_w), mode='nearest-exact')[:, 0] > 0.5
        out[:, :img_h, :img_w] = resized
    return out


def colour_proposals_on_input_grid(image, img_shape, **kwargs):
    """(3, H, W) de-normalised RGB input (0-255, padded) -> (Q, H, W) bool colour-region
    proposals of its unpadded ``img_shape`` part (zero on the padding)."""
    img_h, img_w = img_shape
    props = colour_region_proposals(image[:, :img_h, :img_w], **kwargs)
    out = torch.zeros((props.shape[0],) + tuple(image.shape[-2:]), dtype=torch.bool,
                      device=image.device)
    out[:, :img_h, :img_w] = props
    return out


def file_proposals(table, name, ori_shape, img_shape, pad_shape, missing='error'):
    """Proposals of image ``name`` from a ``{file name: [COCO RLE, ...]}`` table (best first,
    at the original size ``ori_shape``) -> (Q, *pad_shape) bool on the padded input grid.

    ``missing``: 'error' (KeyError) or 'empty' for an image absent from the table."""
    from pycocotools import mask as mask_utils
    if name not in table:
        if missing == 'error':
            raise KeyError(f'no proposals for {name} in the proposal file')
        return torch.zeros((0,) + tuple(pad_shape), dtype=torch.bool)
    rles = table[name]
    masks = np.stack([mask_utils.decode(r) for r in rles]) if rles else \
        np.zeros(tuple(ori_shape), np.uint8)[None][:0]
    return proposals_on_input_grid(torch.from_numpy(masks.astype(bool)), img_shape, pad_shape)
