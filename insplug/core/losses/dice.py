"""Dice coefficient and dice loss on soft masks (framework-free).

Shapes: N predicted masks, M target masks, P pixels per mask (masks are flattened).

With ``squared=True`` (V-Net form, used by SparseInst, CondInst, SOLO)::

    dice(p, t) = 2 * sum(p * t) / (sum(p^2) + sum(t^2) + eps)

and with ``squared=False`` the denominator is ``sum(p) + sum(t) + eps``.
"""
from torch import Tensor

_REDUCTIONS = ('none', 'mean', 'sum')


def _denominator_terms(x: Tensor, squared: bool) -> Tensor:
    return (x * x).sum(-1) if squared else x.sum(-1)


def dice_coefficient(probs: Tensor, targets: Tensor, eps: float = 1e-4,
                     squared: bool = True) -> Tensor:
    """Row-wise dice of paired masks.

    Args:
        probs: (N, P) predicted probabilities.
        targets: (N, P) targets in [0, 1].

    Returns:
        (N,) dice coefficients.
    """
    if probs.shape != targets.shape:
        raise ValueError(f'dice_coefficient: probs {tuple(probs.shape)} and targets '
                         f'{tuple(targets.shape)} must have the same (N, P) shape')
    numerator = 2 * (probs * targets).sum(-1)
    return numerator / (_denominator_terms(probs, squared) + _denominator_terms(targets, squared)
                        + eps)


def pairwise_dice_coefficient(probs: Tensor, targets: Tensor, eps: float = 1e-4,
                              squared: bool = True) -> Tensor:
    """Dice of every prediction against every target (a matching cost).

    Args:
        probs: (N, P) predicted probabilities.
        targets: (M, P) targets in [0, 1].

    Returns:
        (N, M) dice coefficients.
    """
    if probs.shape[-1] != targets.shape[-1]:
        raise ValueError(f'pairwise_dice_coefficient: probs {tuple(probs.shape)} and targets '
                         f'{tuple(targets.shape)} must have the same number of pixels P')
    numerator = 2 * probs @ targets.t()
    denominator = (_denominator_terms(probs, squared)[:, None]
                   + _denominator_terms(targets, squared)[None, :])
    return numerator / (denominator + eps)


def dice_loss(logits: Tensor, targets: Tensor, eps: float = 1e-4, squared: bool = True,
              reduction: str = 'sum', from_logits: bool = True) -> Tensor:
    """``1 - dice`` of paired masks.

    Args:
        logits: (N, P) mask logits (or probabilities when ``from_logits=False``).
        targets: (N, P) targets in [0, 1].
        reduction: 'none' -> (N,), 'mean' or 'sum' -> scalar.

    Returns:
        (N,) or scalar loss.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f'dice_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}')
    probs = logits.sigmoid() if from_logits else logits
    loss = 1 - dice_coefficient(probs, targets.to(probs.dtype), eps=eps, squared=squared)
    if reduction == 'none':
        return loss
    return loss.sum() if reduction == 'sum' else loss.mean()
