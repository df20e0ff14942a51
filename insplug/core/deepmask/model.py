"""DeepMask / SharpMask network: trunk + heads (+ refinement), the window (training) path,
the dense multi-scale proposal path, and the training loss on sampled windows.

Shapes: B images (C x H x W, normalised); N objects per image; M mask windows; S score
windows; K proposals; iSz = ``window_size``, wSz = ``window_size + 2 context``.

Both framework adapters (mmdet, detectron2) wrap :class:`DeepMaskNet`; all maths is here and in
the sibling modules.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from insplug.core.refinemask.boundary import resize_binary

from . import inference as inf
from . import sampling as smp
from .head import DeepMaskHead, SharpMaskRefinement
from .loss import mask_loss, score_loss
from .trunk import DeepMaskResNetTrunk

# the release pads windows and images with 0.5 grey before normalising (ImageNet mean / std)
RELEASE_MEAN = (0.485, 0.456, 0.406)
RELEASE_STD = (0.229, 0.224, 0.225)
# the release's window sampling (train.lua, DataSampler.lua; per image here: mask windows and
# positive / negative score windows) and loss weight (lambda = 1/32)
DEFAULT_TRAIN_CFG = dict(stage='deepmask', mask_per_image=4, pos_per_image=2, neg_per_image=2,
                         shift=16.0, scale_jitter=0.25, obj_size=None, min_area=100,
                         min_side=5, score_weight=1 / 32)
# the release's evalPerImage.lua options (np = 500 there; 1000 for the published proposals)
DEFAULT_TEST_CFG = dict(smin=-2.5, smax=0.5, sstep=0.5, num_proposals=500, mask_thr=0.2,
                        use_refinement=True, release_index=False)


def normalised_grey(mean: Sequence[float], std: Sequence[float], grey: float = 0.5,
                    value_range: float = 255.0) -> Tensor:
    """The 0.5 grey pad value after ``(x - mean) / std`` (mean/std in ``value_range`` units)."""
    return (grey * value_range - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(
        std, dtype=torch.float32)


class DeepMaskNet(nn.Module):
    """DeepMask, optionally with the SharpMask refinement.

    Args:
        depth, base_channels, norm, padding: :class:`DeepMaskResNetTrunk`.
        window_size: iSz (160). context: wSz - iSz = 32 in the release (16 px a side).
        mask_size: oSz (56). label_size: gSz (112 for DeepMask; iSz for SharpMask).
        reduce_channels, embed_channels, score_channels, dropout: :class:`DeepMaskHead`.
        sharpmask: None, or dict(km=32, ks=32, hidden=(64, 64, 64, 32)) for the refinement.
    """

    def __init__(self, depth: int = 50, base_channels: int = 64, norm: str = 'frozen',
                 padding: str = 'symmetric', window_size: int = 160, context: int = 32,
                 mask_size: int = 56, label_size: int = 112, reduce_channels: int = 128,
                 embed_channels: int = 512, score_channels: int = 1024, dropout: float = 0.5,
                 sharpmask: Optional[dict] = None):
        super().__init__()
        self.trunk = DeepMaskResNetTrunk(depth, base_channels, norm, padding)
        stride = self.trunk.stride
        if window_size % stride:
            raise ValueError(f'window_size must be a multiple of {stride}')
        self.window_size, self.context, self.stride = window_size, context, stride
        self.context_size = window_size + context
        self.feat_size = window_size // stride
        self.label_size = label_size
        self.head = DeepMaskHead(self.trunk.out_channels[3], self.feat_size, mask_size,
                                 reduce_channels, embed_channels, score_channels, dropout)
        self.refine = None
        if sharpmask is not None:
            skips = tuple(reversed(self.trunk.out_channels))
            crop = context // (2 * stride)
            sharpmask = dict(dict(crops=(0, 2 * crop, 4 * crop, 8 * crop)), **sharpmask)
            self.refine = SharpMaskRefinement(skips, self.feat_size, embed_channels, **sharpmask)
            self.label_size = window_size

    # ---------------------------------------------------------------- windows (training path)
    def forward_windows(self, windows: Tensor) -> Dict[str, Tensor]:
        """Windows of wSz x wSz -> dict(mask (B, O, O), score (B,)[, refined (B, iSz, iSz)])."""
        c1, l1, l2, l3 = self.trunk(windows)
        crop = self.context // (2 * self.stride)
        l3 = l3[..., crop:l3.shape[-2] - crop, crop:l3.shape[-1] - crop]
        emb_map = self.head.embedding(l3)  # (B, E, 1, 1)
        emb = emb_map.flatten(1)
        out = dict(mask=self.head.mask_logits(emb), score=self.head.score_logits(emb_map)[:, 0, 0])
        if self.refine is not None:
            hmaps = self.refine.horizontal_maps((l3, l2, l1, c1), crop=True)
            out['refined'] = self.refine(emb, hmaps)
        return out

    # ---------------------------------------------------------------- dense (inference path)
    def propose(self, image: Tensor, pad_value: Tensor, scales: Sequence[float],
                num_proposals: int = 500, mask_thr: float = 0.2, use_refinement: bool = True,
                release_index: bool = False) -> Dict[str, Tensor]:
        """Mask proposals of one image: :meth:`dense_maps`, then :meth:`proposals_from_maps`.

        Args:
            image: (C, H, W) normalised. pad_value: (C,) normalised grey.
            scales: pyramid scales. num_proposals: np. mask_thr: probability threshold.
            use_refinement: SharpMask masks when the refinement exists (False: the DeepMask
                branch, the release's ``-dm``).
            release_index: see :func:`inference.select_top_windows`.

        Returns:
            dict(masks (K, H, W) bool, scores (K,), boxes (K, 4)).
        """
        refine = self.refine is not None and use_refinement
        maps = self.dense_maps(image, pad_value, scales, refine)
        return self.proposals_from_maps(maps, tuple(image.shape[-2:]), scales, num_proposals,
                                        mask_thr, refine, release_index)

    def dense_maps(self, image: Tensor, pad_value: Tensor, scales: Sequence[float],
                   refine: bool) -> List[Tensor]:
        """The network part of the dense inference (fixed sizes for a fixed image size).

        Args:
            image: (C, H, W) normalised. pad_value: (C,). scales: P pyramid scales.
            refine: also return the refinement's horizontal maps.

        Returns:
            per scale p, in order: embedding (E, h_p, w_p), score logits (h_p, w_p), and with
            ``refine`` the 4 horizontal maps (C_j, h_j, w_j) of
            :meth:`SharpMaskRefinement.horizontal_maps` (uncropped).
        """
        border = self.window_size // 2
        out = []
        for s in scales:
            x = inf.scaled_padded_image(image, s, border, pad_value)
            c1, l1, l2, l3 = self.trunk(x)
            emb = self.head.embedding(l3)[0]  # (E, h_p, w_p)
            out += [emb, self.head.score_logits(emb[None])[0]]
            if refine:
                out += [m[0] for m in self.refine.horizontal_maps((l3, l2, l1, c1), False)]
        return out

    def proposals_from_maps(self, maps: Sequence[Tensor], size: Sequence[int],
                            scales: Sequence[float], num_proposals: int = 500,
                            mask_thr: float = 0.2, refine: bool = True,
                            release_index: bool = False) -> Dict[str, Tensor]:
        """Proposals from :meth:`dense_maps`' outputs (e.g. an ONNX graph's): window selection,
        mask heads on the selected windows, paste.

        Args:
            maps: :meth:`dense_maps` (same ``scales`` and ``refine``). size: (H, W) image.

        Returns:
            dict(masks (K, H, W) bool, scores (K,), boxes (K, 4)).
        """
        h, w = size
        per = 6 if refine else 2
        embs = [maps[p * per] for p in range(len(scales))]
        scores = [maps[p * per + 1] for p in range(len(scales))]
        hmaps = [list(maps[p * per + 2:p * per + 6]) for p in range(len(scales))]
        probs, scale_idx, rows, cols = inf.select_top_windows(scores, num_proposals,
                                                              release_index)
        k = probs.shape[0]
        emb_sel = embs[0].new_zeros(k, embs[0].shape[0])
        side = self.label_size if refine else self.head.mask_size
        logits = embs[0].new_zeros(k, side, side)
        for p in range(len(scales)):  # one gather per scale, not per proposal
            sel = torch.nonzero(scale_idx == p)[:, 0]
            if sel.numel() == 0:
                continue
            emb_sel[sel] = embs[p][:, rows[sel], cols[sel]].t()
            if refine:
                patches = [inf.gather_windows(m, rows[sel], cols[sel], self.feat_size * 2 ** j,
                                              2 ** j) for j, m in enumerate(hmaps[p])]
                logits[sel] = self.refine(emb_sel[sel], patches)
        if not refine:
            logits = self.head.mask_logits(emb_sel)
        scale_vals = torch.tensor(scales, dtype=embs[0].dtype, device=embs[0].device)[scale_idx]
        masks = inf.paste_window_masks(logits, scale_vals, rows, cols, self.window_size,
                                       self.stride, h, w, mask_thr)
        masks, probs, boxes = inf.proposals_from_masks(masks, probs)
        return dict(masks=masks, scores=probs, boxes=boxes)

    def propose_batch(self, images: Tensor, image_sizes: Sequence[Sequence[int]],
                      pad_value: Tensor, out_sizes: Optional[Sequence[Sequence[int]]] = None,
                      **test_opts) -> List[Dict[str, Tensor]]:
        """:meth:`propose` on each image's valid area of a padded batch.

        Args:
            images: (B, C, Hp, Wp). image_sizes: B (h, w). pad_value: (C,).
            out_sizes: optional B (H, W): masks resized there (bilinear, aligned corners,
                >= 0.5) and boxes recomputed.
            test_opts: :meth:`propose` keyword arguments.

        Returns:
            B dicts (masks (K, h, w) or (K, H, W) bool, scores (K,), boxes (K, 4)).
        """
        results = []
        for b, (h, w) in enumerate(image_sizes):  # per image (a pyramid each), not per object
            res = self.propose(images[b, :, :h, :w], pad_value, **test_opts)
            if out_sizes is not None and tuple(out_sizes[b]) != (h, w):
                masks = resize_binary(res['masks'], tuple(out_sizes[b]))
                res = dict(zip(('masks', 'scores', 'boxes'),
                               inf.proposals_from_masks(masks, res['scores'])))
            results.append(res)
        return results

    # ---------------------------------------------------------------- training
    def sample_windows(self, images: Tensor, image_sizes: Sequence[Sequence[int]],
                       gt_boxes: List[Tensor], gt_masks: List[Tensor], pad_value: Tensor,
                       cfg: dict) -> Dict[str, Tensor]:
        """Sample and crop the training windows of a batch (the release's ``DataSampler``).

        Args:
            images: (B, C, Hp, Wp) normalised batch. image_sizes: B (h, w) valid sizes.
            gt_boxes: B tensors (N_b, 4). gt_masks: B tensors (N_b, Hp', Wp') {0, 1} (at least
                the valid area). pad_value: (C,).
            cfg: dict(mask_per_image, pos_per_image, neg_per_image, shift=16, scale_jitter=0.25,
                obj_size=None (release: ceil(iSz 128/224)), min_area=100, min_side=5).

        Returns:
            dict(mask_inputs (M, C, wSz, wSz), mask_labels (M, G, G), score_inputs (S, C, wSz,
            wSz), score_labels (S,)).
        """
        obj = cfg.get('obj_size') or smp.release_obj_size(self.window_size)
        shift, jit = cfg.get('shift', 16.0), cfg.get('scale_jitter', 0.25)
        n_mask = cfg.get('mask_per_image', 4)
        n_pos, n_neg = cfg.get('pos_per_image', 2), cfg.get('neg_per_image', 2)
        min_area, min_side = cfg.get('min_area', 100), cfg.get('min_side', 5)
        images = images.clone()
        pad = pad_value.view(-1, 1, 1).to(images)
        for b, (h, w) in enumerate(image_sizes):  # grey outside each image's valid area
            images[b, :, h:, :] = pad
            images[b, :, :, w:] = pad
        m_idx, m_win, m_lbl, s_idx, s_win, s_lbl = [], [], [], [], [], []
        dev = images.device
        for b, (h, w) in enumerate(image_sizes):  # per image, vectorised over its objects
            boxes = gt_boxes[b].to(dev, torch.float32)
            masks = gt_masks[b].to(dev)
            wh = boxes[:, 2:] - boxes[:, :2]
            good = ((masks.flatten(1).sum(1) >= min_area) & (wh.min(1).values >= min_side))
            good = torch.nonzero(good)[:, 0]
            if good.numel():
                pick = good[torch.randint(good.numel(), (n_mask,), device=dev)]
                win = smp.jitter_mask_windows(boxes[pick], obj, self.context_size, shift, jit)
                region = smp.label_regions(win, self.window_size, self.context_size)
                m_lbl.append(smp.crop_mask_targets(masks[pick], region, self.label_size))
                m_win.append(win)
                m_idx.append(torch.full((n_mask,), b, dtype=torch.long, device=dev))
            pos_win, valid = smp.positive_score_windows(boxes, obj, self.context_size)
            valid = torch.nonzero(valid)[:, 0]
            if valid.numel() and n_pos:
                pick = valid[torch.randint(valid.numel(), (n_pos,), device=dev)]
                s_win.append(pos_win[pick])
                s_lbl.append(torch.ones(n_pos, device=dev))
                s_idx.append(torch.full((n_pos,), b, dtype=torch.long, device=dev))
            if n_neg:
                s_win.append(smp.negative_score_windows(boxes, h, w, n_neg, obj,
                                                        self.context_size, shift))
                s_lbl.append(torch.zeros(n_neg, device=dev))
                s_idx.append(torch.full((n_neg,), b, dtype=torch.long, device=dev))
        out = {}
        cs = self.context_size
        cat = (lambda xs, shape: torch.cat(xs) if xs else images.new_zeros(shape))
        m_idx, m_win = cat(m_idx, (0,)).long(), cat(m_win, (0, 4))
        s_idx, s_win = cat(s_idx, (0,)).long(), cat(s_win, (0, 4))
        out['mask_inputs'] = smp.crop_windows(images, m_idx, m_win, cs, pad_value)
        out['mask_labels'] = cat(m_lbl, (0, self.label_size, self.label_size))
        out['score_inputs'] = smp.crop_windows(images, s_idx, s_win, cs, pad_value)
        out['score_labels'] = cat(s_lbl, (0,))
        return out

    def loss_windows(self, samples: Dict[str, Tensor], score_weight: float = 1 / 32,
                     stage: str = 'deepmask') -> Dict[str, Tensor]:
        """Losses on sampled windows.

        Args:
            samples: :meth:`sample_windows` output.
            score_weight: lambda (1/32).
            stage: 'deepmask' (mask + score losses) or 'sharpmask' (refinement mask loss only,
                the release's second stage, hfreq = 0).

        Returns:
            dict of scalar losses: loss_mask, loss_score (deepmask) or loss_refine (sharpmask).
        """
        m_in, s_in = samples['mask_inputs'], samples['score_inputs']
        n_mask = m_in.shape[0]
        if stage == 'sharpmask':
            out = self.forward_windows(m_in)
            return dict(loss_refine=mask_loss(out['refined'], samples['mask_labels']))
        out = self.forward_windows(torch.cat([m_in, s_in]))
        return dict(loss_mask=mask_loss(out['mask'][:n_mask], samples['mask_labels']),
                    loss_score=score_loss(out['score'][n_mask:], samples['score_labels'],
                                          score_weight))
