# SOLOv2, ResNet-50-FPN, COCO, 1x as a detectron2 LazyConfig: solov2_r50_3x.py with AdelaiDet's
# Base-SOLOv2.yaml schedule (90k iterations, x0.1 at 60k and 80k); = solov2_r50_1x.yaml.
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from .solov2_r50_3x import dataloader, model, optimizer, train  # noqa: F401

train.max_iter = 90000
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01],
                                         milestones=[60000, 80000, 90000]),
    warmup_length=1000 / 90000,
    warmup_method='linear',
    warmup_factor=0.01,
)
