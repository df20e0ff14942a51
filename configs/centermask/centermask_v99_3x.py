# CenterMask with the VoVNetV2-99 (eSE) backbone, multi-scale 3x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_V_99_eSE_FPN_ms_3x.yaml,
# released model centermask2-V-99-eSE-FPN-ms-3x.pth (mask AP 41.4, box AP 46.0).
# ImageNet weights: vovnet99_ese_detectron2.pth, converted with `tools/convert_checkpoint.py
# vovnet_imagenet ... checkpoints/vovnet99_ese_insplug.pth`.
_base_ = './centermask_v39_3x.py'
model = dict(backbone=dict(arch='V-99', init_cfg=dict(
    checkpoint='checkpoints/vovnet99_ese_insplug.pth')))
