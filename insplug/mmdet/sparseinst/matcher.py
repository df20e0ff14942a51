"""``SparseInstMatcher`` (TASK_UTILS): Hungarian matching maximising dice^alpha * p^beta."""
from typing import List, Optional, Sequence, Tuple

from torch import Tensor

from insplug.core.sparseinst.loss import match_predictions
from insplug.registry import TASK_UTILS


@TASK_UTILS.register_module()
class SparseInstMatcher:
    """Callable matcher; see :func:`insplug.core.sparseinst.loss.match_predictions`.

    Args:
        alpha: exponent of the mask dice (0.8).
        beta: exponent of the class probability (default 1 - alpha = 0.2).
    """

    def __init__(self, alpha: float = 0.8, beta: Optional[float] = None):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'SparseInstMatcher: alpha must lie in [0, 1], got {alpha}')
        self.alpha = alpha
        self.beta = 1.0 - alpha if beta is None else beta

    def __call__(self, cls_logits: Tensor, mask_logits: Tensor, gt_labels: Sequence[Tensor],
                 tgt_masks: Tensor) -> List[Tuple[Tensor, Tensor]]:
        """(B, N, K), (B, N, h, w), B x (M_b,), (M, h, w) -> B (pred_idx, tgt_idx) pairs."""
        return match_predictions(cls_logits, mask_logits, gt_labels, tgt_masks, self.alpha,
                                 self.beta)
