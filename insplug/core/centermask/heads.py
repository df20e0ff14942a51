"""CenterMask's RoI heads: the spatial-attention-guided mask head (SAG-Mask) and MaskIoU head.

Shape shorthand: N RoIs, C channels, S pooled side (14), M = 2 S mask side (28), K classes.

Spatial attention: the channel-wise average and maximum of a (N, C, S, S) feature map are
stacked into 2 channels, a 3x3 conv maps them to one logit per position, and its sigmoid
multiplies every channel. MaskIoU: the pooled features concatenated with the max-pooled
predicted mask (28 -> 14) pass four 3x3 convs (the last with stride 2) and three FC layers
to one IoU per class; at test time it multiplies the detection score.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def spatial_attention(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """SAG spatial attention.

    Args:
        x: (N, C, S, S).
        conv: 2 -> 1 channel conv (3x3, padding 1).

    Returns:
        (N, C, S, S) ``x * sigmoid(conv([mean_c(x), max_c(x)]))``.
    """
    pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
    return x * torch.sigmoid(conv(pooled))


class SAGMaskHead(nn.Module):
    """(N, C_in, S, S) -> (N, K, 2S, 2S) mask logits.

    ``num_convs`` 3x3 conv-ReLU layers, spatial attention, a 2x2/2 deconv with ReLU and a 1x1
    predictor (class-specific, or one channel with ``class_agnostic``).
    """

    def __init__(self, in_channels: int = 256, conv_channels: int = 256, num_convs: int = 4,
                 num_classes: int = 80, class_agnostic: bool = False):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(in_channels if i == 0 else conv_channels,
                                              conv_channels, 3, padding=1)
                                    for i in range(num_convs)])
        self.attention_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.deconv = nn.ConvTranspose2d(conv_channels, conv_channels, 2, stride=2)
        self.predictor = nn.Conv2d(conv_channels, 1 if class_agnostic else num_classes, 1)
        for m in [*self.convs, self.deconv, self.attention_conv]:
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        x = spatial_attention(x, self.attention_conv)
        return self.predictor(F.relu(self.deconv(x)))


class MaskIoUHead(nn.Module):
    """(N, C, S, S) features and (N, 1, 2S, 2S) mask probabilities -> (N, K) predicted IoUs.

    centermask2's ``MaskIoUHead``: ``num_convs`` 3x3 conv-ReLU layers (``conv_channels`` wide,
    ROI_MASKIOU_HEAD.CONV_DIM / NUM_CONV; the last with stride 2), then FC 1024 - FC 1024 - K.
    """

    def __init__(self, in_channels: int = 256, conv_channels: int = 256, num_convs: int = 4,
                 fc_channels: int = 1024, roi_size: int = 14, num_classes: int = 80):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d((in_channels + 1) if i == 0 else conv_channels, conv_channels, 3,
                      stride=2 if i == num_convs - 1 else 1, padding=1)
            for i in range(num_convs)])
        side = (roi_size + 1) // 2
        self.fc1 = nn.Linear(conv_channels * side * side, fc_channels)
        self.fc2 = nn.Linear(fc_channels, fc_channels)
        self.fc_iou = nn.Linear(fc_channels, num_classes)
        for m in self.convs:
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.zeros_(m.bias)
        for m in (self.fc1, self.fc2):  # centermask2: MSRA fill of the FC layers too
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc_iou.weight, std=0.01)
        nn.init.zeros_(self.fc_iou.bias)

    def forward(self, features: Tensor, mask_probs: Tensor) -> Tensor:
        x = torch.cat([features, F.max_pool2d(mask_probs, 2)], dim=1)
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc_iou(F.relu(self.fc2(x)))


def gather_class(values: Tensor, labels: Tensor) -> Tensor:
    """Per-RoI channel of its class: (N, K, ...) and (N,) -> (N, ...); K == 1 is shared."""
    if values.shape[1] == 1:
        return values[:, 0]
    return values[torch.arange(values.shape[0], device=values.device), labels]


def mask_loss(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """Mean per-pixel BCE of the class channel.

    Args:
        logits: (N, K, M, M); labels: (N,); targets: (N, M, M) in {0, 1}.

    Returns:
        scalar (0 connected to ``logits`` when N == 0).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(gather_class(logits, labels), targets)
