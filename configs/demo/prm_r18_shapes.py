# PRM on the bundled shapes set (CPU demo), trained from IMAGE-LEVEL LABELS only: the train
# pipeline's ImageLevelLabels drops boxes and masks; val masks are used by CocoMetric only.
# The first three stages of a quarter-width ResNet-18 from scratch (output stride 16: 256 px images
# give 16 x 16 class response maps; peak back-propagation runs once per peak, so the trunk is
# kept small for CPU). Instances are retrieved among colour-region proposals (no MCG).
_base_ = [
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
model = dict(
    type='PRMSegmentor',
    num_classes=num_classes,
    in_channels=32,
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=2, out_indices=(1,),
                  strides=(1, 2), dilations=(1, 1), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch', init_cfg=None),
    proposal_source=dict(type='ColourRegionProposals'),
    train_cfg=dict(sub_pixel_locating_factor=2),
    # peak threshold 0 instead of the release's 30: responses of a small model trained for
    # seconds are far below 30; at most 8 peaks per image back-propagated (CPU time)
    # proposals larger than 30% of the image are background regions here (shapes cover less)
    test_cfg=dict(peak_threshold=0.0, max_per_img=50, max_peaks=12, size_limits=(0.002, 0.3)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='ImageLevelLabels', num_classes=num_classes),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                    'flip_direction', 'gt_image_labels', 'gt_image_counts')),
]
train_dataloader = dict(batch_size=4, num_workers=2,
                        dataset=dict(pipeline=train_pipeline,
                                     filter_cfg=dict(filter_empty_gt=False)))
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
