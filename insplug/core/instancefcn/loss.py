"""InstanceFCN training loss on sampled windows.

Shapes: B images; (h, w) the feature map; k*k score maps; m the window side; per image T
sampled windows (``num_samples``, 256 in the paper), P of them positive.

Paper (Sec. 4): per image, ``num_samples`` windows are sampled with positives : negatives =
1 : 1 (fewer positives: filled with negatives); the loss is a logistic loss on objectness for
every sampled window plus a per-pixel logistic loss on the assembled m x m segment of each
positive window. Here each term is a mean (objectness over the T B windows, mask over the
valid pixels of the positive windows) and ``mask_weight`` weighs the second (1).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.position_sensitive import assemble_windows

from .targets import window_mask_targets


def sample_windows(assignment: Tensor, num_samples: int, pos_fraction: float = 0.5,
                   generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Random windows of one image.

    Args:
        assignment: (h, w) from :func:`~.targets.window_assignment`.
        num_samples: T. pos_fraction: at most this share of positives.

    Returns:
        flat indices (T',) int64 into h*w (positives first), T' = min(T, h*w); is_pos (T',).
    """
    flat = assignment.flatten()
    pos = torch.nonzero(flat >= 0)[:, 0]
    neg = torch.nonzero(flat < 0)[:, 0]
    pos = pos[torch.randperm(pos.numel(), generator=generator)[:int(num_samples * pos_fraction)]
              .to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator)[:num_samples - pos.numel()]
              .to(neg.device)]
    idx = torch.cat([pos, neg])
    is_pos = torch.arange(idx.numel(), device=idx.device) < pos.numel()
    return idx, is_pos


def instancefcn_loss(inst: Tensor, obj: Tensor, assignments: List[Tensor], cells: List[Tensor],
                     window: int, num_samples: int = 256, pos_fraction: float = 0.5,
                     mask_weight: float = 1.0, generator: Optional[torch.Generator] = None
                     ) -> Dict[str, Tensor]:
    """Objectness + segment losses of a batch.

    Args:
        inst: (B, k*k, h, w) logits. obj: (B, h, w) logits.
        assignments: B tensors (h, w) (:func:`~.targets.window_assignment`).
        cells: B tensors (N_b, h, w) (:func:`~.targets.cell_masks`).
        window: m.

    Returns:
        dict(loss_objectness, loss_segment) scalars.
    """
    b, _, h, w = inst.shape
    obj_logits, obj_labels, seg_logits, seg_targets, seg_valid = [], [], [], [], []
    for i in range(b):  # per image (sampling is per image), not per instance
        idx, is_pos = sample_windows(assignments[i], num_samples, pos_fraction, generator)
        obj_logits.append(obj[i].flatten()[idx])
        obj_labels.append(is_pos.to(obj.dtype))
        pidx = idx[is_pos]
        ys, xs = pidx // w, pidx % w
        half = window // 2
        seg_logits.append(assemble_windows(inst[i:i + 1], torch.zeros_like(ys), ys - half,
                                           xs - half, window))
        t, v = window_mask_targets(cells[i], assignments[i].flatten()[pidx], ys, xs, window)
        seg_targets.append(t.to(inst.dtype))
        seg_valid.append(v)
    obj_logits, obj_labels = torch.cat(obj_logits), torch.cat(obj_labels)
    loss_obj = F.binary_cross_entropy_with_logits(obj_logits, obj_labels)
    logits, targets, valid = torch.cat(seg_logits), torch.cat(seg_targets), torch.cat(seg_valid)
    if valid.any():
        loss_seg = F.binary_cross_entropy_with_logits(logits[valid], targets[valid])
    else:
        loss_seg = inst.sum() * 0
    return dict(loss_objectness=loss_obj, loss_segment=mask_weight * loss_seg)
