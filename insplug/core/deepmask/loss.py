"""DeepMask / SharpMask losses (``nn.SoftMarginCriterion`` on +-1 labels).

Shapes: M mask windows with O x O logits and G x G labels; S score windows.

The release alternates mask batches and score batches; the mask criterion's gradient is
multiplied by the batch size (``TrainerDeepMask.lua``: ``gradOutputs:mul(batch)``), the score's is
not, so per sample the score term weighs 1/32 of the mask term at batch 32: the paper's
``lambda = 1/32``. Here both are means over windows, with ``score_weight = 1/32``; the configs
scale lr by 32 and weight decay by 1/32 to give the release's updates.
"""
import torch.nn.functional as F
from torch import Tensor


def soft_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Element-wise ``log(1 + exp(-y x))`` with ``y = 2 label - 1``.

    Args:
        logits: any shape. labels: same shape, {0, 1}.

    Returns:
        same shape.
    """
    return F.softplus(-(2 * labels - 1) * logits)


def upsample_mask_logits(logits: Tensor, size: int) -> Tensor:
    """(M, O, O) -> (M, size, size), bilinear with aligned corners (``SpatialReSamplingEx``)."""
    if logits.shape[-1] == size:
        return logits
    return F.interpolate(logits[:, None], (size, size), mode='bilinear',
                         align_corners=True)[:, 0]


def mask_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over windows of the per-pixel mean soft margin; labels (M, G, G) {0, 1} (0 if M=0).

    ``logits`` (M, O, O) are upsampled to G first (the release's training upsampling)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0
    return soft_margin(upsample_mask_logits(logits, labels.shape[-1]), labels).mean()


def score_loss(logits: Tensor, labels: Tensor, weight: float = 1 / 32) -> Tensor:
    """``weight`` x mean soft margin of (S,) score logits against (S,) {0, 1} labels."""
    if logits.shape[0] == 0:
        return logits.sum() * 0
    return weight * soft_margin(logits, labels).mean()
