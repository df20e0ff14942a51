# InstanceFCN, "segments, then classified", CPU demo on the bundled shapes set (5 classes): the
# class-agnostic demo (instancefcn_r18_shapes.py: dilated quarter-width ResNet-18, k = 3,
# m = 9) plus MNC's stage-3 segment classifier on the same trunk features (box pathway and
# masked pathway, fc 256 instead of 4096), trained in the same run as the proposals on each
# batch's own detached proposals (the best 50 of 50 windows per image, + the ground truth) and
# detached features (as in the paper's two steps, the classifier does not train the proposal
# network); inference classifies the best 100 proposals at scale 1.
# Evaluation: class-aware COCO segm / bbox AP.
_base_ = './instancefcn_r18_shapes.py'
model = dict(
    classifier=dict(
        num_classes=5, fc_channels=256, roi_size=7, mask_size=14, binarize_thr=0.4,
        train_cfg=dict(num_proposals=50, pre_nms=50, rois_per_img=64,
                       fractions=(0.3, 0.5, 0.2), thr_lo=(0.5, 0.1, 0.0),
                       thr_hi=(1.0, 0.5, 0.1), fg_det_thr=0.5, fg_seg_thr=0.5, add_gt=True,
                       loss_weight=1.0, detach_features=True, train_proposals=True),
        test_cfg=dict(num_proposals=100, scale=1.0, score_thr=0.0, nms_iou=0.3,
                      max_per_class=100, max_per_img=100)))
val_evaluator = dict(_delete_=True, type='InsplugCocoMetric',
                     ann_file='data/shapes/val/annotations.json', metric=['bbox', 'segm'],
                     format_only=False)
test_evaluator = val_evaluator
