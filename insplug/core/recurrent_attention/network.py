"""The recurrent attention network (Ren & Zemel, CVPR 2017), framework-free.

Shapes: B images, C input channels (image + optional extra maps), H x W the fixed model input,
FH x FW the attention patch, T the timespan (max instances + 1), L = h x w the controller CNN's
output locations, D the controller LSTM width, K classes.

One time step (release: ``full_model.py``):

1. external memory: the canvas (B, 1, H, W) of what is segmented so far is concatenated to the
   image for both CNNs (``ctrl_add_canvas`` / ``attn_add_canvas``);
2. box network: controller CNN -> an LSTM (state reset at every time step) that reads
   ``num_ctrl_rnn_iter`` soft-attention glimpses of the L feature locations (uniform first, then
   a softmax from the glimpse MLP) -> controller MLP -> 9 numbers: centre (2), log size (2),
   log variance (2, ``dynamic_var``), patch gain, box gain, output gain (log);
3. the Gaussian filter bank reads an FH x FW patch of image + canvas (attention.py);
4. segmentation network: patch CNN -> DCNN (optional skips from the patch CNN) -> a patch mask
   pasted to full size by the transposed filter bank, ``sigmoid(exp(g) * paste + (-5))``;
5. scoring network: ``sigmoid(Linear([h_lstm, patch CNN features]))``;
6. the canvas takes the max of itself and the new mask (or the ground truth fed by the
   training schedule's "knob"), gradient stopped (``stop_canvas_grad``).

The box LSTM is a fully connected LSTM over glimpse-pooled CNN features, not a ConvLSTM (the
release's ``nnlib.lstm``); its update reuses :func:`insplug.core.recurrent.lstm_gates_update`.
Every batch normalisation keeps one set of parameters and running statistics per time step
(the release's ``nnlib.batch_norm`` is instantiated anew at each call), eps 1e-3, momentum 0.1.

``stage='box'`` is the release's box pretraining model (``box_model.py``): no segmentation
network; the canvas always takes the greedily matched, noised ground truth; a separate score
layer reads the LSTM state only.
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from insplug.core.recurrent import lstm_gates_update

from .attention import (attention_filters, box_corners, extract_patch, gt_boxes_from_masks,
                        normalized_log_var, paste_patch, soft_attention_box,
                        unnormalize_attention)
from .loss import corner_box_iou, greedy_match, union_eps

#: release constants: box and output sigmoid offsets (``attn_box_beta``, ``y_out_beta``)
BOX_BETA = -5.0
OUT_BETA = -5.0
#: ``fixed_gamma``: log patch gain 0, log output gain 2
FIXED_ATTN_LG_GAMMA = 0.0
FIXED_OUT_LG_GAMMA = 2.0


def _init_weight(weight: Tensor, std: float = 0.01):
    """The release's initialiser: truncated normal, std 0.01 (two std)."""
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class TimeBatchNorm(nn.Module):
    """One BatchNorm2d per time step (the release's per-call batch norm), eps 1e-3.

    forward(x (B, C, h, w), t) -> (B, C, h, w).
    """

    def __init__(self, channels: int, timespan: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1)
                                   for _ in range(timespan))

    def forward(self, x: Tensor, t: int) -> Tensor:
        return self.norms[t](x)


class ConvStack(nn.Module):
    """The release's ``nnlib.cnn``: per layer conv (SAME) -> BN (per step) -> ReLU -> max-pool.

    forward(x (B, C0, h, w), t) -> list of every layer's output (B, C_i, h_i, w_i).
    """

    def __init__(self, in_channels: int, filter_sizes: Sequence[int], depths: Sequence[int],
                 pools: Sequence[int], timespan: int, use_bn: bool = True):
        super().__init__()
        chans = [in_channels] + list(depths)
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2)
                                   for i, k in enumerate(filter_sizes))
        self.norms = nn.ModuleList(TimeBatchNorm(c, timespan) if use_bn else nn.Identity()
                                   for c in depths)
        self.pools = list(pools)
        self.use_bn = use_bn
        for conv in self.convs:
            _init_weight(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, t: int) -> List[Tensor]:
        outs = []
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = conv(x)
            x = norm(x, t) if self.use_bn else x
            x = F.relu(x)
            if pool > 1:  # TF 'SAME' pooling: partial windows kept
                x = F.max_pool2d(x, pool, pool, ceil_mode=True)
            outs.append(x)
        return outs


