"""SOLOv2 and SOLO inference (framework-free), one image at a time, no per-instance loop.

Shapes: N = sum_l S_l^2 grid cells; K classes; E kernel channels; (h, w) mask-feature size;
C candidates over the score threshold; M kept; (H_img, W_img) the un-padded input;
(H, W) the output (original) size.

AdelaiDet ``SOLOv2.inference_single_image`` / mmdet 3 ``SOLOV2Head._predict_by_feat_single``:
point NMS (2 x 2 max-pool) on the sigmoid scores, cells over ``score_thr`` (0.1), their masks
by dynamic convolution, sigmoid > ``mask_thr`` (0.5), masks of area <= the level's stride
dropped, score x maskness (mean probability inside the mask), the ``nms_pre`` (500) best into
Matrix NMS (:func:`insplug.core.postprocess.nms.matrix_nms`, Gaussian, sigma 2), decayed
scores >= ``update_thr`` (0.05) kept, the ``max_per_img`` (100) best, the soft masks upsampled
x ``mask_stride``, cropped to the input, resized to the output size, thresholded.
SOLO (:func:`solo_inference_single`) differs only in where the candidates' masks come from
(the S^2 maps, or the product of a column and a row map for the decoupled head): WXinlong/SOLO
``SOLOHead.get_seg_single`` / mmdet 3 ``SOLOHead._predict_by_feat_single``.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from insplug.core.postprocess.nms import matrix_nms
from .loss import dynamic_masks

DEFAULT_TEST = dict(score_thr=0.1, mask_thr=0.5, nms_pre=500, update_thr=0.05,
                    max_per_img=100, nms_kernel='gaussian', nms_sigma=2.0)


def point_nms(scores: Tensor, kernel: int = 2) -> Tensor:
    """Keep the local maxima of a 2 x 2 window (SOLO's point NMS).

    Args:
        scores: (B, K, S, S) probabilities.

    Returns:
        (B, K, S, S) with non-maxima set to 0.
    """
    hmax = F.max_pool2d(scores, (kernel, kernel), stride=1, padding=1)
    return scores * (hmax[:, :, :-1, :-1] == scores)


def flatten_levels(cls_scores: Sequence[Tensor], kernel_preds: Sequence[Tensor],
                   strides: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Concatenate the levels' cells (row-major within a level).

    Args:
        cls_scores: L tensors (B, K, S_l, S_l). kernel_preds: L tensors (B, E', S_l, S_l).
        strides: L ints (official SOLOv2: 8, 8, 16, 32, 32).

    Returns:
        scores (B, N, K), kernels (B, N, E'), cell strides (N,) float.
    """
    scores = torch.cat([s.flatten(2).transpose(1, 2) for s in cls_scores], 1)
    kernels = torch.cat([k.flatten(2).transpose(1, 2) for k in kernel_preds], 1)
    cell_strides = torch.cat([kernel_preds[0].new_full((s.shape[-1] * s.shape[-2],), float(st))
                              for s, st in zip(cls_scores, strides)])
    return scores, kernels, cell_strides


def solov2_inference_single(scores: Tensor, kernels: Tensor, cell_strides: Tensor,
                            mask_feat: Tensor, img_shape: Tuple[int, int],
                            ori_shape: Tuple[int, int], mask_stride: int = 4,
                            kernel_size: int = 1, score_thr: float = 0.1, mask_thr: float = 0.5,
                            nms_pre: int = 500, update_thr: float = 0.05,
                            max_per_img: int = 100, nms_kernel: str = 'gaussian',
                            nms_sigma: float = 2.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of one image.

    Args:
        scores: (N, K) after point NMS. kernels: (N, E*k*k). cell_strides: (N,).
        mask_feat: (E, h, w). img_shape: (H_img, W_img). ori_shape: (H, W).

    Returns:
        scores (M,), labels (M,) int64, masks (M, H, W) bool; sorted by score.
    """
    keep = scores > score_thr
    if not keep.any():
        return _empty(scores, ori_shape)
    inds = keep.nonzero()
    probs = dynamic_masks(mask_feat, kernels[inds[:, 0]], kernel_size).sigmoid()
    return postprocess_candidates(scores[keep], inds[:, 1], probs, cell_strides[inds[:, 0]],
                                  img_shape, ori_shape, mask_stride, mask_thr, nms_pre,
                                  update_thr, max_per_img, nms_kernel, nms_sigma)


def _empty(scores: Tensor, ori_shape) -> Tuple[Tensor, Tensor, Tensor]:
    return (scores.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=scores.device),
            torch.zeros((0,) + tuple(ori_shape), dtype=torch.bool, device=scores.device))


def postprocess_candidates(cand_scores: Tensor, labels: Tensor, probs: Tensor,
                           cand_strides: Tensor, img_shape: Tuple[int, int],
                           ori_shape: Tuple[int, int], mask_stride: int = 4,
                           mask_thr: float = 0.5, nms_pre: int = 500, update_thr: float = 0.05,
                           max_per_img: int = 100, nms_kernel: str = 'gaussian',
                           nms_sigma: float = 2.0) -> Tuple[Tensor, Tensor, Tensor]:
    """SOLO / SOLOv2's common tail: area filter, maskness, Matrix NMS, paste.

    Args:
        cand_scores: (C,) scores of the cells over the score threshold. labels: (C,).
        probs: (C, h, w) their mask probabilities at stride ``mask_stride``.
        cand_strides: (C,) their level's stride (masks of area <= stride dropped).

    Returns:
        scores (M,), labels (M,) int64, masks (M, H, W) bool; sorted by score.
    """
    masks = probs > mask_thr
    areas = masks.sum((1, 2)).float()
    keep = areas > cand_strides
    if not keep.any():
        return _empty(cand_scores, ori_shape)
    masks, probs, areas = masks[keep], probs[keep], areas[keep]
    cand_scores, labels = cand_scores[keep], labels[keep]
    cand_scores = cand_scores * (probs * masks).sum((1, 2)) / areas
    order, new_scores = matrix_nms(cand_scores, labels, masks=masks, kernel=nms_kernel,
                                   sigma=nms_sigma, nms_pre=nms_pre, filter_thr=update_thr,
                                   max_num=max_per_img)
    if order.numel() == 0:
        return _empty(cand_scores, ori_shape)
    h, w = img_shape
    fh, fw = probs.shape[-2:]
    soft = F.interpolate(probs[order].unsqueeze(0), size=(fh * mask_stride, fw * mask_stride),
                         mode='bilinear', align_corners=False)[:, :, :h, :w]
    soft = F.interpolate(soft, size=tuple(ori_shape), mode='bilinear',
                         align_corners=False).squeeze(0)
    return new_scores, labels[order], soft > mask_thr


def solo_inference_single(scores: Tensor, cell_strides: Tensor, mask_probs: Tensor = None,
                          probs_x: Tensor = None, probs_y: Tensor = None,
                          num_grids: Sequence[int] = (), img_shape: Tuple[int, int] = None,
                          ori_shape: Tuple[int, int] = None, score_thr: float = 0.1,
                          **kwargs) -> Tuple[Tensor, Tensor, Tensor]:
    """SOLO (vanilla or decoupled) detections of one image.

    Args:
        scores: (N, K) after point NMS. cell_strides: (N,).
        mask_probs: vanilla: (N, h, w) probabilities of every cell's mask (stride 4).
        probs_x, probs_y: decoupled: (sum_l S_l, h, w) column / row probabilities; cell
            (i, j) of level l uses y row ``offset_l + i`` and x column ``offset_l + j``.
        num_grids: S per level (decoupled). kwargs: :func:`postprocess_candidates` options.

    Returns:
        scores (M,), labels (M,) int64, masks (M, H, W) bool.
    """
    keep = scores > score_thr
    if not keep.any():
        return _empty(scores, ori_shape)
    inds = keep.nonzero()
    cells = inds[:, 0]
    if mask_probs is not None:
        probs = mask_probs[cells]
    else:
        grids = torch.tensor(list(num_grids), device=scores.device)
        cell_start = torch.cat([grids.new_zeros(1), (grids ** 2).cumsum(0)[:-1]])
        row_start = torch.cat([grids.new_zeros(1), grids.cumsum(0)[:-1]])
        level = torch.bucketize(cells, (grids ** 2).cumsum(0), right=True)
        local = cells - cell_start[level]
        g = grids[level]
        probs = probs_x[row_start[level] + local % g] * probs_y[row_start[level] + local // g]
    return postprocess_candidates(scores[keep], inds[:, 1], probs, cell_strides[cells],
                                  img_shape, ori_shape, **kwargs)


def solo_mask_probs(mask_logits: Sequence[Tensor], size: Tuple[int, int]) -> Tensor:
    """Sigmoid of every level's mask maps, resized to the stride-4 size and concatenated.

    Args:
        mask_logits: L tensors (B, M_l, h_l, w_l) (M_l = S_l^2 vanilla, S_l decoupled).
        size: (h, w) of level 0's maps (stride 4).

    Returns:
        (B, sum_l M_l, h, w).
    """
    return torch.cat([F.interpolate(m.sigmoid(), size=tuple(size), mode='bilinear',
                                    align_corners=False) for m in mask_logits], 1)
