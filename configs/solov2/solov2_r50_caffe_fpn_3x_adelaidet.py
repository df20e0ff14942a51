# SOLOv2 as AdelaiDet trains it (aim-uofa/AdelaiDet configs/SOLOv2/R50_3x.yaml; released
# SOLOv2_R50_3x.pth, 37.6 mask AP on val2017), in mmdet 3 with mmdet's SOLOV2Head: the MSRA
# (caffe) R-50 with frozen BN, BGR input with std 1, FPN P2-P6, the same head; 270k iterations
# at batch 16, lr 0.01, x0.1 at 210k / 250k, 1k warm-up from 0.01, shorter side 640-800.
# For the converted release:
#   python tools/convert_checkpoint.py solov2 SOLOv2_R50_3x.pth solov2_r50_3x.pth \
#       --config configs/solov2/solov2_r50_caffe_fpn_3x_adelaidet.py
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

model = dict(
    data_preprocessor=dict(mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
                           bgr_to_rgb=False),
    backbone=dict(style='caffe', norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True,
                  init_cfg=dict(type='Pretrained',
                                checkpoint='open-mmlab://detectron2/resnet50_caffe')))
max_iters = 270000
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[210000, 250000], gamma=0.1),
]
# AdelaiDet SOLVER: no gradient clipping
optim_wrapper = dict(clip_grad=None)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
