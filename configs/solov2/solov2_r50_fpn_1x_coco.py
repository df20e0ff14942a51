# SOLOv2, R-50-FPN, 1x, COCO: mmdet 3's SOLOv2 / SOLOV2Head at the official settings of
# WXinlong/SOLO configs/solov2/solov2_r50_fpn_8gpu_1x.py (SOLOv2_R50_1x.pth, 34.8 mask AP on
# val2017, SOLO README). Model values equal the release (grids 40/36/24/16/12, scale ranges,
# sigma 0.2, 4 x 512 towers, mask features 128 -> 256, dice 3.0, focal, Matrix NMS); the
# schedule is the release's: warm-up from 0.01 (mmdet: 0.001), x0.1 after epochs 9 and 11
# (mmdet: 8 and 11); clipping at 35 as both.
# Difference kept from mmdet 3 (docs/deviations/solov2.md): its dice loss divides by the
# distinct positive cells (the releases: mean over targets; insplug's detectron2 adapter and
# core default follow the releases).
# Converted release (WXinlong/SOLO .pth):
#   tools/convert_checkpoint.py solo IN OUT --config configs/solov2/solov2_r50_fpn_1x_coco.py
_base_ = 'mmdet::solov2/solov2_r50_fpn_1x_coco.py'

# insplug runtime (configs/_base_/default_runtime.py cannot be a second base: mmdet's config
# already inherits mmdet's runtime)
default_scope = 'insplug'
custom_imports = dict(imports=['insplug'], allow_failed_imports=False)
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='AtomicCheckpointHook'),
]

param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
