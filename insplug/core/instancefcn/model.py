"""InstanceFCN batch wiring shared by the framework adapters: pyramid resizing, per-image
targets, the training loss of a batch and the proposals of a batch.

Shapes: B images, (Hp, Wp) the padded normalised batch; at scale s the network input is
(round(s Hp), round(s Wp)) and its feature map (h, w); N_b objects of image b.
"""
import random
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .inference import propose
from .loss import instancefcn_loss
from .targets import CENTER_SHIFT, OBJ_RATIO, SCALE_TOLERANCE, cell_masks, window_assignment

# the paper's settings (Sec. 4): image pyramid 1.5^{-4..1} about a 600-px shorter side; 256
# windows per image, positives : negatives = 1 : 1
DEFAULT_TRAIN_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), num_samples=256,
                         pos_fraction=0.5, mask_weight=1.0, obj_ratio=OBJ_RATIO,
                         center_shift=CENTER_SHIFT, scale_tolerance=SCALE_TOLERANCE)
DEFAULT_TEST_CFG = dict(scales=tuple(1.5 ** e for e in range(-4, 2)), pre_nms=1000,
                        mask_thr=0.5, nms_iou=0.8, max_per_img=1000)

Forward = Callable[[Tensor], Tuple[Tensor, Tensor]]


def resize_batch(images: Tensor, scale: float) -> Tensor:
    """(B, C, Hp, Wp) -> (B, C, round(s Hp), round(s Wp)), bilinear (half-pixel centres)."""
    if scale == 1.0:
        return images
    hp, wp = images.shape[-2:]
    size = (max(1, int(round(hp * scale))), max(1, int(round(wp * scale))))
    return F.interpolate(images, size, mode='bilinear', align_corners=False)


def batch_loss(forward: Forward, images: Tensor, boxes: List[Tensor], masks: List[Tensor],
               stride: int, window: int, cfg: dict) -> dict:
    """Training loss of a batch at one random pyramid scale (Python's ``random``).

    Args:
        forward: normalised images -> (inst (B, k*k, h, w), obj (B, h, w)).
        images: (B, C, Hp, Wp). boxes: B tensors (N_b, 4). masks: B tensors (N_b, Hp, Wp).
        stride: S. window: m. cfg: keys of ``DEFAULT_TRAIN_CFG``.

    Returns:
        dict(loss_objectness, loss_segment).
    """
    cfg = dict(DEFAULT_TRAIN_CFG, **cfg)
    scale = float(random.choice(list(cfg['scales'])))
    x = resize_batch(images, scale)
    inst, obj = forward(x)
    h, w = obj.shape[-2:]
    assignments, cells = [], []
    for b, m in zip(boxes, masks):  # per image targets
        m = m.float()
        if m.shape[0]:
            m = F.interpolate(m[:, None], x.shape[-2:], mode='bilinear',
                              align_corners=False)[:, 0]
        else:
            m = m.new_zeros((0,) + tuple(x.shape[-2:]))
        assignments.append(window_assignment(b.float() * scale, h, w, stride, window,
                                             cfg['obj_ratio'], cfg['center_shift'],
                                             cfg['scale_tolerance']))
        cells.append(cell_masks(m >= 0.5, stride, h, w))
    return instancefcn_loss(inst, obj, assignments, cells, window, cfg['num_samples'],
                            cfg['pos_fraction'], cfg['mask_weight'])


def batch_proposals(forward: Forward, images: Tensor, out_sizes: Sequence[Tuple[int, int]],
                    box_scales: Sequence[float], stride: int, window: int, cfg: dict
                    ) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """Proposals of every image of a batch.

    Args:
        forward, images, stride, window: as :func:`batch_loss`.
        out_sizes: B (H, W) output mask sizes. box_scales: B output pixels per input pixel.
        cfg: keys of ``DEFAULT_TEST_CFG``.

    Returns:
        B tuples (masks (K, H, W) bool, scores (K,), boxes (K, 4)).
    """
    cfg = dict(DEFAULT_TEST_CFG, **cfg)
    wp = images.shape[-1]
    levels = []
    for s in cfg['scales']:  # a fixed, small number of pyramid levels
        x = resize_batch(images, float(s))
        inst, obj = forward(x)
        levels.append((inst, obj, x.shape[-1] / wp))  # the level's actual resize factor
    out = []
    for i, ((height, width), bs) in enumerate(zip(out_sizes, box_scales)):
        out.append(propose([(inst[i], obj[i], s) for inst, obj, s in levels], window, stride,
                           height, width, cfg['pre_nms'], cfg['mask_thr'], cfg['nms_iou'],
                           cfg['max_per_img'], bs))
    return out
