"""VoVNetV2 (Lee & Park, CenterMask, CVPR 2020): one-shot aggregation with identity and eSE.

Shape shorthand: B images, C channels, H x W input; the stem has stride 4 and each later stage
halves the resolution, so stage outputs have strides 4, 8, 16, 32.

An OSA module runs ``layers_per_block`` 3x3 conv-norm-ReLU layers in sequence, concatenates
the module input with every layer output, fuses them with a 1x1 conv-norm-ReLU, and rescales
the channels with effective squeeze-excitation (eSE: global average pool, one 1x1 conv keeping
the channel count, hard sigmoid). Every module of a stage but the first adds its input back
(identity mapping). Stages 3-5 start with a 3x3/2 max-pool (ceil mode).
"""
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCH_SPECS: Dict[str, dict] = {
    # stem channels, per-stage 3x3 conv channels, per-stage output channels,
    # 3x3 layers per OSA module, OSA modules per stage
    'V-19': dict(stem=(64, 64, 128), stage_ch=(128, 160, 192, 224),
                 out_ch=(256, 512, 768, 1024), layers=3, blocks=(1, 1, 1, 1)),
    'V-19-slim': dict(stem=(64, 64, 128), stage_ch=(64, 80, 96, 112),
                      out_ch=(112, 256, 384, 512), layers=3, blocks=(1, 1, 1, 1)),
    'V-39': dict(stem=(64, 64, 128), stage_ch=(128, 160, 192, 224),
                 out_ch=(256, 512, 768, 1024), layers=5, blocks=(1, 1, 2, 2)),
    'V-57': dict(stem=(64, 64, 128), stage_ch=(128, 160, 192, 224),
                 out_ch=(256, 512, 768, 1024), layers=5, blocks=(1, 1, 4, 3)),
    'V-99': dict(stem=(64, 64, 128), stage_ch=(128, 160, 192, 224),
                 out_ch=(256, 512, 768, 1024), layers=5, blocks=(1, 3, 9, 3)),
}


def hard_sigmoid(x: Tensor) -> Tensor:
    """``relu6(x + 3) / 6``, elementwise."""
    return F.relu6(x + 3.0) / 6.0


def effective_se(x: Tensor, fc: nn.Conv2d) -> Tensor:
    """eSE channel attention.

    Args:
        x: (B, C, H, W).
        fc: 1x1 conv C -> C.

    Returns:
        (B, C, H, W) ``x * hard_sigmoid(fc(mean_hw(x)))``.
    """
    return x * hard_sigmoid(fc(x.mean(dim=(2, 3), keepdim=True)))


def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int,
                   norm_layer: Callable[[int], nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         norm_layer(cout), nn.ReLU(inplace=True))


class OSAModule(nn.Module):
    """One-shot aggregation module: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, cin: int, stage_ch: int, cout: int, layers: int, identity: bool,
                 norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        if identity and cin != cout:
            raise ValueError(f'OSAModule: identity mapping needs cin == cout, got {cin}, {cout}')
        self.identity = identity
        self.layers = nn.ModuleList(
            [conv_norm_relu(cin if i == 0 else stage_ch, stage_ch, 3, 1, norm_layer)
             for i in range(layers)])
        self.concat = conv_norm_relu(cin + layers * stage_ch, cout, 1, 1, norm_layer)
        self.ese_fc = nn.Conv2d(cout, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats[-1]))
        out = effective_se(self.concat(torch.cat(feats, dim=1)), self.ese_fc)
        return out + x if self.identity else out


class VoVNetV2(nn.Module):
    """VoVNetV2 trunk returning the outputs of stages 2-5 selected by ``out_indices``.

    Args:
        arch: one of :data:`ARCH_SPECS` ('V-39', 'V-57', ...), or a spec dict with the keys of
            those entries (stem, stage_ch, out_ch, layers, blocks), e.g. for narrow test nets.
        out_indices: stages to return, 0 = stage 2 (stride 4) ... 3 = stage 5 (stride 32).
        in_channels: image channels.
        norm_layer: ``channels -> nn.Module`` normalisation factory (default BatchNorm2d).
    """

    def __init__(self, arch='V-39', out_indices: Sequence[int] = (0, 1, 2, 3),
                 in_channels: int = 3, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        if isinstance(arch, dict):
            missing = {'stem', 'stage_ch', 'out_ch', 'layers', 'blocks'} - set(arch)
            if missing:
                raise ValueError(f'VoVNetV2: `arch` dict lacks {sorted(missing)}')
            spec = arch
        elif arch not in ARCH_SPECS:
            raise ValueError(f'VoVNetV2: unknown `arch` {arch!r}; choose from {list(ARCH_SPECS)}')
        else:
            spec = ARCH_SPECS[arch]
        s0, s1, s2 = spec['stem']
        self.stem = nn.Sequential(conv_norm_relu(in_channels, s0, 3, 2, norm_layer),
                                  conv_norm_relu(s0, s1, 3, 1, norm_layer),
                                  conv_norm_relu(s1, s2, 3, 2, norm_layer))
        self.out_indices = tuple(out_indices)
        self.out_channels: List[int] = list(spec['out_ch'])
        self.stages = nn.ModuleList()
        cin = s2
        for i, (stage_ch, cout, blocks) in enumerate(
                zip(spec['stage_ch'], spec['out_ch'], spec['blocks'])):
            modules = [nn.MaxPool2d(3, 2, ceil_mode=True)] if i > 0 else []
            for b in range(blocks):
                modules.append(OSAModule(cin if b == 0 else cout, stage_ch, cout, spec['layers'],
                                         identity=b > 0, norm_layer=norm_layer))
            self.stages.append(nn.Sequential(*modules))
            cin = cout

    def forward(self, x: Tensor) -> tuple:
        """(B, 3, H, W) -> tuple of (B, C_i, H / s_i, W / s_i) for the selected stages."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
