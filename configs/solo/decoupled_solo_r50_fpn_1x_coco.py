# Decoupled SOLO, R-50-FPN, 1x, COCO: mmdet 3's DecoupledSOLOHead at WXinlong/SOLO's
# decoupled_solo_r50_fpn_8gpu_1x.py settings (released DECOUPLED_SOLO_R50_1x.pth, 33.9 mask
# AP on val2017): the release's schedule and clipping as in solo_r50_fpn_1x_coco.py.
# Converted release (WXinlong/SOLO .pth):
#   tools/convert_checkpoint.py solo IN OUT --config configs/solo/decoupled_solo_r50_fpn_1x_coco.py
_base_ = 'mmdet::solo/decoupled-solo_r50_fpn_1x_coco.py'

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
