# SOLO (vanilla head), R-50-FPN, 1x, COCO: mmdet 3's SOLO / SOLOHead at the official settings
# of WXinlong/SOLO configs/solo/solo_r50_fpn_8gpu_1x.py (released SOLO_R50_1x.pth, 32.9 mask
# AP on val2017 in the SOLO README). mmdet's model values (grids, scale ranges, sigma 0.2, 7
# stacked convs of 256, dice 3.0, focal, Matrix NMS test) equal the release; the schedule
# differs, so it is set here as released: 500-iteration linear warm-up from 1/3 (mmdet: 0.001),
# lr x0.1 after epochs 9 and 11 (mmdet: 8 and 11), gradient clipping at norm 35 (mmdet: none).
# Heads, targets, losses and inference equal the release (tests/parity/test_solo_parity.py).
# Converted release (WXinlong/SOLO .pth):
#   tools/convert_checkpoint.py solo IN OUT --config configs/solo/solo_r50_fpn_1x_coco.py
_base_ = 'mmdet::solo/solo_r50_fpn_1x_coco.py'

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
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
