# SpatialEmbeddings, the official release's setting (davyneven/SpatialEmbeddings, cars), as a
# detectron2 LazyConfig for detectron2's stock tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py \
#       --config-file configs/detectron2/spatialembeddings_erfnet_cityscapes.py
# The same values as configs/spatialembeddings/spatialembeddings_erfnet_cityscapes.py (mmdet) and
# spatialembeddings_erfnet_cityscapes.yaml (see there, and docs/deviations/spatialembeddings.md,
# for the loader's differences from the release). Register a car-only COCO-format set as
# cityscapes_car_train / cityscapes_car_val (insplug.detectron2.register_coco_instances).
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.data import (DatasetMapper, build_detection_test_loader,
                             build_detection_train_loader, get_detection_dataset_dicts)
from detectron2.evaluation import COCOEvaluator
from detectron2.model_zoo import get_config
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import CosineParamScheduler

from insplug.core.postprocess.clustering import GreedySeedClustering
from insplug.detectron2.bottomup import ERFNetBackbone, InsplugSpatialEmbeddings

num_classes = 1
model = L(InsplugSpatialEmbeddings)(
    backbone=L(ERFNetBackbone)(in_channels=3, num_branches=2, encoder_channels=(16, 64, 128),
                               num_blocks_mid=5, num_dilation_cycles=2, dilations=(2, 4, 8, 16),
                               dropout=(0.03, 0.3), decoder_channels=(64, 16),
                               decoder_blocks=2),
    in_features=['branch0', 'branch1'],
    num_classes=num_classes,
    pixel_mean=[0.0, 0.0, 0.0],  # RGB scaled to [0, 1]
    pixel_std=[255.0, 255.0, 255.0],
    n_sigma=1,
    sigma_init=1.0,
    spacing=(2 / 2047, 1 / 1023),
    to_center=True,
    foreground_weight=10.0,
    instance_weight=1.0,
    sigma_weight=10.0,
    seed_weight=1.0,
    clusterer=L(GreedySeedClustering)(seed_threshold=0.9, mask_threshold=0.5, min_pixels=128,
                                      max_proposals=None),
    foreground_threshold=0.5,
    max_per_img=1000,
)

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names='cityscapes_car_train'),
        mapper=L(DatasetMapper)(
            is_train=True,
            augmentations=[L(T.RandomCrop)(crop_type='absolute', crop_size=(512, 512))],
            image_format='RGB', use_instance_mask=True, instance_mask_format='polygon'),
        total_batch_size=16,
        num_workers=8,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names='cityscapes_car_val', filter_empty=False),
        mapper=L(DatasetMapper)(is_train=False, augmentations=[], image_format='RGB'),
        num_workers=4,
    ),
    evaluator=L(COCOEvaluator)(dataset_name='${..test.dataset.names}'),
)

optimizer = L(torch.optim.AdamW)(params=L(get_default_optimizer_params)(), lr=5e-4,
                                 weight_decay=1e-4)

train = get_config('common/train.py').train
train.max_iter = 37200  # 200 epochs of the 2975 training images at 16 per batch
train.eval_period = 1860
train.checkpointer.period = 1860
train.init_checkpoint = ''

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=0.0, warmup_factor=1.0)
