# RIS on the bundled shapes set (CPU demo, 64 px images): FCN features from a half-width
# ResNet-18 trunk (base_channels=32, stage 1: 32 channels at stride 4, a 16 x 16 grid) from
# scratch, a 1-layer ConvLSTM of 32 channels (release: 2 layers of 30; one layer keeps its gates
# out of saturation in a short run, see below), confidence over the flattened state (the
# release's; images are padded to a fixed 64 x 64), at most 6 training steps
# (min(seq_length, M + 1)) and 4 test steps, mask threshold 0.5 (release 0.9) and the mask shift
# b starting at 4 (release 1: on a 256-cell grid a shape of ~15 cells needs b > log 15 ~ 2.7,
# which a short run cannot learn from 1). RIS is class-agnostic; the shapes set has 5 classes,
# so the demo uses insplug's optional class branch (num_classes=5).
# Curriculum (the release's launcher.sh trains with -seq_length 2; experiment.lua resumes from
# saved models with another -seq_length): 2 steps for the first 50 iterations, then 6 (the
# head's seq_length). At 2 steps most images have no step past their last object, so the loss
# trains the masks; with the stop term from the start, its gradient (BCE from the confidence
# bias 10) dominates the shared ConvLSTM state and the masks stay uniform. Measured
# (tests/e2e/test_rsis_ris_e2e.py): at Adam lr 1e-2 the ConvLSTM gates saturate
# (|pre-activation| ~10, 90% beyond 3), the hidden state becomes spatially constant and so do
# the masks; the e2e test's lr 3e-3 and one layer avoid it.
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
image_size = (64, 64)

model = dict(
    type='RISSegmentor',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=64),
    # num_stages=1: only stage 1 is used, and mmdet's ResNet runs every stage it builds (stages
    # 2-4 cost compute and parameters and never got a gradient: insplug.cli.gradient_watch)
    backbone=dict(type='ResNet', depth=18, base_channels=32, num_stages=1, out_indices=(0,),
                  strides=(1,), dilations=(1,), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch', init_cfg=None),
    head=dict(
        type='RISHead',
        num_classes=num_classes,
        in_channels=32,
        rnn_size=32,
        rnn_layers=1,
        feat_size=(16, 16),
        confidence='flatten',
        seq_length=6,
        lam=1.0,
        class_weight=1.0,
        mask_bias_init=4.0,
        test_cfg=dict(max_steps=4, stop_thr=0.5, mask_thr=0.5, max_per_img=100)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
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
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3),
                     clip_grad=dict(max_norm=5.0))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50)]
custom_hooks = [
    # insplug's default hooks (a custom_hooks list replaces the inherited one)
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='AtomicCheckpointHook'),
    # 2 steps for 50 iterations, then the head's seq_length (the increment passes any cap)
    dict(type='RISCurriculumHook', start_steps=2, increment=1000, interval=50)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500))
log_processor = dict(by_epoch=False)
