# ZSI setting of the 65/15 model: unseen classes only (the release's test/zsi config:
# seen_class=False), evaluated on the 15 unseen classes of instances_val2014.json.
_base_ = './zsi_mask_rcnn_r101_fpn_1x_coco_65_15.py'
model = dict(mode='zsi')
val_dataloader = dict(dataset=dict(subset='unseen'))
test_dataloader = val_dataloader
