"""Hungarian (optimal one-to-one) assignment on scipy's ``linear_sum_assignment``.

Shapes: N predictions (queries), M targets of one image, K = min(N, M) matched pairs.

Generic for query-based methods (SparseInst, DETR-style heads): the caller builds an (N, M)
score or cost matrix; these functions only solve the assignment, per image, and return index
tensors on the matrix's device. Images without targets (M = 0) give empty index tensors.
"""
from typing import List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

Assignment = Tuple[Tensor, Tensor]


def linear_assignment(matrix: Tensor, maximize: bool = False) -> Assignment:
    """Optimal assignment of rows (predictions) to columns (targets).

    Args:
        matrix: (N, M) cost (``maximize=False``) or score (``maximize=True``).

    Returns:
        (rows, cols): two (K,) int64 tensors, K = min(N, M), rows ascending; row ``rows[k]``
        is assigned column ``cols[k]`` and the summed cost is minimal (score maximal).
    """
    if matrix.dim() != 2:
        raise ValueError(f'linear_assignment expects an (N, M) matrix, got {tuple(matrix.shape)}')
    device = matrix.device
    if matrix.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty.clone()
    values = matrix.detach().float().cpu()
    if not torch.isfinite(values).all():
        raise ValueError('linear_assignment: the cost/score matrix has NaN or inf entries; '
                         'check the predictions (e.g. NaN losses) or clamp the cost terms')
    rows, cols = linear_sum_assignment(values.numpy(), maximize=maximize)
    return (torch.as_tensor(rows, dtype=torch.int64, device=device),
            torch.as_tensor(cols, dtype=torch.int64, device=device))


def batched_linear_assignment(matrix: Tensor, sizes: Sequence[int],
                              maximize: bool = False) -> List[Assignment]:
    """Per-image assignment from one batched matrix (one solver call per image).

    Args:
        matrix: (B, N, sum(sizes)): the columns of image b are its own targets, the
            ``sizes[b]`` columns after those of images 0..b-1.
        sizes: M_b, number of targets of each image.

    Returns:
        list of B (rows, cols) pairs as in :func:`linear_assignment`; cols index the image's
        own targets (0..M_b-1).
    """
    if matrix.dim() != 3 or matrix.shape[0] != len(sizes) or matrix.shape[2] != sum(sizes):
        raise ValueError(f'batched_linear_assignment: matrix {tuple(matrix.shape)} must be '
                         f'(B={len(sizes)}, N, sum(sizes)={sum(sizes)})')
    values = matrix.detach().float().cpu()
    per_image = values.split(list(sizes), dim=-1)
    results = []
    for b, block in enumerate(per_image):
        rows, cols = linear_assignment(block[b], maximize=maximize)
        results.append((rows.to(matrix.device), cols.to(matrix.device)))
    return results
