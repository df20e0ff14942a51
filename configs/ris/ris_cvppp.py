# RIS (Romera-Paredes & Torr, ECCV 2016), release bernard24/RIS plants_learning (Lua Torch):
# images 530 x 500 (H x W), the fixed bilinear stride-5 down-sampling then 4 conv3x3 + ReLU of
# 30 channels (106 x 100 grid), a 2-layer ConvLSTM of 30 channels (kernel 3), confidence over the
# flattened state, lambda 1, seq_length 40 (steps min(40, M + 1)), Adam lr 1e-4, one image per
# step, gradients clamped to [-5, 5]; inference 30 steps, stop below 0.5, mask threshold 0.9.
# Data: CVPPP A1 converted to COCO format (data/cvppp/{train,val}.json). The release has no
# trained weights to convert (Lua Torch .t7 models are not published).
_base_ = ['../_base_/default_runtime.py']
num_classes = 1
data_root = 'data/cvppp/'
classes = ('leaf',)
model = dict(
    type='RISSegmentor',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='RISConvNet', in_channels=3, channels=30, num_convs=4, kernel_size=3,
                  downsample=5),
    head=dict(type='RISHead', num_classes=num_classes, in_channels=30, rnn_size=30,
              rnn_layers=2, kernel_size=3, feat_size=(106, 100), confidence='flatten',
              seq_length=40, lam=1.0,
              test_cfg=dict(max_steps=30, stop_thr=0.5, mask_thr=0.9, max_per_img=100)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(500, 530), keep_ratio=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(500, 530), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='train.json',
                 data_prefix=dict(img='images/'), metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, ann_file='val.json',
                 data_prefix=dict(img='images/'), metainfo=dict(classes=classes),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'val.json', metric=['segm'])
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4),
                     clip_grad=dict(type='value', clip_value=5.0))
param_scheduler = []
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
