# BoxCaseg class-agnostic segmenter at the release's COCO setting (train_cd.sh,
# experiments/CD/cd_trans_fcn.yaml): as the PASCAL config with fcn_ratio 0.6 and lr 0.008;
# the released checkpoint is COCO_epoch_50_miou0.717.pth (50 epochs).
# Not reproduced: the release's combined sampler (weakly_ratio 0.6875 of each batch from box
# crops) and its random dropping of heavily occluded COCO instances (overlap_anno_id.json);
# see docs/deviations/boxcaseg.md.
_base_ = ['./boxcaseg_hrnet_w48_voc.py']

coco_root = 'data/coco/'
model = dict(fcn_ratio=0.6)
train_dataloader = dict(dataset=dict(dataset=dict(
    _delete_=True, type='ValidatedCocoDataset', data_root=coco_root,
    ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
    filter_cfg=dict(filter_empty_gt=True), pipeline={{_base_.box_pipeline}})))
val_dataloader = dict(dataset=dict(
    _delete_=True, type='ValidatedCocoDataset', data_root=coco_root,
    ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
    test_mode=True, pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=coco_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=0.008))
train_cfg = dict(max_epochs=50)
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=50, by_epoch=True)]
