# CenterMask with the VoVNetV2-39 (eSE) backbone, FPN on stages 3-5, multi-scale 3x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_V_39_eSE_FPN_ms_3x.yaml,
# released model centermask2-V-39-eSE-FPN-ms-3x.pth (mask AP 39.7, box AP 44.2).
# Backbone: norm FrozenBN (BN without grad, eval mode), FREEZE_AT 0 (the stem is trained too),
# PIXEL_STD [1, 1, 1] (inherited). ImageNet weights: vovnet39_ese_detectron2.pth of the
# centermask2 README, converted once with
#   python tools/convert_checkpoint.py vovnet_imagenet vovnet39_ese_detectron2.pth \
#       checkpoints/vovnet39_ese_insplug.pth
_base_ = './centermask_r50_3x.py'
model = dict(
    backbone=dict(_delete_=True, type='VoVNetV2', arch='V-39', out_indices=(1, 2, 3),
                  frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=False),
                  norm_eval=True,
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/vovnet39_ese_insplug.pth')),
    neck=dict(in_channels=[512, 768, 1024]))
