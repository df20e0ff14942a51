"""SparseInst training: targets, bipartite matching and the criterion (paper Sec. 3.4).

Shapes: B images; N predictions per image; K classes; M_b targets of image b and
M = sum(M_b); T = sum(min(N, M_b)) matched pairs; h x w the predicted mask size (stride 4),
P = h * w; Hp x Wp the padded batch input size.

Matching (no gradient): for prediction i and target j of one image,
``score = dice(sigmoid(mask_i), target_j) ** alpha * sigmoid(cls_i)[label_j] ** beta``
(alpha = 0.8, beta = 1 - alpha), maximised by the Hungarian algorithm.
Losses: sigmoid focal loss (alpha 0.25, gamma 2) over all B*N predictions against one-hot
matched labels, summed and divided by the number of targets (weight 2); per-pixel BCE
between matched masks and bilinearly resized targets, averaged (weight 5); dice loss summed
over matched pairs and divided by the number of targets (weight 2); BCE of the objectness
logit against the IoU of the binarised matched mask with its target, averaged (weight 1).

Two fixes of the release (hustvl/SparseInst, sparseinst/loss.py), kept on purpose
(docs/deviations/sparseinst.md; tested against golden data in tests/parity):

* a batch without any target: the release's matcher returns float index tensors and its
  criterion fails indexing with them; here every prediction is a negative of the focal loss
  (normaliser 1) and the mask terms are zero;
* an image with more targets than predictions (M_b > N) before the last image of the batch:
  the release offsets the matched target indices by M_b per image over an array of min(N, M_b)
  pairs per image, so later images' predictions are paired with other images' targets; here
  each pair indexes its own image's targets (offset = targets of the preceding images).
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from insplug.core.losses.dice import dice_loss, pairwise_dice_coefficient
from insplug.core.losses.mask_iou import mask_iou_targets
from insplug.core.matchers.hungarian import batched_linear_assignment

DEFAULT_WEIGHTS = dict(cls=2.0, mask=5.0, dice=2.0, obj=1.0)


def stack_target_masks(gt_masks: Sequence[Tensor], pad_shape: Tuple[int, int],
                       size: Tuple[int, int]) -> Tensor:
    """Zero-pad every image's masks to the batch input size, then resize to the mask size.

    Args:
        gt_masks: B tensors (M_b, H_b, W_b), binary, H_b <= Hp and W_b <= Wp.
        pad_shape: (Hp, Wp).
        size: (h, w) of the predicted masks.

    Returns:
        (M, h, w) float soft targets (bilinear, as the masks are predicted at stride 4).
    """
    hp, wp = pad_shape
    total = sum(int(m.shape[0]) for m in gt_masks)
    ref = gt_masks[0] if len(gt_masks) else torch.zeros(0)
    if total == 0:
        return torch.zeros((0, *size), device=ref.device)
    padded = torch.zeros((total, hp, wp), device=ref.device)
    start = 0
    for b, masks in enumerate(gt_masks):
        if masks.dim() != 3 or masks.shape[1] > hp or masks.shape[2] > wp:
            raise ValueError(f'gt_masks[{b}] has shape {tuple(masks.shape)}; expected '
                             f'(M_b, H_b, W_b) no larger than the padded input {pad_shape}')
        count = masks.shape[0]
        padded[start:start + count, :masks.shape[1], :masks.shape[2]] = masks.float()
        start += count
    return F.interpolate(padded[:, None], size=size, mode='bilinear',
                         align_corners=False)[:, 0]


@torch.no_grad()
def matching_scores(cls_logits: Tensor, mask_logits: Tensor, tgt_labels: Tensor,
                    tgt_masks: Tensor, alpha: float = 0.8, beta: Optional[float] = None) -> Tensor:
    """SparseInst matching score of every prediction against every target of the batch.

    Args:
        cls_logits: (B, N, K).
        mask_logits: (B, N, P) (or (B, N, h, w)).
        tgt_labels: (M,) int64 in [0, K).
        tgt_masks: (M, P) (or (M, h, w)) targets in [0, 1].
        alpha: exponent of the dice term; beta: of the class probability (default 1 - alpha).

    Returns:
        (B, N, M) scores in [0, 1] (float32); only image b's own columns are used for image b.
    """
    beta = 1.0 - alpha if beta is None else beta
    b, n, k = cls_logits.shape
    probs = mask_logits.float().reshape(b * n, -1).sigmoid()
    dice = pairwise_dice_coefficient(probs, tgt_masks.float().reshape(len(tgt_masks), -1))
    cls_prob = cls_logits.float().reshape(b * n, k).sigmoid()[:, tgt_labels]
    return (dice.clamp(min=0) ** alpha * cls_prob ** beta).reshape(b, n, -1)


def match_predictions(cls_logits: Tensor, mask_logits: Tensor, gt_labels: Sequence[Tensor],
                      tgt_masks: Tensor, alpha: float = 0.8,
                      beta: Optional[float] = None) -> List[Tuple[Tensor, Tensor]]:
    """One-to-one assignment per image maximising :func:`matching_scores`.

    Args:
        cls_logits: (B, N, K).
        mask_logits: (B, N, h, w).
        gt_labels: B tensors (M_b,).
        tgt_masks: (M, h, w) the targets of all images, image by image.

    Returns:
        B pairs (pred_idx, tgt_idx) of (min(N, M_b),) int64; tgt_idx indexes image b's targets.
    """
    sizes = [len(labels) for labels in gt_labels]
    if sum(sizes) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=cls_logits.device)
        return [(empty, empty) for _ in sizes]
    labels = torch.cat([x.to(device=cls_logits.device, dtype=torch.int64) for x in gt_labels])
    scores = matching_scores(cls_logits, mask_logits, labels, tgt_masks, alpha, beta)
    return batched_linear_assignment(scores, sizes, maximize=True)


def mask_iou(mask_logits: Tensor, targets: Tensor, pred_threshold: float = 0.4) -> Tensor:
    """Objectness targets: IoU of the binarised predicted masks (probability > 0.4) with the
    binarised targets (> 0.5), via the shared :func:`insplug.core.losses.mask_iou.mask_iou_targets`.

    Args:
        mask_logits: (T, P).
        targets: (T, P) in [0, 1].

    Returns:
        (T,) IoU in [0, 1], detached (0 when both are empty).
    """
    return mask_iou_targets(mask_logits.detach().sigmoid()[:, None], targets[:, None],
                            threshold=pred_threshold)


def check_labels(gt_labels: Sequence[Tensor], gt_masks: Sequence[Tensor], num_classes: int):
    """Raise a clear error on labels outside [0, K) or label/mask count mismatch."""
    for b, (labels, masks) in enumerate(zip(gt_labels, gt_masks)):
        if len(labels) != len(masks):
            raise ValueError(f'image {b}: {len(labels)} gt labels but {len(masks)} gt masks')
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f'image {b}: gt label {int(labels.max())} outside [0, {num_classes})'
                             f': num_classes ({num_classes}) must equal the dataset class count')


def prepare_loss_inputs(outputs: Dict[str, Tensor], gt_masks: Sequence[Tensor],
                        gt_labels: Sequence[Tensor], pad_shape: Tuple[int, int],
                        num_classes: int, alpha: float = 0.8, beta: Optional[float] = None,
                        matcher: Optional[Callable] = None) -> Dict[str, Tensor]:
    """Match predictions to targets and gather everything the losses need.

    Args:
        outputs: decoder outputs ``cls_logits`` (B, N, K), ``mask_logits`` (B, N, h, w),
            ``obj_logits`` (B, N, 1).
        gt_masks: B tensors (M_b, H_b, W_b) binary masks in input (padded-frame) coordinates.
        gt_labels: B tensors (M_b,) int64.
        pad_shape: (Hp, Wp) the padded batch input size.
        alpha, beta: matching exponents, used when ``matcher`` is None.
        matcher: optional callable with the signature of :func:`match_predictions` (without
            alpha/beta), replacing the default matching.

    Returns:
        dict with ``cls_logits`` (B*N, K), ``cls_targets`` (B*N, K) one-hot (zeros = background),
        ``mask_logits`` (T, P), ``mask_targets`` (T, P), ``obj_logits`` (T,),
        ``iou_targets`` (T,), ``num_instances`` (python float, max(M, 1)) and ``indices``.
    """
    cls_logits, mask_logits = outputs['cls_logits'], outputs['mask_logits']
    b, n, k = cls_logits.shape
    if k != num_classes:
        raise ValueError(f'cls_logits have {k} classes but num_classes={num_classes}')
    check_labels(gt_labels, gt_masks, num_classes)
    tgt_masks = stack_target_masks(gt_masks, pad_shape, mask_logits.shape[-2:]).to(mask_logits)
    if matcher is None:
        indices = match_predictions(cls_logits, mask_logits, gt_labels, tgt_masks, alpha, beta)
    else:
        indices = matcher(cls_logits, mask_logits, gt_labels, tgt_masks)

    device = cls_logits.device
    offsets = torch.tensor([0] + [len(x) for x in gt_labels], device=device).cumsum(0)[:-1]
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    tgt_idx = torch.cat([tgt + offsets[i] for i, (_, tgt) in enumerate(indices)])
    labels = torch.cat([x.to(device=device, dtype=torch.int64) for x in gt_labels])

    cls_targets = torch.zeros_like(cls_logits)
    cls_targets[batch_idx, src_idx, labels[tgt_idx]] = 1
    matched_masks = mask_logits[batch_idx, src_idx].flatten(1)
    mask_targets = tgt_masks[tgt_idx].flatten(1)
    return dict(
        cls_logits=cls_logits.reshape(b * n, k), cls_targets=cls_targets.reshape(b * n, k),
        mask_logits=matched_masks, mask_targets=mask_targets,
        obj_logits=outputs['obj_logits'][batch_idx, src_idx, 0],
        iou_targets=mask_iou(matched_masks, mask_targets),
        num_instances=float(max(sum(len(x) for x in gt_labels), 1)), indices=indices)


def criterion_losses(inputs: Dict[str, Tensor], weights: Optional[Dict[str, float]] = None,
                     focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> Dict[str, Tensor]:
    """The four weighted SparseInst losses from :func:`prepare_loss_inputs`.

    Returns:
        dict of scalars ``loss_cls``, ``loss_mask``, ``loss_dice``, ``loss_obj``; the mask
        terms are zero (with gradient paths) when no prediction is matched.
    """
    w = dict(DEFAULT_WEIGHTS, **(weights or {}))
    num = inputs['num_instances']
    loss_cls = sigmoid_focal_loss(inputs['cls_logits'], inputs['cls_targets'], alpha=focal_alpha,
                                  gamma=focal_gamma, reduction='sum') / num
    masks, targets = inputs['mask_logits'], inputs['mask_targets']
    if masks.shape[0] == 0:
        zero = masks.sum() * 0 + inputs['obj_logits'].sum() * 0
        return dict(loss_cls=w['cls'] * loss_cls, loss_mask=zero, loss_dice=zero, loss_obj=zero)
    return dict(
        loss_cls=w['cls'] * loss_cls,
        loss_mask=w['mask'] * F.binary_cross_entropy_with_logits(masks, targets),
        loss_dice=w['dice'] * dice_loss(masks, targets, reduction='sum') / num,
        loss_obj=w['obj'] * F.binary_cross_entropy_with_logits(inputs['obj_logits'],
                                                               inputs['iou_targets']))


def sparseinst_loss(outputs: Dict[str, Tensor], gt_masks: Sequence[Tensor],
                    gt_labels: Sequence[Tensor], pad_shape: Tuple[int, int], num_classes: int,
                    alpha: float = 0.8, beta: Optional[float] = None,
                    weights: Optional[Dict[str, float]] = None) -> Dict[str, Tensor]:
    """Match and compute the SparseInst losses (see :func:`prepare_loss_inputs` for shapes)."""
    inputs = prepare_loss_inputs(outputs, gt_masks, gt_labels, pad_shape, num_classes, alpha,
                                 beta)
    return criterion_losses(inputs, weights)
