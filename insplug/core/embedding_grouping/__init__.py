"""Embedding-grouping instance segmentation, framework-free PyTorch.

* :mod:`.recurrent_meanshift` -- Recurrent Pixel Embedding (Kong and Fowlkes, CVPR 2018):
  hypersphere embeddings, the recurrent (Gaussian-blurring) mean-shift grouping module with a
  von Mises-Fisher kernel, the pairwise calibrated cosine loss with instance-size weights, and
  the inference grouping.
* :mod:`.metric_seediness` -- Semantic instance segmentation via deep metric learning (Fathi et
  al., 2017): the pairwise logistic embedding loss on sampled pixels, the per-class seediness
  head, seed selection (seediness times diversity) and mask growth.

Both reuse the bottom-up output path (:mod:`insplug.core.bottomup`).
"""
