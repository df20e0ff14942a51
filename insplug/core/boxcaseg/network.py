"""BoxCaseg segmentation head (official ``seg_hrnet_trans_fcn.py``), on any multi-level trunk.

Shapes: N crops; L trunk levels; C = sum of the levels' channels; (h, w) the finest level's size.

``concat_upsample`` is HRNet's head input: every level bilinearly upsampled to the finest one
and concatenated. On it two branches predict one class-agnostic logit map each:

- weak branch ``last_layer``: 1x1 conv (C -> C, bias), BN, ReLU, conv (C -> 1); trained by the
  box losses;
- full branch (salient images): ``fcn_ratio * fcn(x) + (1 - fcn_ratio) * transfer(x)``, where
  ``fcn`` has ``last_layer``'s structure and ``transfer`` runs ``last_layer``'s two convolutions
  with weights produced from the DETACHED weak-branch weights by two small MLPs
  (``WeightTransfer``: Linear(k -> 4k), LeakyReLU(0.1), Linear(4k -> k) over each output
  filter's k = C_in * kh * kw weights, bias ``k * b + b0``) and its own BN between them.

Inference uses the full branch. The release's BN momentum is 0.01 (PyTorch convention).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .inference import minmax_normalize
from .loss import PAIRWISE_WEIGHT, boxcaseg_losses

BN_MOMENTUM = 0.01


def concat_upsample(feats):
    """HRNet's head input: all levels upsampled (bilinear, align_corners=False) and joined.

    Args:
        feats: list of L (N, C_l, h_l, w_l) maps, the first the finest.

    Returns:
        (N, sum C_l, h_0, w_0).
    """
    h, w = feats[0].shape[-2:]
    ups = [feats[0]] + [F.interpolate(f, size=(h, w), mode='bilinear', align_corners=False)
                        for f in feats[1:]]
    return torch.cat(ups, dim=1)


def _branch(channels, num_classes, final_kernel):
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=1, stride=1, padding=0),
        nn.BatchNorm2d(channels, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, num_classes, kernel_size=final_kernel, stride=1,
                  padding=1 if final_kernel == 3 else 0))


class WeightTransfer(nn.Module):
    """The release's ``Transfer``: predicts a conv's weights from another conv's weights.

    Args:
        conv: the convolution whose (detached) weights are transformed; its shape is copied.
    """

    def __init__(self, conv):
        super().__init__()
        self.out_c, self.in_c, self.kernel_h, self.kernel_w = conv.weight.shape
        self.padding = conv.padding
        k = self.in_c * self.kernel_h * self.kernel_w
        self.fc1 = nn.Linear(k, k * 4)
        self.relu1 = nn.LeakyReLU(0.1)
        self.fc2 = nn.Linear(k * 4, k)
        self.k = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.zeros(1))
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, mean=0, std=0.01)
            nn.init.normal_(fc.bias, mean=0, std=0.01)

    def forward(self, weight, bias, x):
        """Args:
            weight: (out_c, k) detached source weights; bias: (out_c,) detached source bias;
            x: (N, in_c, h, w).

        Returns:
            (N, out_c, h, w) convolution of ``x`` with the transferred weights.
        """
        w = self.fc2(self.relu1(self.fc1(weight)))
        w = w.view(self.out_c, self.in_c, self.kernel_h, self.kernel_w)
        return F.conv2d(x, w, self.k * bias + self.b, padding=self.padding)


class BoxCasegHead(nn.Module):
    """Weak, FCN and transfer branches on the concatenated trunk features.

    Args:
        in_channels: C, the concatenated channels.
        fcn_ratio: weight of the FCN branch in the full output (release: 0.7 PASCAL, 0.6 COCO).
        final_kernel: kernel of the last conv (release ``FINAL_CONV_KERNEL`` 1).
    """

    def __init__(self, in_channels, fcn_ratio=0.7, final_kernel=1):
        super().__init__()
        self.fcn_ratio = fcn_ratio
        self.last_layer = _branch(in_channels, 1, final_kernel)
        self.fcn = _branch(in_channels, 1, final_kernel)
        self.transfer1 = WeightTransfer(self.last_layer[0])
        self.transfer2 = WeightTransfer(self.last_layer[3])
        self.transfer_bn = nn.BatchNorm2d(in_channels, momentum=BN_MOMENTUM)
        self.transfer_relu = nn.ReLU(inplace=True)

    def init_weights(self):
        """The release's ``init_weights``: convs N(0, 0.001), BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward_weak(self, x):
        """(N, C, h, w) -> (N, 1, h, w) weak-branch logits."""
        return self.last_layer(x)

    def forward_full(self, x):
        """(M, C, h, w) -> (M, 1, h, w) full-branch logits (FCN + weight transfer)."""
        c1, c3 = self.last_layer[0], self.last_layer[3]
        w1 = c1.weight.detach().view(c1.weight.shape[0], -1)
        w3 = c3.weight.detach().view(c3.weight.shape[0], -1)
        t = self.transfer1(w1, c1.bias.detach(), x)
        t = self.transfer_relu(self.transfer_bn(t))
        t = self.transfer2(w3, c3.bias.detach(), t)
        return self.fcn_ratio * self.fcn(x) + (1 - self.fcn_ratio) * t

    def loss(self, feats, labels, salient, pairwise_weight=PAIRWISE_WEIGHT):
        """``train_pd``'s losses of a batch of crops.

        Args:
            feats: (N, C, h, w) concatenated features of the crops.
            labels: (N, 1, S, S) crop labels; salient: (N,) bool.

        Returns:
            dict ``loss_mil``, ``loss_pairwise``, ``loss_salient``: both branches' logits are
            upsampled (bilinear) to S first, as the release does.
        """
        size = labels.shape[-2:]
        weak = F.interpolate(self.forward_weak(feats), size=size, mode='bilinear',
                             align_corners=False)
        full = F.interpolate(self.forward_full(feats[salient]), size=size, mode='bilinear',
                             align_corners=False)
        return boxcaseg_losses(weak, labels, full, salient, pairwise_weight)

    def predict_probs(self, feats):
        """(N, C, h, w) -> (N, h, w) min-max normalised full-branch probabilities."""
        return minmax_normalize(self.forward_full(feats)[:, 0].sigmoid())
