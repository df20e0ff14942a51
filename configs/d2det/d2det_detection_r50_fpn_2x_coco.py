# D2Det, object detection, R-50-FPN, 2x (24 epochs), COCO: the official setting of the release's
# configs/D2Det/D2Det_detection_r50_fpn_2x.py (JialeCao001/D2Det, mmdet 1.1; released model:
# 43.7 box AP on val2017, 43.9 on test-dev). The detection variant: the overlap map is the box
# rule (cells one pitch inside the GT box), no mask branch, soft-NMS (IoU 0.5) of the refined
# boxes. Everything else as configs/d2det/d2det_instance_r101_fpn_2x_coco.py.
#   python tools/convert_checkpoint.py d2det D2Det-detection-res50.pth d2det_det_r50.pth \
#       --config configs/d2det/d2det_detection_r50_fpn_2x_coco.py
_base_ = './d2det_instance_r101_fpn_2x_coco.py'
model = dict(
    type='FasterRCNN',
    backbone=dict(depth=50,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=dict(sample_per_part=2)),
        d2det_head=dict(with_mask=False)),
    test_cfg=dict(
        rpn=dict(max_per_img=1000),
        rcnn=dict(score_thr=0.03, nms=dict(type='nms', iou_threshold=0.5), max_per_img=125)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
