# SOLO (vanilla head; decoupled: model.ins_head.decoupled=True), ResNet-50-FPN, COCO, 1x as a
# detectron2 LazyConfig, the same values as solo_r50_1x.yaml (WXinlong/SOLO
# solo_r50_fpn_8gpu_1x.py): torchvision R-50 (RGB), FPN 256 P2-P6, 7 x 256 GN towers, SGD lr
# 0.01 x 16, ~90k iterations (12 epochs), x0.1 after epochs 9 / 11, 500-iteration warm-up from
# 1/3, shorter side 800. The release's gradient clipping at norm 35 is set in the yaml
# (SOLVER.CLIP_GRADIENTS); detectron2's LazyConfig trainer has no clipping option.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.core.solo import SOLOInstanceBranch
from insplug.detectron2.solo import InsplugSOLO

num_classes = 80
model = L(InsplugSOLO)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm='FrozenBN'),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False,
                                                 norm='FrozenBN'),
            out_features=['res2', 'res3', 'res4', 'res5'],
            freeze_at=2,
        ),
        in_features=['res2', 'res3', 'res4', 'res5'],
        out_channels=256,
        top_block=L(LastLevelMaxPool)(),
    ),
    ins_head=L(SOLOInstanceBranch)(in_channels=256, feat_channels=256, num_classes=num_classes,
                                   num_grids=[40, 36, 24, 16, 12], stacked_convs=7,
                                   decoupled=False, norm='GN', cls_down_index=0,
                                   prior_prob=0.01),
    instance_in_features=['p2', 'p3', 'p4', 'p5', 'p6'],
    strides=[8, 8, 16, 32, 32],
    scale_ranges=[[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]],
    sigma=0.2,
    pixel_mean=[123.675, 116.280, 103.530],  # RGB input, torchvision R-50
    pixel_std=[58.395, 57.120, 57.375],
    loss=dict(dice_weight=3.0, focal_weight=1.0, focal_alpha=0.25, focal_gamma=2.0),
    test=dict(score_thr=0.1, mask_thr=0.5, nms_pre=500, update_thr=0.05, max_per_img=100,
              nms_kernel='gaussian', nms_sigma=2.0),
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.instance_mask_format = 'bitmask'
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16
dataloader.test.mapper.image_format = 'RGB'

optimizer = get_config('common/optim.py').SGD
optimizer.lr = 0.01

train = get_config('common/train.py').train
train.max_iter = 87960
train.init_checkpoint = 'detectron2://ImageNetPretrained/torchvision/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[65970, 80630, 87960]),
    warmup_length=500 / 87960,
    warmup_method='linear',
    warmup_factor=1.0 / 3,
)
