# Swap-in: UPerNet's PPM + FPN fusion as RefineMask's semantic branch
# (configs/demo/refinemask_r18_shapes.py otherwise unchanged). The branch reads all five FPN
# levels (P2-P6, finest first) instead of P2 only, fuses them at stride 4 into
# conv_out_channels_semantic (32) channels and predicts the foreground logits with a 1x1 conv;
# the SFM stages consume its features as they consume the original branch's. Widths are the
# demo's (FPN 64, PPM branches 32); UPerNet's own setting is F = 256, PPM 512 on ResNet C2-C5.
_base_ = '../demo/refinemask_r18_shapes.py'
width = 64

model = dict(
    roi_head=dict(
        mask_head=dict(
            semantic_branch=dict(type='UPerNetSemanticBranch', in_channels=[width] * 5,
                                 channels=32, pool_scales=(1, 2, 3, 6), ppm_channels=32))))
