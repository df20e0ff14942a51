"""The README's component table stays current: every name insplug registers in its mmdet scope
(models, task utils, transforms, datasets, metrics, hooks, runners, ...) appears in README.md;
and, where detectron2 is installed, so does every name insplug registers in detectron2's
registries."""
import os.path as osp

import pytest
from mmengine.registry import Registry

import insplug
from insplug import registry

README = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'README.md')


def readme_text():
    with open(README) as f:
        return f.read()


def test_every_mmdet_registration_is_in_the_readme():
    assert insplug  # importing insplug registers its mmdet components
    text = readme_text()
    ours = {name for reg in vars(registry).values() if isinstance(reg, Registry)
            for name, obj in reg._module_dict.items()
            if getattr(obj, '__module__', '').startswith('insplug.')}
    assert len(ours) > 40  # the registrations are really there
    assert sorted(n for n in ours if f'`{n}`' not in text) == []


def test_every_detectron2_registration_is_in_the_readme():
    pytest.importorskip('detectron2', reason='needs detectron2 (see README, "Detectron2")')
    import insplug.detectron2  # noqa: F401
    from detectron2.modeling import (BACKBONE_REGISTRY, META_ARCH_REGISTRY,
                                     PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY,
                                     ROI_MASK_HEAD_REGISTRY)
    text = readme_text()
    ours = {name for reg in (BACKBONE_REGISTRY, META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                             ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY)
            for name, obj in reg._obj_map.items()
            if getattr(obj, '__module__', '').startswith('insplug.')}
    assert len(ours) > 20
    missing = sorted(n for n in ours if n not in text)
    assert missing == []
