# CPU demo of RefineMask on the bundled shapes set (256 px, 5 classes): ResNet-18 trained from
# scratch (nothing can be downloaded), narrow FPN and heads, few epochs. The method (SFM stages
# 14 -> 28 -> 56 -> 112, semantic branch, boundary-aware loss and inference) is the full one;
# only widths, schedule and anchor scale differ from configs/refinemask_r50.py.
# Prepare the data with:  python -m insplug.datasets.shapes --out data/shapes
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]

num_classes = 5
width = 64  # FPN / RoI feature channels
model = dict(
    # the mmdet base sets _scope_='mmdet' on the model; insplug's scope also sees mmdet's types
    _scope_='insplug',
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(
        in_channels=width,
        feat_channels=width,
        # objects are 10-150 px in 256 px images: anchors of 16..256 px
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        type='RefineRoIHead',
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            in_channels=width,
            fc_out_channels=256,
            num_classes=num_classes,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
            loss_bbox=dict(type='L1Loss', loss_weight=2.0)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            _delete_=True,
            type='RefineMaskHead',
            num_classes=num_classes,
            num_convs_instance=2,
            conv_in_channels_instance=width,
            conv_out_channels_instance=64,  # stages: 64 -> 32 -> 16 -> 8 channels
            num_convs_semantic=2,
            conv_in_channels_semantic=width,
            conv_out_channels_semantic=32,
            dilations=[1, 3, 5],
            semantic_out_stride=4,
            stage_num_classes=[num_classes] * 4,
            stage_sup_size=[14, 28, 56, 112],
            stage_instance_loss_weight=[0.25, 0.5, 0.75, 1.0],
            semantic_loss_weight=1.0,
            boundary_width=2,
            start_stage=1)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(max_per_img=30)))

train_dataloader = dict(batch_size=4, num_workers=2)
val_dataloader = dict(batch_size=4, num_workers=2)
test_dataloader = val_dataloader

max_epochs = 6
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Trained from scratch for a few hundred iterations: AdamW copes with the very different
# gradient scales of a randomly initialised backbone and RefineMask's head far better than SGD
# (measured on the shapes set: 60 iterations give 0.006 segm AP with AdamW, 0.0 with SGD).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[5],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_epochs),
                     logger=dict(type='LoggerHook', interval=10))

# A fixed seed, so that `make demo` reproduces the README's figures (mmengine draws a random
# seed per run otherwise).
randomness = dict(seed=0)
