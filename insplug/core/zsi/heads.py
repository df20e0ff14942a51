"""ZSI heads as released (zhengye1995/Zero-shot-Instance-Segmentation): the background-aware RPN's
semantic objectness and the semantic mask head's encoder-decoder.

Shapes: B images, C feature channels, H x W a feature level, A anchors per location, D embedding
dims (300), S seen and U unseen classes, N RoIs, h x w the RoI mask resolution.

Background-aware RPN (``BackgroundAwareRPNHead``): ``relu(rpn_conv(x))`` is projected to the word
space by a 1x1 conv (``rpn_cls_conv_T``, C -> D) and scored by a 1x1 conv without bias
(``vec_fb``, D -> 2A): per anchor a (background, foreground) pair of softmax logits, channel
``2a`` the background and ``2a + 1`` the foreground (the release's layout). The background rows
start at the class file's background embedding and are learned; their mean (no gradient) is the
*synchronized background* that replaces column 0 of the class vectors of the bbox and mask heads.

Semantic mask head (``SemanticFCNMaskHead``): convs + deconv give ``conv4_x`` (N, C, h, w); the
encoder ``kernel_semantic(convT(conv4_x))`` maps it to the word space ``e`` (N, D, h, w); the
logits are ``vec.T @ e`` per pixel (a fixed 1x1 conv, weights the class vectors); the decoder
``dconvT(d_kernel_semantic(e))`` reconstructs ``conv4_x`` (MSE, weight 0.5). Unseen logits at
test time: ``vec_unseen.T @ vec @ (vec.T @ e)`` (no softmax, unlike the box scores).
"""
import torch
import torch.nn.functional as F
from torch import nn


def rpn_background_vector(vec_fb_weight):
    """The release's synchronized background: mean of the RPN's background rows, no gradient.

    Args:
        vec_fb_weight: (2A, D, 1, 1) weight of ``vec_fb`` (rows ``0, 2, ...`` background).

    Returns:
        (D,).
    """
    rows = vec_fb_weight.detach()[0::2]
    total = rows[0]
    for r in rows[1:]:  # the release's (w[0] + w[2] + w[4]) / 3, summed in that order
        total = total + r
    return (total / float(len(rows))).flatten()


def init_background_rows(vec_fb_weight, bg_embedding):
    """The release's ``init_weights``: the background rows of ``vec_fb`` set to the class file's
    background embedding (in place, no gradient).

    Args:
        vec_fb_weight: (2A, D, 1, 1); bg_embedding: (D,).
    """
    with torch.no_grad():
        vec_fb_weight[0::2] = bg_embedding.view(1, -1, 1, 1).to(vec_fb_weight)


def semantic_objectness(x, rpn_conv, conv_t, vec_fb_weight):
    """Background-aware objectness logits of one level.

    Args:
        x: (B, C, H, W); rpn_conv: 3x3 conv C -> F; conv_t: 1x1 conv F -> D;
        vec_fb_weight: (2A, D, 1, 1).

    Returns:
        (B, 2A, H, W) logits, channel ``2a`` background and ``2a + 1`` foreground of anchor a;
        also the shared feature (B, F, H, W) for the regression branch.
    """
    feat = F.relu(rpn_conv(x))
    return F.conv2d(conv_t(feat), vec_fb_weight), feat


def background_last(logits):
    """Release layout (bg, fg) per anchor -> mmdet 3.x softmax layout (fg, bg).

    Args:
        logits: (B, 2A, H, W). Returns: (B, 2A, H, W).
    """
    b, c, h, w = logits.shape
    return logits.view(b, c // 2, 2, h, w).flip(2).reshape(b, c, h, w)


def class_logits(embedding, vec):
    """Per-pixel logits ``vec.T @ e`` of the semantic mask head (``conv_vec``).

    Args:
        embedding: (N, D, h, w); vec: (D, 1 + K).

    Returns:
        (N, 1 + K, h, w).
    """
    return torch.einsum('ndhw,dk->nkhw', embedding, vec)


def unseen_mask_logits(seen_logits, vec, vec_unseen):
    """The release's ``conv_vec_unseen(con_vec_t(seen_logits))``.

    Args:
        seen_logits: (N, 1 + S, h, w); vec: (D, 1 + S); vec_unseen: (D, 1 + U).

    Returns:
        (N, 1 + U, h, w).
    """
    return class_logits(torch.einsum('nkhw,dk->ndhw', seen_logits, vec), vec_unseen)


def encoder_decoder_loss(features, reconstruction, weight=0.5):
    """The release's ``loss_ed``: ``weight * mean((reconstruction - features) ** 2)``.

    Args:
        features, reconstruction: same shape, e.g. (N, C, h, w) or (N, C).
    """
    return weight * F.mse_loss(reconstruction, features)


class ConvReLU(nn.Sequential):
    """mmdet's ``ConvModule`` without norm: ``conv`` (biased) then ReLU (state key ``conv.*``)."""

    def __init__(self, cin, cout, k=3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=(k - 1) // 2)
        self.act = nn.ReLU()


class SemanticMaskHead(nn.Module):
    """The release's ``SemanticFCNMaskHead`` (deconv upsampling, learnable kernel, no vocabulary).

    Args:
        in_channels: C (the release needs ``in_channels == conv_out_channels`` for
            ``num_convs > 1``).
        conv_out_channels, num_convs: the FCN trunk.
        semantic_dims: D.
        with_decoder: build the decoder (``d_kernel_semantic``, ``dconvT``).
        chain_convs: False reproduces the release, which applies every conv of the trunk to the
            RoI feature (``for conv in self.convs: conv4_x = conv(x)``: only the last conv
            counts); True chains them like Mask R-CNN's FCN head.

    ``forward(x, vec)`` returns ``(logits (N, 1 + K, h, w), conv4_x (N, C, 2h', 2w'),
    reconstruction or None)`` with ``vec`` (D, 1 + K) the class vectors to score against.
    """

    def __init__(self, in_channels=256, conv_out_channels=256, num_convs=4, semantic_dims=300,
                 with_decoder=True, chain_convs=False):
        super().__init__()
        self.chain_convs = chain_convs
        self.convs = nn.ModuleList(
            ConvReLU(in_channels if i == 0 else conv_out_channels, conv_out_channels)
            for i in range(num_convs))
        c = conv_out_channels if num_convs > 0 else in_channels
        self.upsample = nn.ConvTranspose2d(c, conv_out_channels, 2, stride=2)
        self.convT = ConvReLU(c, semantic_dims)
        self.kernel_semantic = nn.Conv2d(semantic_dims, semantic_dims, 3, padding=1)
        self.with_decoder = with_decoder
        if with_decoder:
            self.d_kernel_semantic = nn.Conv2d(semantic_dims, semantic_dims, 3, padding=1)
            self.dconvT = ConvReLU(semantic_dims, c)

    def init_weights(self):
        """The release's init: kaiming (fan_out) for the deconv and ``kernel_semantic``."""
        for m in (self.upsample, self.kernel_semantic):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.constant_(m.bias, 0)

    def encode(self, x):
        """(N, C, h', w') RoI features -> (embedding (N, D, h, w), conv4_x (N, C, h, w))."""
        y = x
        for conv in self.convs:
            y = conv(y if self.chain_convs else x)
        y = F.relu(self.upsample(y))
        return self.kernel_semantic(self.convT(y)), y

    def forward(self, x, vec):
        emb, conv4_x = self.encode(x)
        rec = self.dconvT(self.d_kernel_semantic(emb)) if self.with_decoder else None
        return class_logits(emb, vec), conv4_x, rec
