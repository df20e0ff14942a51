# GZSI setting of the 48/17 model (the release's test/gzsi config): seen and unseen scores, each
# NMS'ed (score threshold 0.05), model labels (48 seen then 17 unseen) mapped to the 65 classes
# in category-id order (insplug.mmdet.zsi.zsi_mask_rcnn.gzsi_label_map).
_base_ = './zsi_mask_rcnn_r101_fpn_1x_coco_48_17.py'
model = dict(
    mode='gzsi',
    mask_sync_bg=True,  # the release's gzsi config sets the mask head's sync_bg
    label_map=[0, 1, 2, 3, 6, 7, 8, 9, 10, 13, 14, 17, 18, 19, 20, 22, 24, 25, 26, 28, 30, 31,
               33, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 48, 49, 50, 51, 52, 53, 55, 56,
               57, 59, 60, 61, 62, 64, 4, 5, 11, 12, 15, 16, 21, 23, 27, 29, 32, 34, 45, 47, 54,
               58, 63])
val_dataloader = dict(dataset=dict(subset='all'))
test_dataloader = val_dataloader
