# SpatialEmbeddings on COCO with a ResNet-50 + FPN trunk (P2, stride 4) as a detectron2
# LazyConfig for detectron2's stock tools/lazyconfig_train_net.py; the same values as
# configs/spatialembeddings/spatialembeddings_r50_fpn_coco.py (mmdet) and
# spatialembeddings_r50_fpn_coco.yaml (see there for the differences of detectron2's solver).
import torch
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import CosineParamScheduler

from insplug.core.postprocess.clustering import GreedySeedClustering
from insplug.detectron2.bottomup import InsplugSpatialEmbeddings

num_classes = 80
# detectron2's R50-FPN (P2-P6), torchvision ResNet (stride in the 3x3 conv), stem + res2 frozen
backbone = get_config('common/models/mask_rcnn_fpn.py').model.backbone
backbone.bottom_up.stages.stride_in_1x1 = False
backbone.bottom_up.freeze_at = 2

model = L(InsplugSpatialEmbeddings)(
    backbone=backbone,
    in_features=['p2', 'p2'],
    num_classes=num_classes,
    pixel_mean=[123.675, 116.280, 103.530],  # RGB input
    pixel_std=[58.395, 57.120, 57.375],
    n_sigma=1,
    sigma_init=1.0,
    spacing=(2 / 2047, 1 / 1023),
    to_center=True,
    foreground_weight=10.0,
    instance_weight=1.0,
    sigma_weight=10.0,
    seed_weight=1.0,
    clusterer=L(GreedySeedClustering)(seed_threshold=0.9, mask_threshold=0.5, min_pixels=128),
    foreground_threshold=0.5,
    max_per_img=100,
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.instance_mask_format = 'bitmask'
dataloader.train.total_batch_size = 16

optimizer = L(torch.optim.AdamW)(params=L(get_default_optimizer_params)(), lr=5e-4,
                                 weight_decay=1e-4)

train = get_config('common/train.py').train
train.max_iter = 88000  # 12 epochs at 16 images per batch
train.eval_period = 7330
train.checkpointer.period = 7330
train.init_checkpoint = 'detectron2://ImageNetPretrained/torchvision/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=500 / 88000, warmup_method='linear', warmup_factor=0.001)
