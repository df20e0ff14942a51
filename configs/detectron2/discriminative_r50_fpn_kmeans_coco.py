# Discriminative loss on COCO with a ResNet-50 + FPN trunk (P2), an instance-count density branch
# and k-means clustering, as a detectron2 LazyConfig; the same values as
# configs/discriminative/discriminative_r50_fpn_kmeans_coco.py (mmdet) and
# discriminative_r50_fpn_kmeans_coco.yaml (trunk, data and schedule as
# spatialembeddings_r50_fpn_coco.py).
from detectron2.config import LazyCall as L

from insplug.core.postprocess.clustering import KMeansClustering
from insplug.detectron2.bottomup import InsplugDiscriminative

from .spatialembeddings_r50_fpn_coco import (  # noqa: F401
    dataloader, lr_multiplier, model, optimizer, train)

model._target_ = InsplugDiscriminative
for key in ('n_sigma', 'sigma_init', 'spacing', 'to_center', 'foreground_weight',
            'instance_weight', 'sigma_weight', 'seed_weight', 'foreground_threshold'):
    del model[key]
model.embed_dims = 8
model.predict_count = True
model.loss_cfg = dict(delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.0,
                      variance_norm='sum', distance_norm='release', norm_eps=1e-8, min_pixels=2)
model.semantic_weight = 1.0
model.semantic_class_weight = None
model.count_weight = 0.1
model.clusterer = L(KMeansClustering)(num_iter=30, num_restarts=10, min_pixels=64)
model.min_pixels = 64
model.max_per_img = 100
