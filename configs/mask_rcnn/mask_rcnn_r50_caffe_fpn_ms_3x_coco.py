# Mask R-CNN, R-50 (caffe) FPN, 3x multi-scale with polygon masks, COCO: mmdet 3's
# mask-rcnn_r50-caffe_fpn_ms-poly-3x_coco.py, detectron2's mask_rcnn_R_50_FPN_3x.yaml recipe
# (MSRA R-50, shorter side 640-800, 36 epochs; 37.2 mask AP on val2017 in detectron2's zoo).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50-caffe_fpn_ms-poly-3x_coco.py'

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
