# PointRend, R-50 (caffe) FPN, 3x multi-scale, COCO: mmdet 3's point-rend 3x at detectron2's
# pointrend_rcnn_R_50_FPN_3x_coco.yaml settings (38.3 mask AP on val2017).
_base_ = 'mmdet::point_rend/point-rend_r50-caffe_fpn_ms-3x_coco.py'

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
