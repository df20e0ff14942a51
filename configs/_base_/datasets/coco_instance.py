# mmdet's COCO instance-segmentation data settings, evaluated by InsplugCocoMetric (mmdet's
# CocoMetric with faster-coco-eval when it is installed: the same 12 stats as pycocotools,
# several times faster; use_faster_coco_eval=False gives pycocotools).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
val_evaluator = dict(type='InsplugCocoMetric')
test_evaluator = dict(type='InsplugCocoMetric')
