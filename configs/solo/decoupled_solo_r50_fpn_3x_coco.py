# Decoupled SOLO, R-50-FPN, 3x multi-scale, COCO: mmdet 3's decoupled-solo_r50_fpn_3x_coco.py
# at WXinlong/SOLO's decoupled_solo_r50_fpn_8gpu_3x.py settings (released
# DECOUPLED_SOLO_R50_3x.pth, 36.4 mask AP on val2017), plus the release's clipping at norm 35.
# Converted release (WXinlong/SOLO .pth):
#   tools/convert_checkpoint.py solo IN OUT --config configs/solo/decoupled_solo_r50_fpn_3x_coco.py
_base_ = 'mmdet::solo/decoupled-solo_r50_fpn_3x_coco.py'

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

optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=35, norm_type=2))
