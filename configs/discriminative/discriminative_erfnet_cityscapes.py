# Discriminative loss (De Brabandere, Neven and Van Gool, 2017) on Cityscapes, in the setting of
# the authors' release (davyneven/fastSceneUnderstanding, Torch7: opts.lua, main.lua,
# lossf/myInstanceLoss.lua, tools/clustering.lua, test.lua, datasets/Cityscapes.lua):
# - instances of one class, car (Cityscapes.lua: "take only car instances for now");
# - images and labels rescaled to a longer side of 512 (512x256), no flip;
# - 8 embedding dimensions, delta_v 0.5, delta_d 1.5, the release's normalisation (variance
#   summed over instances, push over unordered pairs / (C - 1), no regulariser);
# - a semantic branch trained with cross entropy (the release: 20 Cityscapes classes with
#   ENet-style class weights; here background + car, unweighted: see
#   docs/deviations/discriminative.md);
# - Adam lr 5e-4, no decay, batch 2 with 5 accumulated iterations (virtual batch 10), 100 epochs;
# - test: foreground = arg-max class is car; the release then runs a sequential mean-shift from
#   random seeds with bandwidth 1.5 (deviation: insplug's parallel mean-shift, bandwidth 1.5).
# The release's network is a branched ENet (pretrained on Cityscapes segmentation); here the
# branched ERFNet of SpatialEmbeddings from scratch. The released Torch7 model (.t7) cannot be
# converted.
_base_ = '../spatialembeddings/spatialembeddings_erfnet_cityscapes.py'
delta_v = 0.5
delta_d = 1.5
image_scale = (512, 256)

model = dict(
    head=dict(
        _delete_=True,
        type='DiscriminativeHead',
        num_classes=1,
        in_channels=16,
        embed_dims=8,
        delta_v=delta_v,
        delta_d=delta_d,
        alpha=1.0,
        beta=1.0,
        gamma=0.0,
        variance_norm='sum',
        distance_norm='release',
        norm_eps=1e-8,
        min_instance_pixels=2,
        semantic_weight=1.0,
        in_stride=2,
        in_index=(0, 1),
        test_cfg=dict(
            clustering=dict(type='MeanShiftClustering', bandwidth=1.5, assign_radius=1.5,
                            min_pixels=10),
            min_pixels=10,
            max_per_img=100)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# Cityscapes instance AP of the car class (InsplugCityscapesMetric, cityscapesscripts) and COCO
# AP; the Torch7 release has no AP evaluation: scores at full precision.
val_evaluator = [
    dict(type='InsplugCocoMetric',
         ann_file='data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json',
         metric=['bbox', 'segm'], backend_args=backend_args),
    dict(type='InsplugCityscapesMetric', seg_prefix='data/cityscapes/gtFine/val',
         outfile_prefix=None, eval_classes='model', backend_args=backend_args),
]
test_evaluator = val_evaluator
train_dataloader = dict(batch_size=2, num_workers=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 100
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    accumulative_counts=5,
    optimizer=dict(type='Adam', lr=5e-4))
param_scheduler = []
