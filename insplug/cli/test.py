"""Test (and evaluate) a checkpoint: the flags and behaviour of mmdet's ``tools/test.py``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--tta] [--format-only PREFIX]
                         [--format {coco,cityscapes}] [--batch-size N] [--cfg-options k=v ...]

``--format-only PREFIX`` writes ``PREFIX.bbox.json`` and ``PREFIX.segm.json`` in the format the
COCO test-dev server accepts, without evaluating (same as ``--cfg-options
test_evaluator.format_only=True test_evaluator.outfile_prefix=PREFIX``; where the config has a
list of evaluators, its COCO metrics). With ``--format cityscapes`` it writes the Cityscapes
instance submission instead: ``PREFIX/results/<image>_pred.txt`` (lines ``<mask png> <label id>
<score>``) and one binary png mask per instance (``InsplugCityscapesMetric`` with
``format_only=True``; its ``label_map`` and ``score_decimals`` are kept from the config's
Cityscapes metric, if any).
``--batch-size N``
sets ``test_dataloader.batch_size`` (images of different sizes are padded to one batch by the
model's data pre-processor; every insplug method predicts a batch as it predicts each image
alone: tests/mmdet/test_batch_inference.py).
"""
import argparse
import copy
import warnings

from mmengine.config import ConfigDict

from insplug.cli.common import add_common_args, build_runner, load_config, run_with_clear_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to a pickle file (.pkl)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save painted predictions under work_dir/TIME/DIR')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (flip)')
    parser.add_argument('--format-only', metavar='PREFIX',
                        help='write the result files (--format) for a test server, no metrics')
    parser.add_argument('--format', choices=('coco', 'cityscapes'), default='coco',
                        help='--format-only: coco = PREFIX.{bbox,segm}.json (default); '
                             'cityscapes = PREFIX/results/*_pred.txt + png masks')
    parser.add_argument('--batch-size', type=int, metavar='N',
                        help='images per test batch (sets test_dataloader.batch_size)')
    add_common_args(parser)
    return parser.parse_args(argv)


def _add_flip_tta(cfg):
    if 'tta_model' not in cfg:
        warnings.warn('no `tta_model` in the config: using DetTTAModel with box NMS 0.5')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                          max_per_img=100))
    if 'tta_pipeline' not in cfg:
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        cfg.tta_pipeline = copy.deepcopy(dataset.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def configure(args):
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    cfg.load_from_strict = True  # a test of a checkpoint that does not fit the model is an error
    if args.show or args.show_dir:
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        _add_flip_tta(cfg)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise SystemExit('error: --batch-size must be >= 1')
        cfg.test_dataloader.batch_size = args.batch_size
    if args.format != 'coco' and not args.format_only:
        raise SystemExit('error: --format needs --format-only PREFIX')
    if args.format_only:
        if args.format == 'cityscapes':
            cfg.test_evaluator = _cityscapes_format_evaluator(cfg.test_evaluator,
                                                              args.format_only)
        else:
            cfg.test_evaluator = _coco_format_evaluator(cfg.test_evaluator, args.format_only)
    return cfg


def _evaluator_list(evaluator):
    return list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]


def _type_name(metric):
    return str(metric.get('type', '')).split('.')[-1]


def _coco_format_evaluator(evaluator, prefix):
    if not isinstance(evaluator, (list, tuple)):
        evaluator.format_only = True
        evaluator.outfile_prefix = prefix
        return evaluator
    coco = [m for m in evaluator if 'coco' in _type_name(m).lower()]
    if not coco:
        raise SystemExit('error: --format-only (coco): the config has no COCO metric in '
                         'test_evaluator; use --format cityscapes for Cityscapes results')
    for metric in coco:
        metric.format_only = True
        metric.outfile_prefix = prefix
    return coco


def _cityscapes_format_evaluator(evaluator, prefix):
    cityscapes = [m for m in _evaluator_list(evaluator)
                  if _type_name(m) in ('InsplugCityscapesMetric', 'CityScapesMetric')]
    metric = ConfigDict(type='InsplugCityscapesMetric', format_only=True, outfile_prefix=prefix)
    for key in ('label_map', 'score_decimals', 'backend_args'):
        if cityscapes and cityscapes[0].get(key) is not None:
            metric[key] = cityscapes[0][key]
    return metric


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('error: --out must name a .pkl file')

    def test():
        runner = build_runner(configure(args))
        if args.out is not None:
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        return runner.test()
    return run_with_clear_errors(test)


if __name__ == '__main__':
    main()
