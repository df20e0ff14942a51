"""``InsplugCityscapesMetric``: Cityscapes instance AP (the official ``cityscapesscripts``).

The Cityscapes benchmark ranks instance segmentation by the AP of
``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling`` (mean over the overlaps
0.5:0.95:0.05, regions >= 100 px, per class, then over the classes) and AP50. mmdet 3.3's
``CityScapesMetric`` writes each image's predictions in the Cityscapes result format (one
``<image>_pred.txt`` per image, lines ``<mask png> <label id> <score>``, one binary png per
instance, at the original image size) and runs that evaluator through mmdet's wrappers of its
functions (ground truth read through mmengine's file backends). This metric is that metric,
with the same result files and the same AP, plus:

* ``eval_classes``: which Cityscapes classes are averaged. ``'model'`` (default): the classes
  of the model (``dataset_meta['classes']``, after ``label_map``). The bottom-up releases
  train one model per class and report that class's AP (SpatialEmbeddings: 56.4 car AP on
  val); mmdet's metric always averages the 8 Cityscapes instance classes, which for a car-only
  model divides its car AP by 8 (the classes it does not predict count as AP 0). ``'all'``:
  the 8 classes, as mmdet and the benchmark (for a model of the 8 classes both are the same).
  A list of Cityscapes class names: those.
* per-class results ``<class>_AP`` and ``<class>_AP50`` next to mmdet's ``mAP`` and ``AP@50``
  (NaN for a class without ground truth, as the official evaluator; the means skip it);
* ``label_map``: ``{model class name: Cityscapes class name}`` for models whose class names
  differ from Cityscapes' (mmdet's metric requires equal names);
* ``seg_prefix`` is used: the ground truth of ``.../<city>/<name>_leftImg8bit.png`` is
  ``seg_prefix/<city>/<name>_gtFine_instanceIds.png`` (mmdet's metric takes ``seg_prefix`` but
  derives the path from the image path, ``leftImg8bit`` -> ``gtFine``, which only works with
  the standard folder layout); without ``seg_prefix`` mmdet's derivation is used;
* the evaluator's settings are a copy of ``cityscapesscripts``' global ``args`` (mmdet mutates
  the global), and the ground-truth cache ``gtInstances.json`` is rebuilt at every evaluation
  (mmdet reuses a stale one when the evaluated images change between two runs into the same
  directory);
* NumPy 2.4 removed ``np.in1d``, which cityscapesscripts 2.3.0 (the latest release) calls in
  ``assignGt2Preds``: while the metric evaluates, that module's ``np`` is a proxy of numpy with
  ``in1d = isin`` (same values: ``in1d(a, b).reshape(a.shape) == isin(a, b)``);
  ``cityscapesscripts_numpy_compat()`` is the context manager;
* ``score_decimals``: the scores in the txt files rounded to that many decimals (``None``,
  default: full precision, as mmdet). SpatialEmbeddings' release (src/test.py) writes
  ``{:.02f}``: its 56.4 car AP was computed with scores rounded to 2 decimals (the rounding
  makes ties, which the evaluator's precision/recall steps merge);
* ``quiet`` (default True): no per-image progress from cityscapesscripts; the table of
  per-class APs is logged.

Submission (``format_only=True``, or ``tools/test.py --format-only PREFIX --format
cityscapes``): the files are written to ``PREFIX/results/`` (mmdet's layout; a previous
``PREFIX/results`` is removed first) and are what the Cityscapes server and
``evalInstanceLevelSemanticLabeling.py`` read (``getPrediction`` finds
``<city>_<seq>_<frame>*.txt``; ``readPredInfo`` parses the lines).
"""
import contextlib
import copy
import json
import os
import types
import os.path as osp
from collections import OrderedDict

import mmcv
import numpy as np
from mmdet.evaluation.metrics.cityscapes_metric import HAS_CITYSCAPESAPI, CityScapesMetric
from mmengine.logging import MMLogger

from insplug.registry import METRICS

