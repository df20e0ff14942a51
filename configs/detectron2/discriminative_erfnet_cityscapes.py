# Discriminative loss on Cityscapes cars in the setting of the authors' release
# (davyneven/fastSceneUnderstanding), as a detectron2 LazyConfig for detectron2's stock
# tools/lazyconfig_train_net.py; the same values as
# configs/discriminative/discriminative_erfnet_cityscapes.py (mmdet) and
# discriminative_erfnet_cityscapes.yaml: SpatialEmbeddings' branched ERFNet, 8-d embeddings,
# the release's loss normalisation, semantic branch, mean-shift (bandwidth 1.5), 512 x 256 input.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from fvcore.common.param_scheduler import ConstantParamScheduler
from detectron2.solver import WarmupParamScheduler

from insplug.core.postprocess.clustering import MeanShiftClustering
from insplug.detectron2.bottomup import InsplugDiscriminative

from .spatialembeddings_erfnet_cityscapes import dataloader, model, optimizer, train  # noqa: F401

model._target_ = InsplugDiscriminative
for key in ('n_sigma', 'sigma_init', 'spacing', 'to_center', 'foreground_weight',
            'instance_weight', 'sigma_weight', 'seed_weight', 'foreground_threshold'):
    del model[key]
model.embed_dims = 8
model.predict_count = False
model.loss_cfg = dict(delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.0,
                      variance_norm='sum', distance_norm='release', norm_eps=1e-8, min_pixels=2)
model.semantic_weight = 1.0
model.semantic_class_weight = None
model.count_weight = 0.1
model.clusterer = L(MeanShiftClustering)(bandwidth=1.5, assign_radius=1.5, min_pixels=10)
model.min_pixels = 10
model.max_per_img = 100

# images rescaled to a longer side of 512 (512 x 256), no flip, no crop
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256,
                                                                 max_size=512)]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256,
                                                                max_size=512)]
dataloader.train.total_batch_size = 10  # the release: 2 images x 5 accumulated iterations

optimizer.lr = 5e-4
optimizer.weight_decay = 0.0  # Adam without decay

train.max_iter = 29800  # 100 epochs of 2975 images at 10 per batch
train.eval_period = 2980
train.checkpointer.period = 2980

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(ConstantParamScheduler)(value=1.0),
    warmup_length=0.0, warmup_factor=1.0)
