"""mmdet adapters of the NMS family (registered in TASK_UTILS)."""
