"""Registers framework-free bottom-up components from :mod:`insplug.core` in the insplug scope."""
from insplug.core.backbones.erfnet import ERFNet
from insplug.core.postprocess.clustering import (GreedySeedClustering, KMeansClustering,
                                                 MeanShiftClustering)
from insplug.registry import MODELS, TASK_UTILS

MODELS.register_module(name='ERFNet', module=ERFNet)
for _cls in (GreedySeedClustering, MeanShiftClustering, KMeansClustering):
    TASK_UTILS.register_module(name=_cls.__name__, module=_cls)
