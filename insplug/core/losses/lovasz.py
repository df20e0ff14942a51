"""Lovasz hinge and Lovasz-softmax: convex surrogates of the Jaccard (IoU) loss (Berman et al.,
CVPR 2018).

Shape shorthand: B masks (images or instances) of P pixels each; any (B, H, W) input is flattened
to (B, P). ``logits`` are real scores (positive = foreground), ``labels`` are {0, 1}.

The hinge errors ``e = max(1 - logit * sign, 0)`` (``sign = 2 * label - 1``) are fed to the
Lovasz extension of the Jaccard loss ``J(M) = |M| / |F u M|`` (M: mispredicted pixels, F: the
foreground). With the errors sorted in decreasing order, the extension is the dot product of the
sorted errors with the increments of J over the growing prefixes, which is what
:func:`jaccard_increments` computes.
"""
import torch
from torch import Tensor


def jaccard_increments(sorted_labels: Tensor) -> Tensor:
    """Increments of the Jaccard loss along prefixes of pixels sorted by decreasing error.

    Args:
        sorted_labels: (B, P) {0, 1} float labels, each row sorted by decreasing hinge error.

    Returns:
        (B, P) float: ``J(first k+1 pixels) - J(first k pixels)`` at column k.
    """
    labels = sorted_labels
    num_fg = labels.sum(dim=1, keepdim=True)
    inter = num_fg - labels.cumsum(dim=1)          # foreground still predicted right
    union = num_fg + (1.0 - labels).cumsum(dim=1)  # foreground plus false positives so far
    jaccard = 1.0 - inter / union.clamp(min=1e-12)
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def lovasz_hinge_batched(logits: Tensor, labels: Tensor, valid: Tensor = None) -> Tensor:
    """Lovasz hinge of every row separately.

    Args:
        logits: (B, P) float scores.
        labels: (B, P) {0, 1} targets (bool, int or float).
        valid: optional (B, P) bool; pixels outside it are left out of their row's loss.

    Returns:
        (B,) loss of each row (0 for a row without valid pixels).
    """
    if logits.shape != labels.shape or logits.dim() != 2:
        raise ValueError(f'lovasz_hinge_batched: `logits` {tuple(logits.shape)} and `labels` '
                         f'{tuple(labels.shape)} must both be (B, P)')
    if logits.shape[1] == 0:
        return logits.sum(dim=1) * 0.0
    labels = labels.to(logits.dtype)
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    if valid is not None:
        # invalid pixels sort last with label 0: they change neither the prefixes nor |F|
        errors = torch.where(valid, errors, torch.full_like(errors, float('-inf')))
        labels = labels * valid.to(labels.dtype)
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    increments = jaccard_increments(torch.gather(labels, 1, order))
    return (torch.relu(errors_sorted) * increments).sum(dim=1)


def lovasz_hinge_flat(logits: Tensor, labels: Tensor) -> Tensor:
    """Lovasz hinge of one flattened mask.

    Args:
        logits: (P,) float scores.
        labels: (P,) {0, 1} targets.

    Returns:
        scalar loss.
    """
    return lovasz_hinge_batched(logits.reshape(1, -1), labels.reshape(1, -1))[0]


