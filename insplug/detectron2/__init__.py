"""Detectron2 adapters: ``import insplug.detectron2`` registers insplug's components in
detectron2's own registries (every module of this package registers its own):

* META_ARCH: ``InsplugSparseInst``, ``InsplugBlendMask``, ``InsplugEmbedMask``,
  ``InsplugPolarMask``, ``InsplugYOLACT``, ``InsplugSOLO``, ``InsplugSOLOv2``,
  ``InsplugSpatialEmbeddings``, ``InsplugDiscriminative``;
* PROPOSAL_GENERATOR: ``InsplugFCOS`` (the faithful FCOS of BlendMask, CenterMask, EmbedMask);
* ROI_HEADS / ROI_MASK_HEAD: ``RefineMaskROIHeads`` / ``RefineMaskHead`` (RefineMask),
  ``InsplugCenterROIHeads`` / ``InsplugSpatialAttentionMaskHead`` (CenterMask);
* BACKBONE: ``build_insplug_{vovnet,vovnet_fpn,fcos_vovnet_fpn,fcos_resnet_fpn}_backbone``,
  ``build_insplug_{erfnet,enet,linknet,fc_densenet,drn,espnet}_backbone``,
  ``build_insplug_{context,fusion}_backbone``, ``build_ppm_backbone``,
  ``build_resnet_ppm_fpn_backbone``;
* :func:`add_insplug_config` adds keys under ``cfg.MODEL.INSPLUG`` only (each method's node is
  defined next to its adapter with :func:`register_config_node`);
* :func:`register_coco_instances` / :func:`register_shapes` register COCO-format sets for
  detectron2's loaders and ``COCOEvaluator``; :func:`build_optimizer` is the yacs optimizer.

Nothing here changes detectron2's global default config or creates a registry of detectron2's
names. ``import insplug`` never imports this package (nor detectron2).
"""
try:
    import detectron2  # noqa: F401
except ImportError as error:
    raise ImportError(
        'insplug.detectron2 needs detectron2, which is not on PyPI. Build it from its '
        'repository against the installed torch: git clone '
        'https://github.com/facebookresearch/detectron2 && cd detectron2 && '
        'pip wheel --no-build-isolation --no-deps -w dist . && pip install --no-deps '
        'dist/detectron2-*.whl && pip install fvcore iopath omegaconf hydra-core cloudpickle '
        'tabulate yacs (see README, "Detectron2")') from error

from .config import (add_insplug_config, insplug_config_node,  # noqa: E402
                     register_config_node)
from .datasets import check_num_classes, register_coco_instances, register_shapes  # noqa: E402
from .pyramid_pooling import (PyramidPoolingBackbone, build_ppm_backbone,  # noqa: E402
                              build_resnet_ppm_fpn_backbone)
from .refinemask import RefineMaskHead, RefineMaskROIHeads  # noqa: E402
from .sparseinst import InsplugSparseInst  # noqa: E402
from .solver import build_optimizer  # noqa: E402


def _import_method_modules():
    """Import every adapter module of this package, so that ``import insplug.detectron2``
    registers all of insplug's components (each method's module registers itself)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith('_'):
            importlib.import_module(f'{__name__}.{info.name}')


_import_method_modules()

__all__ = [
    'add_insplug_config', 'insplug_config_node', 'register_config_node', 'check_num_classes',
    'register_coco_instances', 'register_shapes', 'PyramidPoolingBackbone', 'build_ppm_backbone',
    'build_resnet_ppm_fpn_backbone', 'RefineMaskHead', 'RefineMaskROIHeads',
    'InsplugSparseInst', 'build_optimizer'
]
