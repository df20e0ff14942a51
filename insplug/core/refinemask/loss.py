"""RefineMask losses: boundary-aware refinement (BAR) loss and the semantic foreground loss.

Shapes: N positive RoIs; K mask stages with side lengths S_0 < S_1 < ... (14, 28, 56, 112);
B images with semantic maps of Hf x Wf (stride 4 of the padded batch).

Stages ``0..start_stage`` are trained with plain BCE over the whole RoI. Every later stage k is
trained with BCE averaged over the pixels of a band: the union of the width-``w`` boundary bands of
(a) the binary prediction carried from stage k-1 and (b) the stage k-1 target, resized to S_k.
The prediction carried to the next stage is the one inference would produce (see
:func:`insplug.core.refinemask.inference.merge_stage_logits`).
"""
import torch
import torch.nn.functional as F

from .boundary import boundary_band, resize_binary
from .inference import merge_stage_logits


def refinement_band(prev_pred, prev_target, size, width):
    """Pixels of stage k supervised by the BAR loss.

    Args:
        prev_pred: (N, s, s) bool, the binary prediction carried from stage k-1.
        prev_target: (N, s, s) {0, 1} float, the stage k-1 target.
        size: int S, the side of stage k.
        width: int, boundary band width at stage k-1's resolution.

    Returns:
        (N, S, S) bool.
    """
    band = boundary_band(prev_pred, width) | boundary_band(prev_target, width)
    return resize_binary(band, size)


def masked_bce(logits, targets, region):
    """BCE with logits averaged over the True pixels of ``region`` (0 when it is empty).

    Args:
        logits: (N, S, S). targets: (N, S, S) in [0, 1]. region: (N, S, S) bool.

    Returns:
        scalar tensor.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    return (loss * region).sum() / region.sum().clamp(min=1)


def refinement_losses(stage_logits, stage_targets, boundary_width=2, start_stage=1):
    """Per-stage BAR losses.

    Args:
        stage_logits: list of K tensors (N, S_k, S_k), mask logits of each stage.
        stage_targets: list of K tensors (N, S_k, S_k), binary targets of each stage.
        boundary_width: band width (pixels at the previous stage's resolution).
        start_stage: last stage index trained on the whole RoI.

    Returns:
        list of K scalar tensors.
    """
    if len(stage_logits) != len(stage_targets):
        raise ValueError(f'{len(stage_logits)} stage predictions but {len(stage_targets)} '
                         'stage targets')
    if stage_logits[0].shape[0] == 0:  # no positive RoI: zero losses that keep the graph
        return [logits.sum() * 0 for logits in stage_logits]
    losses = []
    prev_pred = None
    for k, (logits, target) in enumerate(zip(stage_logits, stage_targets)):
        if logits.shape != target.shape:
            raise ValueError(f'stage {k}: prediction {tuple(logits.shape)} and target '
                             f'{tuple(target.shape)} differ')
        if k <= start_stage:
            losses.append(F.binary_cross_entropy_with_logits(logits, target))
            prev_pred = logits.detach() >= 0
            continue
        region = refinement_band(prev_pred, stage_targets[k - 1], logits.shape[-1],
                                 boundary_width)
        losses.append(masked_bce(logits, target, region))
        prev_pred = merge_stage_logits(stage_logits[k - 1].detach(), logits.detach(),
                                       prev_pred) >= 0
    return losses


def refinement_loss(stage_logits, stage_targets, stage_weights, boundary_width=2,
                    start_stage=1):
    """Weighted sum of :func:`refinement_losses`.

    Args:
        stage_logits, stage_targets: as in :func:`refinement_losses`.
        stage_weights: K floats (official: 0.25, 0.5, 0.75, 1.0).

    Returns:
        scalar tensor.
    """
    if len(stage_weights) != len(stage_logits):
        raise ValueError(f'stage_instance_loss_weight has {len(stage_weights)} entries but the '
                         f'head has {len(stage_logits)} stages')
    losses = refinement_losses(stage_logits, stage_targets, boundary_width, start_stage)
    return sum(w * loss for w, loss in zip(stage_weights, losses))


def semantic_loss(logits, target):
    """Mean BCE of the binary foreground map.

    Args:
        logits: (B, Hf, Wf). target: (B, Hf, Wf) in {0, 1}.

    Returns:
        scalar tensor.
    """
    return F.binary_cross_entropy_with_logits(logits, target)


def semantic_target(instance_masks, feat_size, stride):
    """Binary foreground map of each image at the semantic feature resolution.

    The union of an image's instance masks is placed at the top-left of a zero canvas of the
    padded input size (``stride * feat_size``), resized bilinearly to ``feat_size`` and
    thresholded at 0.5.

    Args:
        instance_masks: list of B tensors (M_i, H_i, W_i), M_i may be 0.
        feat_size: (Hf, Wf).
        stride: int, input pixels per semantic feature pixel.

    Returns:
        (B, Hf, Wf) float tensor of {0, 1}.
    """
    hf, wf = feat_size
    height, width = hf * stride, wf * stride
    device = instance_masks[0].device if instance_masks else torch.device('cpu')
    canvas = torch.zeros(len(instance_masks), 1, height, width, device=device)
    for i, masks in enumerate(instance_masks):  # one iteration per image
        if masks.shape[0] == 0:
            continue
        union = masks.bool().any(dim=0)[:height, :width]
        canvas[i, 0, :union.shape[0], :union.shape[1]] = union.float()
    resized = F.interpolate(canvas, size=(hf, wf), mode='bilinear', align_corners=False)
    return (resized[:, 0] >= 0.5).float()
