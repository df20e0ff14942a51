# SOLOv2, R-50-FPN, 3x multi-scale (shorter side 640-800), COCO: mmdet 3's
# solov2_r50_fpn_ms-3x_coco.py at WXinlong/SOLO's solov2_r50_fpn_8gpu_3x.py settings
# (SOLOv2_R50_3x.pth, 37.5 mask AP on minival = val2017, SOLO README): warm-up from 0.01
# (mmdet: 1/3). Converted release: tools/convert_checkpoint.py solo SOLOv2_R50_3x.pth OUT
#   --config configs/solov2/solov2_r50_fpn_3x_coco.py
_base_ = 'mmdet::solov2/solov2_r50_fpn_ms-3x_coco.py'

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
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
