# ZSI (Zheng et al., CVPR 2021) at the release's setting, COCO 2014 65/15 split
# (configs/zsi/65_15/train/zero-shot-mask-rcnn-BARPN-bbox_mask_sync_bg_65_15_decoder_notanh.py
# of zhengye1995/Zero-shot-Instance-Segmentation): the 48/17 model (see that config) with the
# 65/15 class embeddings, 65 seen classes, the mask head's background synchronized (its sync_bg
# is set here), SGD 0.0075 and a 7000-iteration warm-up. Vocabulary: as 48/17 (check V against
# kernel_semantic.weight of ZSI_65_15.pth).
_base_ = './zsi_mask_rcnn_r101_fpn_1x_coco_48_17.py'
split = '65_15'
num_seen = 65
model = dict(
    mask_sync_bg=True,
    rpn_head=dict(class_vectors=split),
    roi_head=dict(
        bbox_head=dict(class_vectors=split, num_classes=num_seen),
        mask_head=dict(class_vectors=split, num_classes=num_seen)))
seen = dict(split=split)
train_dataloader = dict(dataset=seen)
val_dataloader = dict(dataset=seen)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.0075))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=7000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
