# Mask R-CNN, R-50-FPN, 1x, COCO: mmdet 3's Mask R-CNN (mask-rcnn_r50_fpn_1x_coco.py; 34.7
# mask AP in mmdet's model zoo). The official release is Detectron / detectron2
# (mask_rcnn_R_50_FPN_1x.yaml, 35.2 mask AP with the caffe trunk): see
# mask_rcnn_r50_caffe_fpn_ms_3x_coco.py for detectron2's recipe.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

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