class DeconvStack(nn.Module):
    """The release's ``nnlib.dcnn``: per layer [concat skip] -> transposed conv (stride = unpool
    ratio, output = input * ratio) -> BN (per step) -> ReLU (the last layer too).

    forward(x (B, C0, h, w), skips (list, None where no skip), t) -> last output.
    """

    def __init__(self, in_channels: int, filter_sizes: Sequence[int], depths: Sequence[int],
                 pools: Sequence[int], skip_channels: Sequence[int], timespan: int,
                 use_bn: bool = True):
        super().__init__()
        self.deconvs = nn.ModuleList()
        in_ch = in_channels
        for k, out_ch, pool, skip_ch in zip(filter_sizes, depths, pools, skip_channels):
            in_ch += skip_ch
            self.deconvs.append(nn.ConvTranspose2d(in_ch, out_ch, k, stride=pool,
                                                   padding=k // 2, output_padding=pool - 1))
            in_ch = out_ch
        self.norms = nn.ModuleList(TimeBatchNorm(c, timespan) if use_bn else nn.Identity()
                                   for c in depths)
        self.use_bn = use_bn
        for deconv in self.deconvs:
            _init_weight(deconv.weight)
            nn.init.zeros_(deconv.bias)

    def forward(self, x: Tensor, skips: Sequence[Optional[Tensor]], t: int) -> Tensor:
        for i, (deconv, norm) in enumerate(zip(self.deconvs, self.norms)):
            if skips[i] is not None:
                x = torch.cat([x, skips[i]], 1)
            x = deconv(x)
            x = norm(x, t) if self.use_bn else x
            x = F.relu(x)
        return x


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    _init_weight(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class GlimpseController(nn.Module):
    """Box network after the CNN: LSTM over soft-attention glimpses + controller MLP.

    forward(feats (B, Cf, h, w)) -> (ctrl (B, 9), h_lstm (B, D), glimpse maps (B, K_iter, L)).
    """

    def __init__(self, feat_channels: int, num_locations: int, hidden_dim: int = 256,
                 num_iters: int = 5, num_glimpse_mlp_layers: int = 2,
                 num_ctrl_mlp_layers: int = 1, ctrl_mlp_dim: int = 256):
        super().__init__()
        self.hidden_dim, self.num_iters = hidden_dim, num_iters
        # LSTM gates (input, forget, output, candidate) from cat([glimpse, h])
        self.lstm = _linear(feat_channels + hidden_dim, 4 * hidden_dim)
        with torch.no_grad():
            self.lstm.bias[hidden_dim:2 * hidden_dim] = 1.0  # the release's forget bias
        dims = [hidden_dim] * num_glimpse_mlp_layers + [num_locations]
        self.glimpse_mlp = nn.ModuleList(_linear(dims[i], dims[i + 1])
                                         for i in range(len(dims) - 1))
        dims = [hidden_dim] + [ctrl_mlp_dim] * (num_ctrl_mlp_layers - 1) + [9]
        self.ctrl_mlp = nn.ModuleList(_linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))

    @staticmethod
    def _mlp(layers, x, last_act=None):
        for i, layer in enumerate(layers):
            x = layer(x)
            x = F.relu(x) if i < len(layers) - 1 else (last_act(x) if last_act else x)
        return x

    def forward(self, feats: Tensor):
        b = feats.shape[0]
        seq = feats.flatten(2).transpose(1, 2)  # (B, L, Cf), locations row-major
        glimpse_map = seq.new_full((b, seq.shape[1]), 1.0 / seq.shape[1])
        h = seq.new_zeros(b, self.hidden_dim)
        c = seq.new_zeros(b, self.hidden_dim)
        maps = []
        for k in range(self.num_iters):
            maps.append(glimpse_map)
            glimpse = (seq * glimpse_map[..., None]).sum(1)
            h, c = lstm_gates_update(self.lstm(torch.cat([glimpse, h], 1)), c)
            if k < self.num_iters - 1:
                glimpse_map = self._mlp(self.glimpse_mlp, h, lambda z: F.softmax(z, -1))
        return self._mlp(self.ctrl_mlp, h), h, torch.stack(maps, 1)


class RecurrentAttentionNet(nn.Module):
    """The whole network; defaults are the release's CVPPP setting (``run_cvppp.sh``).

    Args:
        in_channels: image channels (3).
        extra_channels: extra input maps concatenated to the image (KITTI / Cityscapes: the
            foreground network's 8 orientation + semantic maps, ``add_d_out`` / ``add_y_out``).
        input_size: (H, W) of the fixed model input (CVPPP 224 x 224).
        timespan: T, maximum instances + 1 (CVPPP 21).
        filter_size: (FH, FW) attention patch (48 x 48).
        ctrl_*: controller CNN / LSTM / MLP settings (release flag names).
        attn_*: patch CNN / DCNN settings; ``attn_cnn_skip`` one flag per patch-CNN layer
            (longer lists are read as the release does: reversed, then truncated).
        add_skip_conn: DCNN skip connections from the patch CNN (CVPPP: off).
        fixed_gamma, fixed_var, dynamic_var, squash_ctrl_params, disable_overwrite,
        stop_canvas_grad: release flags (CVPPP: fixed_gamma, stop_canvas_grad).
        num_classes: 1 = the release (no class output); K > 1 adds a class layer next to the
            score layer (insplug addition for multi-class sets).
        stage: 'full' or 'box' (box pretraining, ``box_model.py``).
        box_padding_ratio, min_box_padding: ground-truth box padding (release: 0.2 and
            ``padding + 4`` = 20 px in the full model).
        gt_box_ctr_noise, gt_box_pad_noise, gt_segm_noise: noise of the fed ground truth.
        cumulative_greedy_match: True: a GT greedily matched at one step is not matched again
            (the release's ``grd_match_cum`` is never updated: False reproduces that).
        use_iou_box: greedy-match the fed GT box by the hard IoU of the box corners
            (Cityscapes run) instead of the soft IoU of the soft boxes.
    """

    def __init__(self, in_channels: int = 3, extra_channels: int = 0,
                 input_size: Sequence[int] = (224, 224), timespan: int = 21,
                 filter_size: Sequence[int] = (48, 48),
                 ctrl_cnn_filter_size: Sequence[int] = (3, 3, 3, 3, 3, 3, 3, 3),
                 ctrl_cnn_depth: Sequence[int] = (8, 8, 16, 16, 32, 32, 64, 64),
                 ctrl_cnn_pool: Sequence[int] = (1, 2, 1, 2, 1, 2, 2, 2),
                 ctrl_rnn_hid_dim: int = 256, num_ctrl_rnn_iter: int = 5,
                 num_glimpse_mlp_layers: int = 2, num_ctrl_mlp_layers: int = 1,
                 ctrl_mlp_dim: int = 256,
                 attn_cnn_filter_size: Sequence[int] = (3, 3, 3, 3, 3, 3),
                 attn_cnn_depth: Sequence[int] = (8, 8, 16, 16, 32, 32),
                 attn_cnn_pool: Sequence[int] = (1, 2, 1, 2, 1, 2),
                 attn_dcnn_filter_size: Sequence[int] = (3, 3, 3, 3, 3, 3, 3),
                 attn_dcnn_depth: Sequence[int] = (32, 32, 16, 16, 8, 8, 1),
                 attn_dcnn_pool: Sequence[int] = (2, 1, 2, 1, 2, 1, 1),
                 attn_cnn_skip: Optional[Sequence[bool]] = None, add_skip_conn: bool = False,
                 fixed_gamma: bool = True, fixed_var: bool = False, dynamic_var: bool = False,
                 squash_ctrl_params: bool = False, disable_overwrite: bool = False,
                 stop_canvas_grad: bool = True, ctrl_add_inp: bool = True,
                 ctrl_add_canvas: bool = True, attn_add_inp: bool = True,
                 attn_add_canvas: bool = True, use_bn: bool = True, num_classes: int = 1,
                 stage: str = 'full', box_padding_ratio: float = 0.2,
                 min_box_padding: float = 20.0, gt_box_ctr_noise: float = 0.05,
                 gt_box_pad_noise: float = 0.1, gt_segm_noise: float = 0.3,
                 cumulative_greedy_match: bool = True, use_iou_box: bool = False):
        super().__init__()
        if stage not in ('full', 'box'):
            raise ValueError(f"stage must be 'full' or 'box', got {stage!r}")
        self.height, self.width = int(input_size[0]), int(input_size[1])
        self.filter_h, self.filter_w = int(filter_size[0]), int(filter_size[1])
        self.timespan, self.stage, self.num_classes = timespan, stage, num_classes
        self.in_channels, self.extra_channels = in_channels, extra_channels
        self.fixed_gamma, self.fixed_var, self.dynamic_var = fixed_gamma, fixed_var, dynamic_var
        self.squash_ctrl_params, self.disable_overwrite = squash_ctrl_params, disable_overwrite
        self.stop_canvas_grad = stop_canvas_grad
        self.ctrl_add_inp, self.ctrl_add_canvas = ctrl_add_inp, ctrl_add_canvas
        self.attn_add_inp, self.attn_add_canvas = attn_add_inp, attn_add_canvas
        self.box_padding_ratio, self.min_box_padding = box_padding_ratio, min_box_padding
        self.gt_box_ctr_noise, self.gt_box_pad_noise = gt_box_ctr_noise, gt_box_pad_noise
        self.gt_segm_noise, self.cumulative_greedy_match = gt_segm_noise, cumulative_greedy_match
        self.use_iou_box = use_iou_box

        img_ch = in_channels + extra_channels
        ctrl_in = img_ch * ctrl_add_inp + ctrl_add_canvas
        attn_in = img_ch * attn_add_inp + attn_add_canvas
        self.ctrl_cnn = ConvStack(ctrl_in, ctrl_cnn_filter_size, ctrl_cnn_depth, ctrl_cnn_pool,
                                  timespan, use_bn)
        sub = 1
        for p in ctrl_cnn_pool:
            sub *= p
        num_loc = -(-self.height // sub) * -(-self.width // sub)
        self.controller = GlimpseController(ctrl_cnn_depth[-1], num_loc, ctrl_rnn_hid_dim,
                                            num_ctrl_rnn_iter, num_glimpse_mlp_layers,
                                            num_ctrl_mlp_layers, ctrl_mlp_dim)
        if stage == 'box':
            self.box_score = _linear(ctrl_rnn_hid_dim, 1)
            return
        self.attn_cnn = ConvStack(attn_in, attn_cnn_filter_size, attn_cnn_depth, attn_cnn_pool,
                                  timespan, use_bn)
        n = len(attn_cnn_depth)
        flags = [bool(f) for f in (attn_cnn_skip if attn_cnn_skip is not None else [True] * n)]
        self.skip_flags = [add_skip_conn and f for f in flags[::-1][:n]]
        rev_channels = (list(attn_cnn_depth[::-1][1:]) + [attn_in])[:n]
        skip_channels = [0] + [c if f else 0 for f, c in zip(self.skip_flags, rev_channels)]
        self.attn_dcnn = DeconvStack(attn_cnn_depth[-1], attn_dcnn_filter_size, attn_dcnn_depth,
                                     attn_dcnn_pool, skip_channels, timespan, use_bn)
        asub = 1
        for p in attn_cnn_pool:
            asub *= p
        core_dim = attn_cnn_depth[-1] * -(-self.filter_h // asub) * -(-self.filter_w // asub)
        self.score = _linear(ctrl_rnn_hid_dim + core_dim, 1)
        self.cls = _linear(ctrl_rnn_hid_dim + core_dim, num_classes) if num_classes > 1 else None

    # ------------------------------------------------------------------ teacher (training)
    def make_teacher(self, gt_masks: Tensor, knob_box: Tensor, knob_segm: Tensor) -> Dict:
        """Ground truth fed to the recurrence during training (the release's "knob").

        Args:
            gt_masks: (B, M, H, W) binary masks, zero-padded to a common M (M <= T).
            knob_box: (B, T) {0, 1}: feed the greedily matched GT box at that step.
            knob_segm: (B, T) {0, 1}: feed the matched GT mask into the canvas.

        Returns:
            dict of ``masks``, ``box_gt`` (B, M, H, W) noiseless padded boxes (for the box IoU),
            ``tl_gt`` / ``br_gt`` (B, M, 2) their corners,
            ``ctr_noisy`` / ``size_noisy`` (B, M, 2), ``knob_box``, ``knob_segm``.
        """
        b, m = gt_masks.shape[:2]
        masks = gt_masks.float()
        tl_gt, br_gt, box = gt_boxes_from_masks(masks, self.box_padding_ratio, 0.0,
                                                self.min_box_padding)
        pad = (torch.rand(b, m, 1, device=masks.device) * 2 - 1) * self.gt_box_pad_noise
        shift = (torch.rand(b, m, 2, device=masks.device) * 2 - 1) * self.gt_box_ctr_noise
        tl, br, _ = gt_boxes_from_masks(masks, self.box_padding_ratio + pad, shift,
                                        self.min_box_padding)
        return dict(masks=masks, box_gt=box, tl_gt=tl_gt, br_gt=br_gt, ctr_noisy=(tl + br) / 2,
                    size_noisy=br - tl, knob_box=knob_box.float(), knob_segm=knob_segm.float())

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor, extra: Optional[Tensor] = None,
                teacher: Optional[Dict] = None) -> Dict[str, Tensor]:
        """Run T steps.

        Args:
            images: (B, C, H, W) normalised, at ``input_size``.
            extra: (B, extra_channels, H, W) or None.
            teacher: :meth:`make_teacher` output (training) or None (inference).

        Returns:
            dict: ``masks`` (B, T, H, W) soft masks ('full'), ``scores`` (B, T),
            ``cls_logits`` (B, T, K) or None, ``attn_box`` (B, T, H, W) soft boxes,
            ``ctr`` / ``size`` (B, T, 2) windows in pixels (after GT mixing), ``ctr_norm`` /
            ``lg_size`` (B, T, 2) controller outputs.
        """
        b = images.shape[0]
        if tuple(images.shape[-2:]) != (self.height, self.width):
            raise ValueError(f'images must be {self.height}x{self.width} (the fixed model '
                             f'input), got {tuple(images.shape[-2:])}')
        x = images if extra is None else torch.cat([images, extra], 1)
        canvas = images.new_zeros(b, 1, self.height, self.width)
        matched = None
        if teacher is not None:
            matched = images.new_zeros(teacher['masks'].shape[:2])
        out = {k: [] for k in ('masks', 'scores', 'cls_logits', 'attn_box', 'ctr', 'size',
                               'ctr_norm', 'lg_size')}
        for t in range(self.timespan):
            ctrl_inp = torch.cat([x] * self.ctrl_add_inp + [canvas] * self.ctrl_add_canvas, 1)
            attn_inp = torch.cat([x] * self.attn_add_inp + [canvas] * self.attn_add_canvas, 1)
            ctrl, h_lstm, _ = self.controller(self.ctrl_cnn(ctrl_inp, t)[-1])
            ctr_norm, lg_size = ctrl[:, 0:2], ctrl[:, 2:4]
            if self.squash_ctrl_params:
                ctr_norm, lg_size = torch.tanh(ctr_norm), -F.softplus(lg_size)
            ctr, size = unnormalize_attention(ctr_norm, lg_size, self.height, self.width)
            if self.fixed_var:
                lg_var = torch.zeros_like(size)
            elif self.dynamic_var:
                lg_var = ctrl[:, 4:6]
            else:
                lg_var = normalized_log_var(size, self.filter_h, self.filter_w)
            fy, fx = attention_filters(ctr, size, lg_var, self.height, self.width,
                                       self.filter_h, self.filter_w)
            attn_box = soft_attention_box(fy, fx, ctrl[:, 7], BOX_BETA)
            grd = None
            if teacher is not None:
                if self.use_iou_box:
                    tl, br = box_corners(ctr, size)
                    iou = corner_box_iou(tl[:, None], br[:, None], teacher['tl_gt'],
                                         teacher['br_gt'])
                else:
                    box_gt = teacher['box_gt']
                    inter = (attn_box[:, None] * box_gt).sum((2, 3))
                    union = (attn_box[:, None] + box_gt - attn_box[:, None] * box_gt).sum((2, 3))
                    iou = inter / (union + union_eps(self.height * self.width))
                grd = greedy_match(iou, matched)  # (B, M)
                if self.cumulative_greedy_match:
                    matched = torch.maximum(matched, (grd > 0).to(matched.dtype))
                if self.stage == 'full':
                    k = teacher['knob_box'][:, t:t + 1]
                    ctr = k * (grd[..., None] * teacher['ctr_noisy']).sum(1) + (1 - k) * ctr
                    size = k * (grd[..., None] * teacher['size_noisy']).sum(1) + (1 - k) * size
                    fy, fx = attention_filters(ctr, size, lg_var, self.height, self.width,
                                               self.filter_h, self.filter_w)
            for key, val in (('attn_box', attn_box), ('ctr', ctr), ('size', size),
                             ('ctr_norm', ctr_norm), ('lg_size', lg_size)):
                out[key].append(val)

            if self.stage == 'box':
                out['scores'].append(torch.sigmoid(self.box_score(h_lstm))[:, 0])
                if teacher is not None:
                    gt = (grd[..., None, None] * teacher['masks']).sum(1)[:, None]
                    gt = gt - gt * torch.rand_like(gt) * self.gt_segm_noise
                    canvas = torch.maximum(gt, canvas).detach()
                continue

            attn_lg_gamma = ctrl.new_full((b,), FIXED_ATTN_LG_GAMMA) if self.fixed_gamma \
                else ctrl[:, 6]
            out_lg_gamma = ctrl.new_full((b,), FIXED_OUT_LG_GAMMA) if self.fixed_gamma \
                else ctrl[:, 8]
            patch = torch.exp(attn_lg_gamma).view(-1, 1, 1, 1) * extract_patch(attn_inp, fy, fx)
            feats = self.attn_cnn(patch, t)
            core = feats[-1]
            rev = feats[::-1][1:] + [patch]
            skips = [None] + [h if f else None for f, h in zip(self.skip_flags, rev)]
            patch_mask = self.attn_dcnn(core, skips, t)
            mask = paste_patch(patch_mask, fy, fx)
            mask = torch.sigmoid(torch.exp(out_lg_gamma).view(-1, 1, 1, 1) * mask + OUT_BETA)
            if self.disable_overwrite:
                mask = (1 - canvas) * mask
            score_in = torch.cat([h_lstm, core.flatten(1)], 1)
            out['masks'].append(mask[:, 0])
            out['scores'].append(torch.sigmoid(self.score(score_in))[:, 0])
            if self.cls is not None:
                out['cls_logits'].append(self.cls(score_in))
            fed = mask
            if teacher is not None:
                k = teacher['knob_segm'][:, t].view(-1, 1, 1, 1)
                gt = (grd[..., None, None] * teacher['masks']).sum(1)[:, None]
                gt = gt - gt * torch.rand_like(gt) * self.gt_segm_noise
                fed = k * gt + (1 - k) * mask
            canvas = torch.maximum(fed, canvas)
            if self.stop_canvas_grad:
                canvas = canvas.detach()

        result = {k: (torch.stack(v, 1) if v else None) for k, v in out.items()}
        return result
