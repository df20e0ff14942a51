# YOLACT-style model with insplug's ProtoNetEncoder + ProtoMaskHead (and YOLACT++ fast mask-IoU
# rescoring) on the bundled shapes set (CPU demo): ResNet-18 from scratch, narrow FPN P3-P6,
# priors scaled to 256 px images (scales 16-128 px at P3-P6, YOLACT's square priors of sides
# s * sqrt(ratio), for 10-150 px shapes).
# Schedule deviation from YOLACT (SGD 1e-3, ImageNet backbone): AdamW 1e-3, because from scratch
# YOLACT's summed box/OHEM losses give gradient norms of several hundred, which the clipping
# (needed for SGD stability: without it SGD 1e-2 diverges to NaN) turns into tiny SGD steps.
_base_ = [
    '../yolact/yolact_protonet_r50_fpn_base.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
num_classes = 5
num_protos = 16
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[128, 256, 512], out_channels=64, num_extra=1),
    bbox_head=dict(
        num_classes=num_classes, in_channels=64, feat_channels=64, num_protos=num_protos,
        prior_scales=[[16], [32], [64], [128]], prior_max_size=256),
    mask_head=dict(
        num_classes=num_classes, in_channels=64, with_mask_iou=True,
        protonet=dict(in_channels=64, feat_channels=64, num_protos=num_protos)),
    test_cfg=dict(max_per_img=50))
train_dataloader = dict(batch_size=4, num_workers=2)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
                     clip_grad=dict(max_norm=35, norm_type=2))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=12)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