if HAS_CITYSCAPESAPI:
    import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as CSEval
    import cityscapesscripts.helpers.labels as CSLabels
    from mmdet.evaluation.functional.cityscapes_utils import getGtInstances, matchGtWithPreds


@contextlib.contextmanager
def cityscapes_numpy_compat():
    """Let cityscapesscripts' evaluator run on NumPy >= 2.4 (no ``np.in1d``).

    Inside the context, the evaluator module's ``np`` is numpy plus ``in1d`` (``np.isin``);
    numpy itself is not changed.
    """
    if hasattr(np, 'in1d'):
        yield
        return
    proxy = types.ModuleType('numpy')
    proxy.__dict__.update(np.__dict__)
    proxy.in1d = lambda a, b, *args, **kwargs: np.isin(a, b, *args, **kwargs).ravel()
    saved = CSEval.np
    CSEval.np = proxy
    try:
        yield
    finally:
        CSEval.np = saved


def cityscapes_instance_classes():
    """The names of the 8 Cityscapes classes with instances that are evaluated."""
    return [label.name for label in CSLabels.labels
            if label.hasInstances and not label.ignoreInEval]


def gt_instance_path(img_path, seg_prefix=None):
    """The ``gtFine_instanceIds.png`` of a ``leftImg8bit.png`` image.

    With ``seg_prefix``: ``seg_prefix/<city>/<name>_gtFine_instanceIds.png`` (city = the image's
    folder); without: mmdet's derivation (``leftImg8bit`` -> ``gtFine`` in the path).
    """
    if seg_prefix is None:
        return img_path.replace('leftImg8bit.png', 'gtFine_instanceIds.png').replace(
            'leftImg8bit', 'gtFine')
    city = osp.basename(osp.dirname(img_path))
    name = osp.basename(img_path).replace('leftImg8bit.png', 'gtFine_instanceIds.png')
    return osp.join(seg_prefix, city, name)


