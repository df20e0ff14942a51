# A stock mmdet Mask R-CNN roi_head fed by DeepMask proposals (boxes of the DeepMask masks), on
# the shapes set (CPU demo): the demo Mask R-CNN (configs/demo/mask_rcnn_r18_shapes.py) with its
# RPN replaced by DeepMaskRPNHead (the deepmask_r18_shapes network, trained jointly here; set
# freeze=True and load its weights to use a trained DeepMask as a fixed proposal generator).
_base_ = '../demo/mask_rcnn_r18_shapes.py'
model = dict(
    type='insplug.DeepMaskMaskRCNN',
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True),
    rpn_head=dict(
        _delete_=True,
        type='insplug.DeepMaskRPNHead',
        net=dict(depth=18, base_channels=16, norm='bn', padding='symmetric', window_size=64,
                 context=32, mask_size=16, label_size=32, reduce_channels=32,
                 embed_channels=128, score_channels=128, dropout=0.5),
        deepmask_train_cfg=dict(mask_per_image=8, pos_per_image=4, neg_per_image=4, shift=6.0,
                                min_area=16, min_side=3, score_weight=1.0),
        deepmask_test_cfg=dict(smin=-1.5, smax=1.5, sstep=0.5, num_proposals=300,
                               mask_thr=0.2),
        freeze=False))
