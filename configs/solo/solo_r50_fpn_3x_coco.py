# SOLO (vanilla head), R-50-FPN, 3x multi-scale (shorter side 640-800), COCO: mmdet 3's
# solo_r50_fpn_3x_coco.py at WXinlong/SOLO's solo_r50_fpn_8gpu_3x.py settings (released
# SOLO_R50_3x.pth, 35.8 mask AP on val2017): warm-up from 1/3, x0.1 after epochs 27 and 33
# (as mmdet), plus the release's gradient clipping at norm 35.
# Converted release (WXinlong/SOLO .pth):
#   tools/convert_checkpoint.py solo IN OUT --config configs/solo/solo_r50_fpn_3x_coco.py
_base_ = 'mmdet::solo/solo_r50_fpn_3x_coco.py'

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
