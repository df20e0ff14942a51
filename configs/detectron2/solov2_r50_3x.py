# SOLOv2, ResNet-50-FPN, COCO, 3x as a detectron2 LazyConfig, for detectron2's stock
# tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/solov2_r50_3x.py
# The official recipe (aim-uofa/AdelaiDet configs/SOLOv2/R50_3x.yaml), the same values as
# solov2_r50_3x.yaml: MSRA R-50 (BGR, caffe, FrozenBN, res2+ trained), FPN 256 P2-P6, SGD
# lr 0.01 x 16 images, 270k iterations, x0.1 at 210k and 250k, 1k warm-up from 0.01.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.core.solo import MaskFeatBranch, SOLOv2InstanceBranch
from insplug.detectron2.solo import InsplugSOLOv2

num_classes = 80
model = L(InsplugSOLOv2)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True,
                                                 norm='FrozenBN'),
            out_features=['res2', 'res3', 'res4', 'res5'],
            freeze_at=2,
        ),
        in_features=['res2', 'res3', 'res4', 'res5'],
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    ins_head=L(SOLOv2InstanceBranch)(in_channels=256, feat_channels=512,
                                     num_classes=num_classes, kernel_channels=256,
                                     num_grids=[40, 36, 24, 16, 12], stacked_convs=4,
                                     norm='GN', prior_prob=0.01),
    mask_head=L(MaskFeatBranch)(in_channels=256, feat_channels=128, out_channels=256,
                                num_levels=4, norm='GN'),
    instance_in_features=['p2', 'p3', 'p4', 'p5', 'p6'],
    mask_in_features=['p2', 'p3', 'p4', 'p5'],
    strides=[8, 8, 16, 32, 32],
    scale_ranges=[[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]],
    sigma=0.2,
    pixel_mean=[103.530, 116.280, 123.675],  # BGR input, MSRA R-50
    pixel_std=[1.0, 1.0, 1.0],
    loss=dict(dice_weight=3.0, focal_weight=1.0, focal_alpha=0.25, focal_gamma=2.0,
              dice_normalizer='targets'),
    test=dict(score_thr=0.1, mask_thr=0.5, nms_pre=500, update_thr=0.05, max_per_img=100,
              nms_kernel='gaussian', nms_sigma=2.0),
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'BGR'
dataloader.train.mapper.instance_mask_format = 'bitmask'
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(640, 672, 704, 736, 768, 800), max_size=1333,
                            sample_style='choice'),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
dataloader.test.mapper.image_format = 'BGR'

optimizer = get_config('common/optim.py').SGD
optimizer.lr = 0.01

train = get_config('common/train.py').train
train.max_iter = 270000
train.init_checkpoint = 'detectron2://ImageNetPretrained/MSRA/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[210000, 250000, 270000]),
    warmup_length=1000 / 270000,
    warmup_method='linear',
    warmup_factor=0.01,
)
