"""Image-level supervision of PRM / CountSeg from instance annotations (framework-free).

Shapes: N instances, K classes.
"""
import numpy as np


def image_labels_and_counts(labels, ignore, num_classes):
    """Multi-hot labels (every instance) and counts (non-ignored instances).

    The PRM release trains VOC "difficult" labels as positives (``difficult_samples: yes``),
    so ignored (crowd / difficult) instances set the label; the CountSeg release counts
    non-difficult objects only.

    Args:
        labels: (N,) int class indices; ignore: (N,) bool or None; num_classes: K.

    Returns:
        (K,) float32 multi-hot, (K,) int64 counts.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    ignore = np.zeros(labels.shape, bool) if ignore is None else np.asarray(ignore, bool)
    multi_hot = np.zeros(num_classes, np.float32)
    multi_hot[labels] = 1
    counts = np.bincount(labels[~ignore], minlength=num_classes).astype(np.int64)
    return multi_hot, counts
