# SparseInst, ResNet-50, G-IAM, COCO as a detectron2 LazyConfig, for detectron2's stock
# tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/sparseinst_r50_giam.py
# The official recipe (hustvl/SparseInst sparse_inst_r50_giam.yaml), the same values as
# configs/sparseinst/sparseinst_r50_giam.py (mmdet) and sparseinst_r50_giam.yaml.
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.core.sparseinst.decoder import IAMDecoder
from insplug.core.sparseinst.encoder import InstanceContextEncoder
from insplug.detectron2 import InsplugSparseInst

num_classes = 80
model = L(InsplugSparseInst)(
    # torchvision ResNet-50 (stride in the 3x3 conv), frozen BN, no frozen stage
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
        stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False, norm='FrozenBN'),
        out_features=['res3', 'res4', 'res5'],
        freeze_at=0,
    ),
    encoder=L(InstanceContextEncoder)(in_channels=[512, 1024, 2048], out_channels=256,
                                      pool_sizes=[1, 2, 3, 6]),
    decoder=L(IAMDecoder)(in_channels=256, num_classes=num_classes, num_masks=100,
                          iam_type='group', groups=4, inst_dim=256, inst_convs=4,
                          mask_dim=256, mask_convs=4, kernel_dim=128, scale_factor=2.0),
    in_features=['res3', 'res4', 'res5'],
    pixel_mean=[123.675, 116.280, 103.530],  # RGB input
    pixel_std=[58.395, 57.120, 57.375],
    loss_weights=dict(cls=2.0, mask=5.0, dice=2.0, obj=1.0),
    matcher_alpha=0.8,
    matcher_beta=0.2,
    focal_alpha=0.25,
    focal_gamma=2.0,
    cls_threshold=0.005,
    mask_threshold=0.45,
    max_detections=100,
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'RGB'
# the model rasterises the masks itself; bitmasks also accept RLE annotations
dataloader.train.mapper.instance_mask_format = 'bitmask'
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=tuple(range(416, 641, 32)), max_size=853,
                            sample_style='choice'),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 64  # 8 GPUs x 8 images
dataloader.train.num_workers = 6
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=640,
                                                                max_size=853)]

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=5e-5, weight_decay=0.05, amsgrad=False)

train = get_config('common/train.py').train
train.max_iter = 270000
train.eval_period = 7330
train.checkpointer.period = 7330
train.init_checkpoint = 'detectron2://ImageNetPretrained/torchvision/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[210000, 250000, 270000]),
    warmup_length=1000 / 270000,
    warmup_method='linear',
    warmup_factor=0.001,
)
