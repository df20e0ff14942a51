# CenterMask with the VoVNetV2-39 (eSE) backbone, FPN on stages 3-5, multi-scale 3x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_V_39_eSE_FPN_ms_3x.yaml
# (backbone norm FrozenBN, ImageNet weights vovnet39_ese_detectron2.pth from the CenterMask2
# README; set init_cfg to a local copy converted to this module's parameter names).
_base_ = './centermask_r50_3x.py'
model = dict(
    data_preprocessor=dict(mean=[103.530, 116.280, 123.675], std=[57.375, 57.120, 58.395],
                           bgr_to_rgb=False),
    backbone=dict(_delete_=True, type='VoVNetV2', arch='V-39', out_indices=(1, 2, 3),
                  frozen_stages=0, norm_cfg=dict(type='BN', requires_grad=False),
                  norm_eval=True, init_cfg=None),
    neck=dict(in_channels=[512, 768, 1024]))