@METRICS.register_module()
class InsplugCityscapesMetric(CityScapesMetric):
    """mmdet's ``CityScapesMetric`` with the additions of the module docstring.

    Args:
        outfile_prefix (str | None): the result files go to ``outfile_prefix/results/``
            (``None``: a temporary directory; not allowed with ``format_only``).
        seg_prefix (str | None): the folder of the ground-truth cities (``.../gtFine/val``).
        format_only (bool): write the result files only (submission), no evaluation.
        eval_classes (str | list[str]): ``'model'``, ``'all'`` or Cityscapes class names.
        label_map (dict | None): model class name -> Cityscapes class name.
        score_decimals (int | None): round the written scores (SpatialEmbeddings' release: 2).
        quiet (bool): silence cityscapesscripts' progress output.
        **kwargs: the other arguments of mmdet's ``CityScapesMetric``.
    """

    default_prefix = 'cityscapes'

    def __init__(self, outfile_prefix=None, seg_prefix=None, format_only=False,
                 eval_classes='model', label_map=None, score_decimals=None, quiet=True,
                 **kwargs):
        if not format_only and seg_prefix is None:
            raise ValueError('InsplugCityscapesMetric: seg_prefix (the gtFine/<split> folder) is '
                             'needed to evaluate; use format_only=True to only write results')
        super().__init__(outfile_prefix=outfile_prefix, seg_prefix=seg_prefix,
                         format_only=format_only, **kwargs)
        if not (eval_classes in ('model', 'all') or isinstance(eval_classes, (list, tuple))):
            raise ValueError(f"eval_classes must be 'model', 'all' or a list, got {eval_classes}")
        self.eval_classes = eval_classes
        self.label_map = dict(label_map or {})
        self.score_decimals = score_decimals
        self.quiet = quiet

    def _cityscapes_names(self):
        """Cityscapes class name of every model label (checked)."""
        valid = set(cityscapes_instance_classes())
        names = []
        for name in self.dataset_meta['classes']:
            cs_name = self.label_map.get(name, name)
            if cs_name not in valid:
                raise ValueError(
                    f'class {name!r} (-> {cs_name!r}) is not a Cityscapes instance class '
                    f'{sorted(valid)}: give label_map=dict({name}=<Cityscapes class>)')
            names.append(cs_name)
        return names

    def process(self, data_batch, data_samples):
        names = self._cityscapes_names()
        for data_sample in data_samples:
            pred = data_sample['pred_instances']
            filename = data_sample['img_path']
            basename = osp.splitext(osp.basename(filename))[0]
            pred_txt = osp.join(self.outfile_prefix, basename + '_pred.txt')
            labels = pred['labels'].cpu().numpy()
            masks = pred['masks'].cpu().numpy().astype(np.uint8)
            scores = pred['mask_scores'] if 'mask_scores' in pred else pred['scores']
            scores = scores.cpu().numpy()
            with open(pred_txt, 'w') as f:
                for i, (label, mask, score) in enumerate(zip(labels, masks, scores)):
                    class_name = names[int(label)]
                    class_id = CSLabels.name2label[class_name].id
                    png = osp.join(self.outfile_prefix, f'{basename}_{i}_{class_name}.png')
                    mmcv.imwrite(mask, png)
                    score = float(score)
                    if self.score_decimals is not None:
                        score = f'{score:.{self.score_decimals}f}'
                    f.write(f'{osp.basename(png)} {class_id} {score}\n')
            gt = dict(file_name=gt_instance_path(filename, self.seg_prefix))
            self.results.append((gt, dict(pred_txt=pred_txt)))

    def _eval_labels(self):
        if self.eval_classes == 'all':
            return cityscapes_instance_classes()
        if self.eval_classes == 'model':
            wanted = set(self._cityscapes_names())
        else:
            wanted = set(self.eval_classes)
            unknown = wanted - set(cityscapes_instance_classes())
            if unknown:
                raise ValueError(f'eval_classes: {sorted(unknown)} are not Cityscapes instance '
                                 'classes')
        # in the evaluator's order
        return [name for name in cityscapes_instance_classes() if name in wanted]

    def compute_metrics(self, results):
        logger = MMLogger.get_current_instance()
        if self.format_only:
            logger.info(f'Cityscapes results are saved to {self.outfile_prefix}')
            return OrderedDict()
        gts, preds = zip(*results)
        args = copy.copy(CSEval.args)  # the evaluator's defaults, not the shared global
        args.JSONOutput = False
        args.colorized = False
        args.quiet = self.quiet
        args.gtInstancesFile = osp.join(self.outfile_prefix, 'gtInstances.json')
        if osp.exists(args.gtInstancesFile):
            os.remove(args.gtInstancesFile)  # a cache of another image list would be reused
        args.instLabels = self._eval_labels()
        gt_list = [gt['file_name'] for gt in gts]
        pred_list = [pred['pred_txt'] for pred in preds]
        gt_instances = getGtInstances(gt_list, args, self.backend_args)
        with cityscapes_numpy_compat():
            matches = matchGtWithPreds(pred_list, gt_list, gt_instances, args,
                                       self.backend_args)
        if self.dump_matches:  # mmdet writes matches.json to the cwd; here next to the results
            with open(osp.join(self.outfile_prefix, 'matches.json'), 'w') as f:
                json.dump(matches, f, default=lambda o: o.item() if isinstance(o, np.generic)
                          else o.__dict__)
        aps = CSEval.evaluateMatches(matches, args)
        averages = CSEval.computeAverages(aps, args)
        eval_results = OrderedDict()
        eval_results['mAP'] = float(averages['allAp'])
        eval_results['AP@50'] = float(averages['allAp50%'])
        lines = [f'{"class":<12}{"AP":>8}{"AP50":>8}']
        for name, per_class in averages['classes'].items():
            eval_results[f'{name}_AP'] = float(per_class['ap'])
            eval_results[f'{name}_AP50'] = float(per_class['ap50%'])
            lines.append(f'{name:<12}{per_class["ap"]:>8.3f}{per_class["ap50%"]:>8.3f}')
        lines.append(f'{"mean":<12}{averages["allAp"]:>8.3f}{averages["allAp50%"]:>8.3f}')
        logger.info('Cityscapes instance AP (cityscapesscripts)\n' + '\n'.join(lines))
        return eval_results
