# CPU demo of ZSI (zero-shot instance segmentation) on the bundled shapes set: 'ring' is held out
# as the unseen class (its annotations and, by default, every training image holding a ring are
# left out by ClassSplitCocoDataset); the 4 seen classes train a ResNet-18 zero-shot Mask R-CNN
# from scratch. Class embeddings: the hand-set attribute vectors 'shapes_demo'
# (insplug.core.zsi.vectors: 8-d, background + circle, rectangle, triangle, star, ring).
# The model is the release's (background-aware RPN, synchronized background, semantic box head
# without vocabulary, encoder-decoder mask head); widths and schedule are the demo's.
# Evaluate the other settings with cfg options:
#   ZSI:  model.mode=zsi   + val dataset subset='unseen'
#   GZSI: model.mode=gzsi  + val dataset subset='all' + model.label_map=[0, 1, 2, 3, 4]
#         (seen circle, rectangle, triangle, star, then ring: ring has the largest id, so the
#         model's order is already the 5 classes' id order; gzsi_label_map computes it)
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_seen = 4
vectors = 'shapes_demo'
width = 64
model = dict(
    _scope_='insplug',
    type='ZSIMaskRCNN',
    bbox_sync_bg=True,
    mask_sync_bg=True,
    mode='seen',
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(
        type='ZSIBackgroundAwareRPNHead',
        class_vectors=vectors,
        in_channels=width,
        feat_channels=width,
        anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            type='ZSISemanticBBoxHead',
            class_vectors=vectors,
            in_channels=width,
            fc_out_channels=256,
            num_classes=num_seen),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            type='ZSISemanticMaskHead',
            class_vectors=vectors,
            num_convs=2,
            in_channels=width,
            conv_out_channels=width,
            num_classes=num_seen)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=500),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300),
                  rcnn=dict(max_per_img=50)))

split = dict(type='ClassSplitCocoDataset', unseen_names=['ring'])
train_dataloader = dict(batch_size=4, num_workers=2, dataset=dict(split, subset='seen'))
val_dataloader = dict(batch_size=4, num_workers=2, dataset=dict(split, subset='seen'))
test_dataloader = val_dataloader

max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_epochs),
                     logger=dict(type='LoggerHook', interval=10))
randomness = dict(seed=0)
