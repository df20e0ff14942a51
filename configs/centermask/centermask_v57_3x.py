# CenterMask with the VoVNetV2-57 (eSE) backbone, multi-scale 3x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_V_57_eSE_FPN_ms_3x.yaml,
# released model centermask2-V-57-eSE-FPN-ms-3x.pth (mask AP 40.5, box AP 45.1).
# ImageNet weights: vovnet57_ese_detectron2.pth, converted with `tools/convert_checkpoint.py
# vovnet_imagenet ... checkpoints/vovnet57_ese_insplug.pth`.
_base_ = './centermask_v39_3x.py'
model = dict(backbone=dict(arch='V-57', init_cfg=dict(
    checkpoint='checkpoints/vovnet57_ese_insplug.pth')))
