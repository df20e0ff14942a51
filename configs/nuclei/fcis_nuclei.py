# FCIS (position-sensitive inside/outside score maps, joint mask/detection) on the DSB2018
# nuclei set (../shared/data/nuclei, one class), for the nuclei leaderboard
# (tools/leaderboard.py CONFIGS... --data nuclei). The method's CPU demo config
# (configs/demo/fcis_r18_shapes.py: ResNet-18 with a dilated last stage, conv_new_1 128, RPN
# 128; random init, nothing downloaded) with the nuclei data (configs/_base_/datasets/
# nuclei_instance.py: 512 px input, flips both ways, COCO segm) and settings for small dense
# touching nuclei (up to 375 per image, ~13-80 px across at 512 px):
# - stride 8 instead of the release's 16 (res4 dilated 2 and res5 dilated 4, as InstanceFCN's
#   stride-8 trunk): FCIS has a single feature map, and at stride 16 a 13-30 px nucleus spans
#   1-2 cells of the 7 x 7 position-sensitive maps, so neighbours share their score cells;
#   at stride 8 the RPN (on C4) and the FCIS head (on C5) both see 2-10 cells per nucleus;
# - anchors at stride 8: scales 2, 4, 8 (16, 32, 64 px; ratios 0.5/1/2, the release's 12
#   anchors start at 64 px);
# - 1000 proposals (release 300) and 256 OHEM RoIs (release 128) per image: up to 375 nuclei;
# - test NMS 0.5 (release 0.3: touching nuclei overlap their neighbours' boxes by more), mask
#   voting at IoU 0.5 (release's), 400 detections kept (release 100).
# Schedule: 160 iterations at batch 2 (0.8 epochs of the 405 training images), sized for 30
# CPU-minutes of one thread (the board trains two configs side by side on the 2 cores,
# one thread each): `tools/leaderboard.py CONFIG --data nuclei --threads 1 --measure 6`
# measured 11.54 CPU s / iteration, data loading included; linear warm-up, LR x0.1
# at 75% and 90% of the iterations.
_base_ = ['../demo/fcis_r18_shapes.py', '../_base_/datasets/nuclei_instance.py']
leaderboard = dict(method='FCIS', family='two-stage (position-sensitive)')
num_classes = 1
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
    rpn_head=dict(anchor_generator=dict(strides=[8], scales=[2, 4, 8])),
    roi_head=dict(num_classes=num_classes, featmap_stride=8),
    train_cfg=dict(rpn_proposal=dict(nms_pre=4000, max_per_img=1000),
                   rcnn=dict(ohem_rois=256)),
    test_cfg=dict(rpn=dict(nms_pre=4000, max_per_img=1000),
                  rcnn=dict(nms=0.5, max_per_img=400)))

train_dataloader = {{_base_.nuclei_train_dataloader}}
val_dataloader = {{_base_.nuclei_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.nuclei_val_evaluator}}
test_evaluator = val_evaluator

max_iters = 160
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
