# GZSI setting of the 65/15 model (the release's test/gzsi config): seen and unseen scores, each
# NMS'ed (score threshold 0.05), model labels (65 seen then 15 unseen) mapped to the 80 classes
# in category-id order (insplug.mmdet.zsi.zsi_mask_rcnn.gzsi_label_map).
_base_ = './zsi_mask_rcnn_r101_fpn_1x_coco_65_15.py'
model = dict(
    mode='gzsi',
    label_map=[0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26,
               27, 30, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 43, 44, 45, 46, 47, 49, 50, 51,
               53, 54, 55, 56, 57, 58, 59, 60, 62, 63, 65, 66, 67, 68, 69, 71, 72, 73, 74, 75,
               76, 77, 79, 4, 6, 12, 15, 21, 28, 29, 31, 42, 48, 52, 61, 64, 70, 78])
val_dataloader = dict(dataset=dict(subset='all'))
test_dataloader = val_dataloader
