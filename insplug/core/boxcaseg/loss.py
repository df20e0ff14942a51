"""BoxCaseg losses, as in the official release (hustvl/BoxCaseg,
``joint_training/lib/core/pd_loss.py`` and ``function.py::train_pd``).

Shapes: N crops, each S x S (logits already upsampled to the label size).

- Box crops (weak): the MIL projection loss: every row and every column of a crop is a bag;
  its label is the max of the box label along it, its score the max logit along it; binary
  cross-entropy with logits averaged over the 2S bags of all crops (BBTP's tight-box prior).
- A pairwise smoothness term: the mean over the 8 neighbour directions of the mean squared
  difference of sigmoid probabilities (zero padding at the border, as the release's 3 x 3
  convolutions), times 0.05.
- Salient crops (full): per-pixel binary cross-entropy with logits against the pixel label.

The release applies the MIL and pairwise terms to every crop of the batch, salient crops
included (their labels are the saliency masks), and the pixel loss to the salient crops only.
"""
import torch
import torch.nn.functional as F

PAIRWISE_WEIGHT = 0.05


def mil_projection_loss(logits, labels):
    """Row/column multiple-instance loss of the release (``mil_loss``).

    Args:
        logits: (N, 1, S, S) mask logits.
        labels: (N, 1, S, S) {0, 1} box (or mask) labels, float.

    Returns:
        scalar: mean binary cross-entropy over the N x 2S row and column bags.
    """
    n = logits.shape[0]
    pred_bags = torch.cat((logits.amax(dim=2).reshape(n, 1, -1),
                           logits.amax(dim=3).reshape(n, 1, -1)), dim=2)
    label_bags = torch.cat((labels.amax(dim=2).reshape(n, 1, -1),
                            labels.amax(dim=3).reshape(n, 1, -1)), dim=2)
    return F.binary_cross_entropy_with_logits(pred_bags, label_bags)


def neighbour_differences(probs):
    """Differences of each pixel to its 8 neighbours (zero outside the map).

    Args:
        probs: (N, 1, H, W).

    Returns:
        (N, 8, H, W): ``p(y, x) - p(y + dy, x + dx)`` for the release's 8 offsets in its order
        (left, right, up, down, up-left, up-right, down-left, down-right).
    """
    offsets = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
    h, w = probs.shape[-2:]
    padded = F.pad(probs, (1, 1, 1, 1))
    shifted = [padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets]
    return probs - torch.cat(shifted, dim=1)


def pairwise_loss(logits, weight=PAIRWISE_WEIGHT):
    """The release's ``PairwiseLoss``: ``weight * mean_d mean((p - p_d)^2)``.

    Args:
        logits: (N, 1, S, S) mask logits.
        weight: the release's factor 0.05.

    Returns:
        scalar.
    """
    diffs = neighbour_differences(logits.sigmoid())
    return weight * diffs.pow(2).mean()


def salient_loss(logits, labels):
    """Pixel binary cross-entropy with logits of the salient (fully labelled) crops.

    Args:
        logits: (M, 1, S, S) full-branch logits of the M salient crops.
        labels: (M, 1, S, S) {0, 1} saliency labels, float.

    Returns:
        scalar (0 connected to ``logits`` when M == 0).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, labels)


def boxcaseg_losses(weak_logits, labels, full_logits, salient, pairwise_weight=PAIRWISE_WEIGHT):
    """All three terms of ``train_pd`` on one batch of crops.

    Args:
        weak_logits: (N, 1, S, S) weak-branch logits of every crop (upsampled to S).
        labels: (N, 1, S, S) {0, 1} labels: box masks for box crops, saliency masks for salient
            crops.
        full_logits: (M, 1, S, S) full-branch logits of the salient crops (M = salient.sum()).
        salient: (N,) bool, which crops are salient.
        pairwise_weight: the pairwise factor (release 0.05).

    Returns:
        dict ``loss_mil``, ``loss_pairwise``, ``loss_salient`` (scalars).
    """
    return dict(loss_mil=mil_projection_loss(weak_logits, labels),
                loss_pairwise=pairwise_loss(weak_logits, pairwise_weight),
                loss_salient=salient_loss(full_logits, labels[salient]))
