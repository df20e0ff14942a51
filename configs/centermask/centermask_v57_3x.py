# CenterMask with the VoVNetV2-57 (eSE) backbone, multi-scale 3x.
# Official: youngwanLEE/centermask2 configs/centermask/centermask_V_57_eSE_FPN_ms_3x.yaml.
_base_ = './centermask_v39_3x.py'
model = dict(backbone=dict(arch='V-57'))
