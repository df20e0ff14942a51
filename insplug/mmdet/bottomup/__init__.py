"""mmdet adapters of the bottom-up (embedding + clustering) family.

Registers the ERFNet backbone, the clustering post-processors (TASK_UTILS), the SpatialEmbeddings
and discriminative-loss heads and the :class:`BottomUpSegmentor` detector, whose predictions are
``InstanceData`` (masks, labels, scores, boxes from masks) evaluated by ``CocoMetric``.
"""
