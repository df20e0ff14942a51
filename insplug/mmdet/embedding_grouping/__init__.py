"""mmdet adapters of the embedding-grouping family (recurrent pixel embedding; deep metric
learning with seediness): heads, detectors and the recurrent mean-shift clusterer, wiring
:mod:`insplug.core.embedding_grouping` into the bottom-up path (:mod:`insplug.mmdet.bottomup`).
"""
