"""Train / evaluate insplug's detectron2 models from yacs configs (``tools/d2_train_net.py``).

The PointRend pattern: ``get_cfg()``, then :func:`add_insplug_config`, then ``merge_from_file``
and the command-line overrides. Datasets named ``shapes_train`` / ``shapes_val`` are registered
from ``--shapes-root`` (the bundled demo set), others with ``--dataset NAME JSON IMAGE_ROOT``;
the model's class count is checked against every training and test set. Evaluation uses
detectron2's ``COCOEvaluator`` (bbox + segm). The optimizer is SGD or AdamW
(``MODEL.INSPLUG.SOLVER.OPTIMIZER``).

Example::

    python -m insplug.datasets.shapes --out data/shapes
    python tools/d2_train_net.py --config-file configs/detectron2/refinemask_r18_shapes.yaml
    python tools/d2_train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/model_final.pth
"""
import contextlib
import importlib.util
import os.path as osp

import detectron2.engine.defaults as d2_defaults
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.events import CommonMetricPrinter, JSONWriter

from .checkpoint import SafeDetectionCheckpointer
from .config import add_insplug_config
from .datasets import check_num_classes, register_coco_instances, register_shapes
from .solver import build_optimizer


# where each of insplug's meta-architectures reads its class count (the others, e.g. a
# GeneralizedRCNN with RefineMask's or CenterMask's ROI heads, read MODEL.ROI_HEADS.NUM_CLASSES).
# A meta-architecture may instead name its key itself, as a class attribute
# ``num_classes_key = 'MODEL.INSPLUG.X.NUM_CLASSES'`` (see :func:`num_classes_key`).
NUM_CLASSES_KEYS = {
    'InsplugSparseInst': 'MODEL.INSPLUG.SPARSEINST.DECODER.NUM_CLASSES',
    'InsplugBlendMask': 'MODEL.INSPLUG.FCOS.NUM_CLASSES',
    'InsplugEmbedMask': 'MODEL.INSPLUG.FCOS.NUM_CLASSES',
    'InsplugPolarMask': 'MODEL.INSPLUG.POLARMASK.NUM_CLASSES',
    'InsplugYOLACT': 'MODEL.INSPLUG.YOLACT.NUM_CLASSES',
    'InsplugSOLO': 'MODEL.INSPLUG.SOLO.NUM_CLASSES',
    'InsplugSOLOv2': 'MODEL.INSPLUG.SOLOV2.NUM_CLASSES',
    'InsplugSpatialEmbeddings': 'MODEL.INSPLUG.SPATIALEMBEDDINGS.NUM_CLASSES',
    'InsplugDiscriminative': 'MODEL.INSPLUG.DISCRIMINATIVE.NUM_CLASSES',
}


def num_classes_key(meta_architecture):
    """The config key from which a meta-architecture reads its class count: the class's own
    ``num_classes_key`` attribute, else :data:`NUM_CLASSES_KEYS`, else
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (detectron2's R-CNN family)."""
    from detectron2.modeling import META_ARCH_REGISTRY
    cls = META_ARCH_REGISTRY._obj_map.get(meta_architecture)
    own = getattr(cls, 'num_classes_key', None)
    if own:
        return own
    return NUM_CLASSES_KEYS.get(meta_architecture, 'MODEL.ROI_HEADS.NUM_CLASSES')


def num_classes_field(cfg):
    """(config key, value) of the model's class count; (None, None) for a meta-architecture
    marked ``class_agnostic = True`` (it predicts no class, e.g. BoxCaseg labels its masks with
    the input boxes' classes)."""
    from detectron2.modeling import META_ARCH_REGISTRY
    cls = META_ARCH_REGISTRY._obj_map.get(cfg.MODEL.META_ARCHITECTURE)
    if getattr(cls, 'class_agnostic', False):
        return None, None
    key = num_classes_key(cfg.MODEL.META_ARCHITECTURE)
    value = cfg
    for part in key.split('.'):
        value = value[part]
    return key, value


@contextlib.contextmanager
def _ddp_without_device_ids_on_cpu():
    """detectron2 wraps the model with ``device_ids=[local_rank]``, which DDP refuses for a CPU
    module; on CPU (gloo, as detectron2's ``launch`` picks) wrap it with ``device_ids=None``."""
    create = d2_defaults.create_ddp_model

    def create_on_cpu(model, **kwargs):
        if not torch.cuda.is_available():
            kwargs.setdefault('device_ids', None)
        return create(model, **kwargs)
    d2_defaults.create_ddp_model = create_on_cpu
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = create


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with COCO evaluation, insplug's optimizer choice, weights-only
    checkpoint reading and multi-process training on CPU."""

    def __init__(self, cfg):
        with _ddp_without_device_ids_on_cpu():
            super().__init__(cfg)
        # detectron2's checkpointer unpickles .pkl/.pth files; the periodic-checkpoint hook
        # shares this object, so its class is switched in place to the weights-only reader
        self.checkpointer.__class__ = SafeDetectionCheckpointer

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or osp.join(cfg.OUTPUT_DIR, 'inference')
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    def build_writers(self):
        """detectron2's writers, without TensorBoard when ``tensorboard`` is not installed."""
        if importlib.util.find_spec('tensorboard') is not None:
            return super().build_writers()
        return [CommonMetricPrinter(self.max_iter),
                JSONWriter(osp.join(self.cfg.OUTPUT_DIR, 'metrics.json'))]


def setup_cfg(config_file, opts=(), args=None):
    """The frozen config: defaults + insplug keys + ``config_file`` + ``opts``."""
    cfg = get_cfg()
    add_insplug_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
    return cfg


def register_datasets(cfg, shapes_root='data/shapes', datasets=()):
    """Register ``datasets`` (NAME, JSON, IMAGE_ROOT triples) and, when the config names them
    and they are not registered yet, the shapes splits; then check the class count."""
    for name, json_file, image_root in datasets:
        register_coco_instances(name, json_file, image_root)
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    registered = set(DatasetCatalog.list())
    splits = [n.split('_', 1)[1] for n in names
              if n not in registered and n in ('shapes_train', 'shapes_val')]
    if splits:
        register_shapes(shapes_root, splits=splits)
    field, num_classes = num_classes_field(cfg)
    if field is not None:
        check_num_classes(names, num_classes, field)


def main(args):
    cfg = setup_cfg(args.config_file, args.opts, args)
    register_datasets(cfg, args.shapes_root, args.dataset or ())
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    return getattr(trainer, '_last_eval_results', None)  # the final evaluation's metrics


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument('--shapes-root', default='data/shapes',
                        help='root of the bundled shapes set (python -m insplug.datasets.shapes)')
    parser.add_argument('--dataset', nargs=3, action='append',
                        metavar=('NAME', 'JSON', 'IMAGE_ROOT'),
                        help='register a COCO-format set under NAME (repeatable)')
    return parser


def cli(argv=None):
    args = argument_parser().parse_args(argv)
    if args.num_gpus * args.num_machines <= 1:  # one process: keep main's return value
        return main(args)
    return launch(main, args.num_gpus, num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
