# D2Det (instance variant: discriminative RoI pooling, dense local regression, instance masks
# with mask-IoU) on the DSB2018 nuclei set (../shared/data/nuclei, one class), for the nuclei
# leaderboard (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (configs/demo/d2det_r18_shapes.py: ResNet-18 + FPN 64, narrow heads, AdamW; random init,
# nothing downloaded) with the nuclei data (configs/_base_/datasets/nuclei_instance.py: 512 px
# input, flips both ways, COCO segm) and settings for small dense touching nuclei (up to 375
# per image, ~13-80 px across at 512 px), the baseline's (mask_rcnn_nuclei.py) where they
# concern the RPN and sampling:
# - anchors: scale 4 at strides 4..64 (16-256 px base sizes; the first three levels cover
#   the 13-80 px nuclei);
# - 1000 RPN proposals (train and test), 512 sampled RoIs, 400 detections kept;
# - 192 positive RoIs per batch through the dense-regression / mask head (the release's
#   max_num_reg; the demo's 64 would see only a fraction of an image's nuclei);
# - final box NMS at IoU 0.5 (the release's 0.3 is for COCO objects; touching nuclei in a
#   clump overlap their neighbours' boxes by more than 0.3, the baseline keeps mmdet's 0.5);
# - 28x28 masks (the release's): a nucleus is <= 80 px, the outline within ~3 px.
# Schedule: 200 iterations at batch 2 (1.0 epoch of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 8.85 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/d2det_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='D2Det', family='two-stage')
num_classes = 1
model = dict(
    roi_head=dict(bbox_head=dict(num_classes=num_classes),
                  d2det_head=dict(num_classes=num_classes), max_num_reg=192),
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=1000),
                   rcnn=dict(sampler=dict(num=512), max_num_reg=192)),
    test_cfg=dict(rpn=dict(nms_pre=2000, max_per_img=1000),
                  rcnn=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=400)))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 200
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=min(100, max_iters // 4)),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                                     interval=min(500, max_iters // 2), max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
