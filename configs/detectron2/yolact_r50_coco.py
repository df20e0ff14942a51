# YOLACT, ResNet-50-FPN, 550 px, COCO (the release's yolact_resnet50_config) as a detectron2
# LazyConfig for detectron2's stock tools/lazyconfig_train_net.py:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/yolact_r50_coco.py
# The same values as configs/yolact/yolact_r50_coco.py (mmdet) and yolact_r50_coco.yaml. Unlike
# the yaml, the images are stretched to 550 x 550 as in the release (T.Resize); the release's SSD
# photometric distortion / expand / min-IoU crop are not reproduced (docs/deviations/yolact.md).
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler

from insplug.core.layers.protonet import ProtoNetEncoder
from insplug.core.prototypes.yolact_fpn import YolactFPNModule
from insplug.core.prototypes.yolact_head import YolactPredictionHead
from insplug.detectron2.yolact import InsplugYOLACT

num_classes = 80
num_protos = 32
model = L(InsplugYOLACT)(
    # torchvision ResNet-50 (stride in the 3x3 conv), BN in batch-statistics mode, nothing frozen
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm='BN'),
        stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False, norm='BN'),
        out_features=['res3', 'res4', 'res5'],
        freeze_at=0,
    ),
    fpn=L(YolactFPNModule)(in_channels=[512, 1024, 2048], out_channels=256, num_extra=2,
                           relu_pred_layers=True, relu_extra=False),
    head=L(YolactPredictionHead)(
        num_classes=num_classes, in_channels=256, feat_channels=256, num_head_convs=1,
        num_protos=num_protos, prior_scales=[[24], [48], [96], [192], [384]],
        prior_ratios=[1.0, 0.5, 2.0], prior_max_size=550, square_anchors=True),
    protonet=L(ProtoNetEncoder)(in_channels=256, feat_channels=256, num_protos=num_protos,
                                num_convs=3, in_levels=(0,), proto_activation='relu',
                                init='xavier'),
    in_features=['res3', 'res4', 'res5'],
    pixel_mean=[123.68, 116.78, 103.94],  # RGB input
    pixel_std=[58.40, 57.12, 57.38],
    with_seg_branch=True,
    mask_iou_net=None,
    loss_cfg=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, crowd_iou_thr=0.7, neg_pos_ratio=3,
                  cls_weight=1.0, bbox_weight=1.5, mask_weight=6.125, masks_to_train=100,
                  crop_padding=1, segm_weight=1.0, mask_iou_weight=25.0, discard_mask_area=25,
                  detach_mask_iou_input=False),
    test_cfg=dict(score_thr=0.05, iou_thr=0.5, top_k=200, max_num=100, second_threshold=False,
                  mask_thr=0.5, rescore_bbox=False, integer_boxes=True, drop_empty=True),
)

dataloader = get_config('common/data/coco.py').dataloader
dataloader.train.mapper.image_format = 'RGB'
dataloader.train.mapper.augmentations = [L(T.Resize)(shape=(550, 550)),
                                         L(T.RandomFlip)(horizontal=True)]
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 4
dataloader.test.mapper.image_format = 'RGB'
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(550, 550))]

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=5e-4),
    lr=1e-3, momentum=0.9, weight_decay=5e-4)

train = get_config('common/train.py').train
train.max_iter = 800000
train.eval_period = 50000
train.checkpointer.period = 50000
train.init_checkpoint = 'detectron2://ImageNetPretrained/torchvision/R-50.pkl'

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01, 0.001, 0.0001],
        milestones=[280000, 600000, 700000, 750000, 800000]),
    warmup_length=500 / 800000,
    warmup_method='linear',
    warmup_factor=0.1,
)
