"""HRNet with the fusion of the official HRNet-Semantic-Segmentation code (used by BoxCaseg).

mmdet's ``HRNet`` upsamples the lower-resolution branches in its fuse layers with
``nn.Upsample(nearest)``; the segmentation release (and BoxCaseg's ``seg_hrnet_trans_fcn.py``)
resizes them with ``F.interpolate(bilinear, size=...)``. The parameters and their names are
the same (mmdet's layout is the official one), so this class only changes the fuse step.
"""
import torch.nn.functional as F
from mmdet.models.backbones.hrnet import HRModule, HRNet

from insplug.registry import MODELS


class BilinearFuseHRModule(HRModule):
    """``HRModule`` whose upward fusion is bilinear to the target size (official HRNet-Seg)."""

    def forward(self, x):
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        for i in range(self.num_branches):
            x[i] = self.branches[i](x[i])
        x_fuse = []
        for i in range(len(self.fuse_layers)):
            y = x[0] if i == 0 else self.fuse_layers[i][0](x[0])
            for j in range(1, self.num_branches):
                if i == j:
                    y = y + x[j]
                elif j > i:
                    conv_norm = self.fuse_layers[i][j][:2]   # [2] is mmdet's nn.Upsample
                    y = y + F.interpolate(conv_norm(x[j]), size=x[i].shape[-2:],
                                          mode='bilinear', align_corners=False)
                else:
                    y = y + self.fuse_layers[i][j](x[j])
            x_fuse.append(self.relu(y))
        return x_fuse


@MODELS.register_module()
class BilinearHRNet(HRNet):
    """mmdet's ``HRNet`` (same arguments, same state_dict keys) with bilinear fusion."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for m in self.modules():
            if type(m) is HRModule:
                m.__class__ = BilinearFuseHRModule
