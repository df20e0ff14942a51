"""Bottom-up (embedding + clustering) instance segmentation, framework-free PyTorch.

* :mod:`.spatial_embedding` -- SpatialEmbeddings (Neven et al., CVPR 2019): loss and inference.
* :mod:`.discriminative` -- heads' maths around the discriminative loss (De Brabandere et al.,
  2017): semantic targets, instance-count density, inference.
* :mod:`.instances` -- turning clusters into instances (labels by majority vote, boxes).
* :mod:`.outputs` -- the output layers mapping decoder features to per-pixel predictions.

The discriminative loss itself is :mod:`insplug.core.losses.discriminative`; the clustering
algorithms are :mod:`insplug.core.postprocess.clustering`.
"""
