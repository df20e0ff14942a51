# DeepMask on the bundled shapes set (CPU demo): quarter-width ResNet-18 trunk from scratch
# (trainable BN), iSz 64 / wSz 96 windows (objSz 37), 16x16 masks upsampled to 32 labels, the
# release's samplers and losses with the shift scaled to the window (16 x 64 / 160 ~ 6 px).
# Shapes are 10-128 px in 256-px images: 7 scales 2^-1.5 .. 2^1.5, top 100 proposals.
# Evaluation: class-agnostic proposal AR (COCO useCats=0 on the mask boxes).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='DeepMask',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=False,
                           pad_size_divisor=16),
    net=dict(depth=18, base_channels=16, norm='bn', padding='symmetric', window_size=64,
             context=32, mask_size=16, label_size=32, reduce_channels=32, embed_channels=128,
             score_channels=128, dropout=0.5),
    train_cfg=dict(stage='deepmask', mask_per_image=8, pos_per_image=4, neg_per_image=4,
                   shift=6.0, scale_jitter=0.25, obj_size=None, min_area=16, min_side=3,
                   # the release's lambda is 1/32 over 300 epochs; a short demo needs the score
                   # branch to learn as fast as the mask branch
                   score_weight=1.0),
    test_cfg=dict(smin=-1.5, smax=1.5, sstep=0.5, num_proposals=100, mask_thr=0.2))
val_evaluator = dict(metric=['proposal'], proposal_nums=(100, 300, 1000))
test_evaluator = val_evaluator
train_dataloader = dict(batch_size=4, num_workers=2)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=35, norm_type=2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
