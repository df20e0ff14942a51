# PointRend, R-50 (caffe) FPN, 1x multi-scale, COCO: mmdet 3's PointRend at the official
# detectron2 settings (facebookresearch/detectron2 projects/PointRend
# pointrend_rcnn_R_50_FPN_1x_coco.yaml, 36.2 mask AP on val2017): 14x14 coarse mask head, 28 x 28
# point head of 3 FCs x 256, 14*14 training points with importance sampling (oversample 3,
# ratio 0.75), 5 subdivision steps of 28*28 points at test time.
_base_ = 'mmdet::point_rend/point-rend_r50-caffe_fpn_ms-1x_coco.py'

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
