"""VoVNetV2 registered as an mmdet backbone (maths in :mod:`insplug.core.backbones.vovnet`)."""
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from insplug.core.backbones.vovnet import VoVNetV2 as _VoVNetV2
from insplug.registry import MODELS


@MODELS.register_module()
class VoVNetV2(BaseModule):
    """VoVNetV2 backbone (``arch`` 'V-19', 'V-19-slim', 'V-39', 'V-57', 'V-99').

    Args:
        out_indices: stages to return (0: stride 4 ... 3: stride 32).
        frozen_stages: freeze the stem (0) and stages up to this index (-1: none).
        norm_cfg: mmcv norm config.
        norm_eval: keep BN layers in eval mode while training.
    """

    def __init__(self, arch='V-39', out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.body = _VoVNetV2(arch, out_indices,
                              norm_layer=lambda c: build_norm_layer(norm_cfg, c)[1])
        self.out_channels = [self.body.out_channels[i] for i in out_indices]
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    def _freeze(self):
        modules = [self.body.stem] + list(self.body.stages[:self.frozen_stages]) \
            if self.frozen_stages >= 0 else []
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def forward(self, x):
        return self.body(x)

    def train(self, mode=True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
