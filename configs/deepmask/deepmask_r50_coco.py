# DeepMask at the official setting (facebookresearch/deepmask: train.lua, DeepMask.lua,
# DataSampler.lua, evalPerImage.lua): ResNet-50 trunk to layer3 (fixed BN, symmetric padding),
# iSz 160 / wSz 192 windows, 56x56 masks upsampled to 112 labels, score branch 512-1024-1,
# SoftMargin losses with lambda = 1/32, 7 scales 2^-2.5 .. 2^0.5, top 1000 proposals (no NMS;
# evalPerImage.lua's default is 500, the published proposal sets and AR@1000 use 1000),
# mask threshold 0.2. The release trains on COCO train2014 and evaluates on the first 5000
# val2014 images; this config uses mmdet's COCO layout (point data_root / ann_file there).
#
# Optimisation: the release's SGD (momentum 0.9, wd 5e-4, lr 1e-3 -> 5e-4 at epoch 51 -> 1e-4
# at epoch 121, 300 epochs of 4000 batches of 32 windows, each batch all-mask or all-score)
# with the mask loss summed over the batch. Here a step has 8 images x (4 mask + 2 positive + 2
# negative score windows) = 32 mask + 32 score windows and both losses are means, so lr x 32
# and wd / 32 give the release's update per window; 600k iterations = 1.2M release batches.
_base_ = [
    '../_base_/datasets/coco_instance.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='DeepMask',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=False,
                           pad_size_divisor=16),
    # the release starts from fb.resnet.torch's ImageNet ResNet-50 (resnet-50.t7); torchvision's
    # ImageNet ResNet-50 has the same layout
    trunk_pretrained='torchvision://resnet50',
    net=dict(depth=50, base_channels=64, norm='frozen', padding='symmetric', window_size=160,
             context=32, mask_size=56, label_size=112, reduce_channels=128, embed_channels=512,
             score_channels=1024, dropout=0.5),
    train_cfg=dict(stage='deepmask', mask_per_image=4, pos_per_image=2, neg_per_image=2,
                   shift=16.0, scale_jitter=0.25, obj_size=None, min_area=100, min_side=5,
                   score_weight=1 / 32),
    test_cfg=dict(smin=-2.5, smax=0.5, sstep=0.5, num_proposals=1000, mask_thr=0.2,
                  use_refinement=True, release_index=False))

# whole images (the scale pyramid and the windows do the resizing), horizontal flips
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# class-agnostic proposals: COCO proposal AR (boxes of the masks, useCats=0)
val_evaluator = dict(metric=['proposal'], proposal_nums=(100, 300, 1000))
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=600000, val_interval=50000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.032, momentum=0.9, weight_decay=5e-4 / 32))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, milestones=[100000], gamma=0.5),  # 1e-3 -> 5e-4
    dict(type='MultiStepLR', by_epoch=False, milestones=[240000], gamma=0.2),  # -> 1e-4
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=50000))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
