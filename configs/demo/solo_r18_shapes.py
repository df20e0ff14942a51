# mmdet 3's SOLO (vanilla SOLOHead: S^2 mask channels per level, Matrix NMS) on the bundled
# shapes set (CPU demo), the SOLOv2 demo's trunk and schedule (solov2_r18_shapes.py): ResNet-18
# from scratch, FPN 64, towers 2 x 64, grids and scale ranges scaled down to 256 px images.
# Set mask_head.type='DecoupledSOLOHead' (and loss_mask.activate=False) for Decoupled SOLO.
_base_ = './solov2_r18_shapes.py'
model = dict(
    type='SOLO',
    mask_head=dict(
        _delete_=True, type='SOLOHead', num_classes=5, in_channels=64, feat_channels=64,
        stacked_convs=2, strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 32), (16, 64), (32, 128), (64, 256), (128, 2048)),
        pos_scale=0.2, num_grids=[20, 16, 12, 8, 6], cls_down_index=0,
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
