# CenterMask, VoVNetV2-39 (eSE)-FPN, multi-scale 3x, COCO as a detectron2 LazyConfig:
#   python tools/lazyconfig_train_net.py --config-file configs/detectron2/centermask_v39_3x.py
# The official recipe (youngwanLEE/centermask2 centermask_V_39_eSE_FPN_ms_3x.yaml; released
# centermask2-V-39-eSE-FPN-ms-3x.pth, mask AP 39.7), the same values as
# configs/centermask/centermask_v39_3x.py (mmdet) and centermask_v39_3x.yaml: VoVNet with
# FrozenBN, nothing frozen, FPN on stage3-stage5; the rest as centermask_r50_3x.py.
# ImageNet trunk: python tools/convert_checkpoint.py vovnet_imagenet vovnet39_ese_detectron2.pth
#   checkpoints/vovnet39_ese_insplug_d2.pth --to detectron2
from detectron2.config import LazyCall as L

from insplug.detectron2.vovnet import InsplugVoVNet

from .centermask_r50_3x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = L(InsplugVoVNet)(
    arch='V-39', out_features=['stage3', 'stage4', 'stage5'], norm='FrozenBN', freeze_at=0)
model.backbone.in_features = ['stage3', 'stage4', 'stage5']
train.init_checkpoint = 'checkpoints/vovnet39_ese_insplug_d2.pth'
__all__ = ['dataloader', 'lr_multiplier', 'model', 'optimizer', 'train']