def lovasz_hinge(logits: Tensor, labels: Tensor, per_image: bool = True,
                 valid: Tensor = None) -> Tensor:
    """Lovasz hinge of a batch of binary masks.

    Args:
        logits: (B, P) or (B, H, W) float scores.
        labels: same shape as ``logits``, {0, 1} targets.
        per_image: True: mean of the B per-mask losses; False: one loss over all pixels pooled.
        valid: optional bool of the same shape; pixels outside it are ignored.

    Returns:
        scalar loss (0 with a gradient path when B == 0).
    """
    if logits.shape != labels.shape:
        raise ValueError(f'lovasz_hinge: `labels` shape {tuple(labels.shape)} must equal '
                         f'`logits` shape {tuple(logits.shape)}')
    if logits.dim() < 1:
        raise ValueError('lovasz_hinge: `logits` needs a batch dimension, (B, P) or (B, H, W)')
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    num = logits.shape[0]
    shape = (num, logits.numel() // num) if per_image else (1, logits.numel())
    logits, labels = logits.reshape(shape), labels.reshape(shape)
    if valid is not None:
        valid = valid.reshape(shape).bool()
    return lovasz_hinge_batched(logits, labels, valid).mean()


# ---------------------------------------------------------------------------------------------
# Multi-class Lovasz-softmax (official bermanmaxim/LovaszSoftmax ``pytorch/lovasz_losses.py``).
# Shape shorthand: P pixels, C classes (C >= 2), K classes averaged.
# ---------------------------------------------------------------------------------------------

def lovasz_softmax_flat(probas: Tensor, labels: Tensor, classes='present') -> Tensor:
    """Lovasz-softmax of flattened pixels, all classes at once.

    For each class c the errors ``|[label == c] - p_c|`` are fed to the Lovasz extension of
    the Jaccard loss of class c (:func:`jaccard_increments` on the errors sorted in decreasing
    order); the result is the mean over the classes.

    Args:
        probas: (P, C) class probabilities (softmax output), C >= 2.
        labels: (P,) long in [0, C).
        classes: 'present' (mean over the classes occurring in ``labels``), 'all', or a list of
            class indices to average.

    Returns:
        scalar loss; 0 (with a gradient path) when P == 0 or no class is averaged (the
        release's ``mean`` of an empty list).
    """
    if probas.dim() != 2 or labels.shape != probas.shape[:1]:
        raise ValueError(f'lovasz_softmax_flat: `probas` must be (P, C) and `labels` (P,), got '
                         f'{tuple(probas.shape)} and {tuple(labels.shape)}')
    num_classes = probas.shape[1]
    if num_classes < 2:
        raise ValueError('lovasz_softmax_flat needs C >= 2 softmax probabilities; for one '
                         'sigmoid output use lovasz_hinge')
    if probas.shape[0] == 0:
        return probas.sum() * 0.0
    if isinstance(classes, str):
        if classes not in ('present', 'all'):
            raise ValueError(f"lovasz_softmax: classes must be 'present', 'all' or a list, got "
                             f'{classes!r}')
        class_ids = torch.arange(num_classes, device=probas.device)
    else:
        class_ids = torch.as_tensor(list(classes), dtype=torch.long, device=probas.device)
    fg = (labels[None, :] == class_ids[:, None]).to(probas.dtype)  # K, P
    errors = (fg - probas[:, class_ids].t()).abs()
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    losses = (errors_sorted * jaccard_increments(torch.gather(fg, 1, order))).sum(dim=1)
    if classes == 'present':
        losses = losses[fg.sum(dim=1) > 0]
    if losses.numel() == 0:
        return probas.sum() * 0.0
    return losses.mean()


def flatten_probas(probas: Tensor, labels: Tensor, ignore=None):
    """(B, C, H, W) probabilities and (B, H, W) labels -> (P, C), (P,) without ``ignore`` pixels."""
    num_classes = probas.shape[1]
    probas = probas.permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    valid = labels != ignore
    return probas[valid], labels[valid]


def lovasz_softmax(probas: Tensor, labels: Tensor, classes='present', per_image: bool = False,
                   ignore=None) -> Tensor:
    """Multi-class Lovasz-softmax loss.

    Args:
        probas: (B, C, H, W) class probabilities (softmax of the logits).
        labels: (B, H, W) long in [0, C) or ``ignore``.
        classes: 'present' | 'all' | list of classes (see :func:`lovasz_softmax_flat`).
        per_image: mean of the per-image losses instead of one loss over the batch (the
            release's default False).
        ignore: label value left out (void), e.g. 255.

    Returns:
        scalar loss.
    """
    if probas.dim() != 4 or labels.shape != (probas.shape[0],) + probas.shape[2:]:
        raise ValueError(f'lovasz_softmax: `probas` must be (B, C, H, W) and `labels` '
                         f'(B, H, W), got {tuple(probas.shape)} and {tuple(labels.shape)}')
    if per_image:
        if probas.shape[0] == 0:
            return probas.sum() * 0.0
        return torch.stack([lovasz_softmax_flat(*flatten_probas(p[None], l[None], ignore),
                                                classes=classes)
                            for p, l in zip(probas, labels)]).mean()
    return lovasz_softmax_flat(*flatten_probas(probas, labels, ignore), classes=classes)
