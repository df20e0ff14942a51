"""The RefineMask mask network: instance convs, semantic branch, SFM stages, final classifier.

Shapes: N RoIs; B images; C instance channels (256); Cs semantic channels (256); stage sides
S_0..S_K (14, 28, 56, 112); classes of stage k: num_classes or 1 (class-agnostic).

Forward: RoI features (N, Cin, 14, 14) -> two 3x3 convs -> SFM stages 14 -> 28 -> 56 -> 112
(each halves the channels) -> 1x1 classifier at 112. Each stage also emits its own mask logits,
so the network returns K + 1 logit maps (14, 28, 56, 112) and the semantic foreground logits.
"""
import torch.nn as nn
import torch.nn.functional as F

from .semantic_head import SemanticBranch
from .sfm import SFMStage, class_logits, init_conv


class RefineMaskNet(nn.Module):
    """Pure-PyTorch RefineMask head.

    Args:
        num_classes: dataset classes.
        stage_num_classes: classes of each of the len(stage_sup_size) mask outputs; each entry
            is ``num_classes`` (class-specific) or 1 (class-agnostic). Default: all specific.
        stage_sup_size: side of each mask output; consecutive sides must double.
        num_convs_instance, conv_in_channels_instance, conv_out_channels_instance:
            the instance convs on the RoI features.
        num_convs_semantic, conv_in_channels_semantic, conv_out_channels_semantic:
            the semantic branch on the finest FPN level.
        dilations: dilations of the multi-branch fusion.
        semantic_out_stride: stride of the finest FPN level.
        semantic_branch: optional module replacing :class:`SemanticBranch`: ``forward(feats)
            -> (features (B, Cs, Hf, Wf), foreground logits (B, Hf, Wf))`` with Cs =
            ``conv_out_channels_semantic``; with ``multi_level = True`` it receives all FPN
            levels (finest first) instead of the finest one (e.g.
            :class:`insplug.core.layers.upernet.UPerNetSemanticBranch`).
    """

    def __init__(self, num_classes, stage_num_classes=None, stage_sup_size=(14, 28, 56, 112),
                 num_convs_instance=2, conv_in_channels_instance=256,
                 conv_out_channels_instance=256, num_convs_semantic=4,
                 conv_in_channels_semantic=256, conv_out_channels_semantic=256,
                 dilations=(1, 3, 5), semantic_out_stride=4, semantic_branch=None):
        super().__init__()
        stage_sup_size = list(stage_sup_size)
        if stage_num_classes is None:
            stage_num_classes = [num_classes] * len(stage_sup_size)
        stage_num_classes = list(stage_num_classes)
        if len(stage_sup_size) < 2 or len(stage_num_classes) != len(stage_sup_size):
            raise ValueError(f'stage_num_classes {stage_num_classes} and stage_sup_size '
                             f'{stage_sup_size} need the same length (>= 2)')
        bad = [k for k in stage_num_classes if k not in (1, num_classes)]
        if bad:
            raise ValueError(f'stage_num_classes {stage_num_classes}: each entry must be '
                             f'num_classes ({num_classes}) or 1 (class-agnostic)')
        if any(b != 2 * a for a, b in zip(stage_sup_size, stage_sup_size[1:])):
            raise ValueError(f'stage_sup_size {stage_sup_size} must double from stage to stage')
        self.num_classes = num_classes
        self.stage_num_classes = stage_num_classes
        self.stage_sup_size = stage_sup_size
        self.semantic_out_stride = semantic_out_stride
        self.instance_convs = nn.ModuleList(
            init_conv(nn.Conv2d(conv_in_channels_instance if i == 0
                                else conv_out_channels_instance,
                                conv_out_channels_instance, 3, padding=1))
            for i in range(num_convs_instance))
        self.semantic = semantic_branch if semantic_branch is not None else SemanticBranch(
            conv_in_channels_semantic, conv_out_channels_semantic, num_convs_semantic)
        channels = conv_out_channels_instance if num_convs_instance else conv_in_channels_instance
        self.stages = nn.ModuleList()
        for size, classes in zip(stage_sup_size[:-1], stage_num_classes[:-1]):
            stage = SFMStage(conv_out_channels_semantic, channels, size, classes,
                             semantic_out_stride, dilations)
            self.stages.append(stage)
            channels = stage.out_channels
        self.final_logits = init_conv(nn.Conv2d(channels, stage_num_classes[-1], 1))

    @property
    def semantic_multi_level(self) -> bool:
        """True when the semantic branch reads all FPN levels, not only the finest."""
        return bool(getattr(self.semantic, 'multi_level', False))

    def forward_semantic(self, finest_feats):
        """(B, Cin_s, Hf, Wf) (or all levels when :attr:`semantic_multi_level`) -> semantic
        features (B, Cs, Hf, Wf), logits (B, Hf, Wf)."""
        return self.semantic(finest_feats)

    def forward_instances(self, roi_feats, semantic_feats, semantic_logits, rois, labels):
        """Mask logits of every stage.

        Args:
            roi_feats: (N, Cin, S_0, S_0). semantic_feats: (B, Cs, Hf, Wf).
            semantic_logits: (B, Hf, Wf). rois: (N, 5). labels: (N,) int64.

        Returns:
            list of K tensors (N, S_k, S_k).
        """
        if roi_feats.shape[-1] != self.stage_sup_size[0]:
            raise ValueError(f'RoI features are {roi_feats.shape[-1]} px but stage_sup_size '
                             f'starts at {self.stage_sup_size[0]}: set the mask RoI extractor '
                             f'output_size to {self.stage_sup_size[0]}')
        x = roi_feats
        for conv in self.instance_convs:
            x = F.relu(conv(x), inplace=True)
        semantic_prob = semantic_logits.sigmoid()[:, None]
        stage_logits = []
        for stage in self.stages:
            logits, x = stage(x, semantic_feats, semantic_prob, rois, labels)
            stage_logits.append(logits)
        stage_logits.append(class_logits(self.final_logits, x, labels))
        return stage_logits

    def forward(self, roi_feats, finest_feats, rois, labels):
        """Returns (list of K (N, S_k, S_k) stage logits, (B, Hf, Wf) semantic logits)."""
        semantic_feats, semantic_logits = self.forward_semantic(finest_feats)
        stage_logits = self.forward_instances(roi_feats, semantic_feats, semantic_logits, rois,
                                              labels)
        return stage_logits, semantic_logits
