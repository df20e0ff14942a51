# Recurrent attention (Ren & Zemel 2017) demo on the bundled shapes set (5 classes), CPU-sized:
# the 256 px images are resized to a fixed 96 x 96 model input (the release: 224 x 224 on CVPPP),
# at most 6 instances per image (timespan 7 = 6 + 1, as the release's max + 1), a 24 x 24
# attention patch (release 48), narrow CNNs (controller 8-32 channels, 4 layers; patch CNN
# 8-32, 3 layers, with DCNN skips as in the KITTI / Cityscapes runs), a 64-wide controller LSTM
# with 3 glimpses (release 256, 5). No box-pretraining stage: the GT-feeding "knob" feeds GT
# boxes and masks with probability decaying by half every 100 iterations from the start
# (release CVPPP: boxes never after pretraining, masks after 3000 iterations, 700-step
# half-life). A class layer (insplug addition, the release has none) labels the 5 shapes.
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
image_size = (96, 96)

model = dict(
    type='RecurrentAttentionSegmentor',
    num_classes=num_classes,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    net=dict(
        input_size=image_size,
        timespan=7,
        filter_size=(24, 24),
        ctrl_cnn_filter_size=(3, 3, 3, 3),
        ctrl_cnn_depth=(8, 16, 16, 32),
        ctrl_cnn_pool=(2, 2, 2, 2),
        ctrl_rnn_hid_dim=64,
        num_ctrl_rnn_iter=3,
        ctrl_mlp_dim=64,
        attn_cnn_filter_size=(3, 3, 3),
        attn_cnn_depth=(8, 16, 32),
        attn_cnn_pool=(2, 2, 2),
        attn_dcnn_filter_size=(3, 3, 3),
        attn_dcnn_depth=(16, 8, 1),
        attn_dcnn_pool=(2, 2, 2),
        add_skip_conn=True,
        attn_cnn_skip=(True, True, True),
        min_box_padding=4.0),
    train_cfg=dict(knob=dict(use_knob=True, decay=0.5, steps_per_decay=100, box_offset=0,
                             segm_offset=0, use_timescale=True)),
    test_cfg=dict(score_thr=0.5, mask_threshold=0.3, stop_rule='threshold'))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# release: Adam (eps 1e-7), lr 1e-3, gradients clipped to [-1, 1] element-wise, weight decay
# 5e-5 on the weights only (an L2 term in the loss)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=2e-3, eps=1e-7, weight_decay=5e-5),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
                     clip_grad=dict(type='value', clip_value=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='StepLR', step_size=500, gamma=0.8, by_epoch=False, begin=20, end=max_iters),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500))
log_processor = dict(by_epoch=False)
