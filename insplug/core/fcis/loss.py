"""FCIS losses with online hard example mining (release: ``resnet_v1_101_fcis.py`` training
branch and ``fcis/operator_py/box_annotator_ohem.py``; COCO config ``LOSS_WEIGHT = (1, 10, 1)``,
``BATCH_ROIS_OHEM = 128``).

Shapes: M RoIs of the batch (every image's targets concatenated); K classes (0 = background);
S x S mask cells; 4 K_reg box outputs.

OHEM (no gradient): per-RoI losses ``cls = -log(softmax + 1e-14)[label]``,
``seg = mean over the S^2 cells of -log(softmax + 1e-14)[target]`` (ignored cells count 0 but
are in the mean), ``bbox = sum of weight * smooth_l1(pred - target)``; the ``ohem_rois``
RoIs of largest ``1 * cls + 10 * seg + 1 * bbox`` stay, the others get label -1, mask -1 and
box weight 0. In the release the selection runs per device over one image; here per image.

Losses (MXNet ``SoftmaxOutput`` / ``MakeLoss`` gradients written as values):
* ``loss_cls``: mean cross-entropy over the RoIs with label != -1 (``normalization='valid'``),
  times ``loss_weights[0]``;
* ``loss_seg``: sum of the per-cell 2-way cross-entropy over cells with target != -1, times
  ``loss_weights[1] / ohem_rois`` (``normalization='null'``, ``grad_scale = 10 / 128``);
* ``loss_bbox``: sum of ``weight * smooth_l1(sigma = 1)``, times ``loss_weights[2] / ohem_rois``.
Per image the release normalises by its 128 RoIs; with B images per batch the sums are divided
by ``B * ohem_rois`` (the mean over images of the release's per-image losses).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_WEIGHTS = (1.0, 10.0, 1.0)


def smooth_l1(x: Tensor, sigma: float = 1.0) -> Tensor:
    """MXNet ``smooth_l1(scalar=sigma)``: 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else
    |x| - 0.5 / sigma^2.

    Args:
        x: any shape.

    Returns:
        same shape.
    """
    s2 = sigma * sigma
    ax = x.abs()
    return torch.where(ax < 1.0 / s2, 0.5 * s2 * x * x, ax - 0.5 / s2)


def per_roi_losses(cls_score: Tensor, seg_pair: Tensor, bbox_pred: Tensor, labels: Tensor,
                   mask_targets: Tensor, bbox_targets: Tensor, bbox_weights: Tensor):
    """The release's OHEM ranking losses (no gradient).

    Args:
        cls_score: (M, K); seg_pair: (M, 2, S, S) logits of the labelled class;
        bbox_pred: (M, 4 K_reg); labels: (M,); mask_targets: (M, S, S) in {-1, 0, 1};
        bbox_targets, bbox_weights: (M, 4 K_reg).

    Returns:
        cls, seg, bbox: each (M,).
    """
    with torch.no_grad():
        prob = F.softmax(cls_score.double(), 1) + 1e-14
        cls = -torch.log(prob.gather(1, labels.clamp(min=0)[:, None])[:, 0])
        cls = torch.where(labels == -1, torch.zeros_like(cls), cls)
        seg_prob = F.softmax(seg_pair.double(), 1) + 1e-14
        tgt = mask_targets.long()
        picked = seg_prob.gather(1, tgt.clamp(min=0)[:, None])[:, 0]
        seg = torch.where(tgt != -1, -torch.log(picked), torch.zeros_like(picked))
        seg = seg.flatten(1).mean(1)
        bbox = (bbox_weights.double() * smooth_l1(bbox_pred.double() - bbox_targets.double())
                ).sum(1)
    return cls, seg, bbox


def ohem_select(cls_score: Tensor, seg_pair: Tensor, bbox_pred: Tensor, labels: Tensor,
                mask_targets: Tensor, bbox_targets: Tensor, bbox_weights: Tensor,
                num_keep: int = 128, loss_weights=LOSS_WEIGHTS):
    """Keep the ``num_keep`` hardest RoIs of one image (see the module docstring).

    Args: as :func:`per_roi_losses`.

    Returns:
        labels (M,), mask_targets (M, S, S), bbox_weights (M, 4 K_reg) with the easy RoIs
        ignored.
    """
    cls, seg, bbox = per_roi_losses(cls_score, seg_pair, bbox_pred, labels, mask_targets,
                                    bbox_targets, bbox_weights)
    total = loss_weights[0] * cls + loss_weights[1] * seg + loss_weights[2] * bbox
    order = torch.argsort(total, descending=True, stable=True)
    drop = order[num_keep:]
    labels = labels.clone()
    mask_targets = mask_targets.clone()
    bbox_weights = bbox_weights.clone()
    labels[drop] = -1
    mask_targets[drop] = -1
    bbox_weights[drop] = 0
    return labels, mask_targets, bbox_weights


def fcis_losses(cls_score: Tensor, seg_pair: Tensor, bbox_pred: Tensor, labels: Tensor,
                mask_targets: Tensor, bbox_targets: Tensor, bbox_weights: Tensor,
                num_images: int = 1, ohem_rois: int = 128, loss_weights=LOSS_WEIGHTS):
    """The three head losses (after OHEM).

    Args:
        cls_score: (M, K); seg_pair: (M, 2, S, S); bbox_pred: (M, 4 K_reg); labels: (M,)
        with -1 ignored; mask_targets: (M, S, S) with -1 ignored; bbox_targets, bbox_weights:
        (M, 4 K_reg); num_images: B; ohem_rois: the release's per-image normaliser (128).

    Returns:
        dict of scalar losses ``loss_cls``, ``loss_seg``, ``loss_bbox``.
    """
    valid = labels != -1
    ce = F.cross_entropy(cls_score, labels.clamp(min=0), reduction='none')
    loss_cls = (ce * valid).sum() / valid.sum().clamp(min=1)
    tgt = mask_targets.long()
    seg_ce = F.cross_entropy(seg_pair, tgt.clamp(min=0), reduction='none')
    loss_seg = (seg_ce * (tgt != -1)).sum() / (num_images * ohem_rois)
    loss_bbox = (bbox_weights * smooth_l1(bbox_pred - bbox_targets)).sum() / (
        num_images * ohem_rois)
    return dict(loss_cls=loss_weights[0] * loss_cls, loss_seg=loss_weights[1] * loss_seg,
                loss_bbox=loss_weights[2] * loss_bbox)
