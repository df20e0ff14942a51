# Swap-in: DeepLabv3's ASPP as SparseInst's encoder context instead of the pyramid pooling
# (configs/demo/sparseinst_r18_shapes.py otherwise unchanged). The ASPP runs on the projected
# C5 (64 channels). At the demo's 128 px input C5 is a 4 x 4 map, on which DeepLabv3's rates
# 6 / 12 / 18 (made for 33 x 33 maps at output stride 16) would only see zero padding beyond the
# centre tap; the rates are scaled to the map (1, 2, 3). GroupNorm replaces BN for the same
# reason as in the demo's backbone (from-scratch training on 4-image batches).
# Full-size use: dict(type='ASPP', in_channels=256, channels=256) (rates 6/12/18, BN).
_base_ = '../demo/sparseinst_r18_shapes.py'

model = dict(
    encoder=dict(
        context=dict(type='ASPP', in_channels=64, channels=64, dilations=(1, 2, 3),
                     norm_cfg=dict(type='GN', num_groups=16), dropout=0.1)))
