# mmdet 3's PointRend on the bundled shapes set (CPU demo): the Mask R-CNN demo
# (mask_rcnn_r18_shapes.py: ResNet-18 from scratch, FPN 128) with PointRend's ROI head as in
# mmdet's point-rend_r50-caffe_fpn_ms-1x_coco.py (coarse 7x7 mask head of 2 FCs, 3-FC point
# head, 14*14 importance-sampled training points, 5 subdivision steps at test time), narrowed.
_base_ = './mask_rcnn_r18_shapes.py'
num_classes = 5
model = dict(
    type='PointRend',
    roi_head=dict(
        type='PointRendRoIHead',
        mask_roi_extractor=dict(
            type='GenericRoIExtractor', aggregation='concat',
            roi_layer=dict(_delete_=True, type='SimpleRoIAlign', output_size=14),
            out_channels=128, featmap_strides=[4]),
        mask_head=dict(
            _delete_=True, type='CoarseMaskHead', num_fcs=2, in_channels=128,
            conv_out_channels=128, fc_out_channels=256, num_classes=num_classes,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)),
        point_head=dict(
            type='MaskPointHead', num_fcs=3, in_channels=128, fc_channels=128,
            num_classes=num_classes, coarse_pred_each_layer=True,
            loss_point=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=7, num_points=14 * 14, oversample_ratio=3,
                             importance_sample_ratio=0.75)),
    test_cfg=dict(rcnn=dict(subdivision_steps=5, subdivision_num_points=28 * 28,
                            scale_factor=2)))
