"""``InsplugCocoMetric``: mmdet's ``CocoMetric`` with faster-coco-eval as the COCO backend.

COCO segm evaluation is a large part of a CPU test run. faster-coco-eval (PyPI
``faster-coco-eval``) has pycocotools' API and computes the same 12 stats, with the per-image
matching and the accumulation in C++ (4-5x faster on the demo results). This metric is mmdet's
``CocoMetric`` (same arguments, same output keys, same ``classwise`` table) plus:

* ``use_faster_coco_eval`` (``None`` = True when ``faster_coco_eval`` is importable, else False;
  ``True`` when it is not installed is an error): the ground truth is read with
  ``faster_coco_eval.COCO`` and evaluated with ``COCOeval_faster``; with ``False`` it is
  exactly mmdet's ``CocoMetric`` (pycocotools);
* ``coco_stats``: after each evaluation, ``{'bbox': [12 floats], 'segm': [...]}``, the
  unrounded ``COCOeval.stats`` in pycocotools' order (mmdet rounds what it reports to 3
  decimals; faster-coco-eval appends AR@0.5 and AR@0.75, left out here).

mmdet's ``CocoMetric`` names its backend through the module globals ``COCO`` / ``COCOeval`` of
``mmdet.evaluation.metrics.coco_metric``; this class swaps them only for the duration of its
own ``__init__`` / ``compute_metrics`` calls (and restores them after), so that mmdet's code
(results to json, category handling, ``classwise``, ``metric_items``) runs unchanged.
"""
import contextlib
import importlib.util

import mmdet.evaluation.metrics.coco_metric as _coco_metric
from mmdet.evaluation import CocoMetric

from insplug.registry import METRICS


def faster_coco_eval_available():
    return importlib.util.find_spec('faster_coco_eval') is not None


@contextlib.contextmanager
def _patched(module, **names):
    saved = {name: getattr(module, name) for name in names}
    try:
        for name, value in names.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


@METRICS.register_module()
class InsplugCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` with ``use_faster_coco_eval`` (see the module docstring).

    Args:
        use_faster_coco_eval (bool | None): evaluate with faster-coco-eval. ``None`` (default):
            when it is installed.
        **kwargs: mmdet ``CocoMetric`` arguments.
    """

    default_prefix = 'coco'

    def __init__(self, *args, use_faster_coco_eval=None, **kwargs):
        if use_faster_coco_eval is None:
            use_faster_coco_eval = faster_coco_eval_available()
        elif use_faster_coco_eval and not faster_coco_eval_available():
            raise ImportError('use_faster_coco_eval=True needs faster-coco-eval: '
                              'pip install faster-coco-eval (or set it to False: pycocotools)')
        self.use_faster_coco_eval = bool(use_faster_coco_eval)
        self.coco_stats = {}
        with self._backend():
            super().__init__(*args, **kwargs)

    def _backend(self):
        """Context in which mmdet's CocoMetric code uses this metric's COCO backend."""
        evals = self._evals = []
        if self.use_faster_coco_eval:
            from faster_coco_eval import COCO, COCOeval_faster

            def make_eval(coco_gt, coco_dt, iou_type):
                evals.append(COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=print))
                return evals[-1]
            # faster-coco-eval runs its matching in C++ already: use_mp_eval changes nothing
            return _patched(_coco_metric, COCO=COCO, COCOeval=make_eval, COCOevalMP=make_eval)

        pycocotools_eval, pycocotools_eval_mp = _coco_metric.COCOeval, _coco_metric.COCOevalMP

        def make_eval(coco_gt, coco_dt, iou_type):
            evals.append(pycocotools_eval(coco_gt, coco_dt, iou_type))
            return evals[-1]

        def make_eval_mp(coco_gt, coco_dt, iou_type):
            evals.append(pycocotools_eval_mp(coco_gt, coco_dt, iou_type))
            return evals[-1]
        return _patched(_coco_metric, COCOeval=make_eval, COCOevalMP=make_eval_mp)

    def compute_metrics(self, results):
        with self._backend():
            evals = self._evals
            out = super().compute_metrics(results)
        # 'proposal' evaluates boxes too (class-agnostic): keyed by the metric, not the IoU type
        metrics = [m for m in self.metrics if m != 'proposal_fast']
        self.coco_stats = {metric: [float(v) for v in e.stats[:12]]
                           for metric, e in zip(metrics, evals) if len(getattr(e, 'stats', []))}
        return out
