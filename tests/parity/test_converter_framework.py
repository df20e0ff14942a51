"""The converter framework: trunk rules against real modules, and wrong checkpoints fail clearly.

* ``resnet_rules('torchvision')`` maps torchvision's ResNet-50 onto mmdet's ``ResNet`` exactly
  (every tensor placed, shapes equal); ``resnet_rules('detectron2')`` inverts the mmdet ->
  detectron2 mapping used for insplug's detectron2 adapters (a round trip is the identity);
  ``resnet_rules('maskrcnn_benchmark')`` places the maskrcnn-benchmark names.
* ``fpn_rules`` places detectron2 / maskrcnn-benchmark FPN names on mmdet's ``FPN`` with P6/P7.
* every registered converter refuses a checkpoint of another method, naming the method the keys
  look like.
"""
import pytest
import torch
import torchvision

from insplug.checkpoints import check_state_dict_fit
from insplug.converters import CONVERTERS, ConversionError, _import_all, convert_state_dict
from insplug.converters.common import fpn_rules, rename_keys, resnet_rules
from insplug.converters.to_detectron2 import mmdet_resnet_to_detectron2_rules


@pytest.fixture(scope='module')
def mmdet_resnet50():
    from mmdet.models.backbones import ResNet
    return {f'backbone.{k}': v for k, v in ResNet(depth=50).state_dict().items()}


def test_torchvision_resnet_fills_mmdet_resnet(mmdet_resnet50):
    official = torchvision.models.resnet50().state_dict()
    converted = rename_keys(official, resnet_rules('torchvision', ''), 'resnet')
    fit = check_state_dict_fit(mmdet_resnet50, converted)
    assert fit.ok, fit.summary()
    assert len(converted) == len(official) - 2  # the classifier fc is dropped


def test_detectron2_resnet_rules_invert_the_detectron2_export(mmdet_resnet50):
    state = {k: v for k, v in mmdet_resnet50.items() if not k.endswith('num_batches_tracked')}
    d2 = rename_keys(state, mmdet_resnet_to_detectron2_rules('backbone.', 'backbone.bottom_up.'))
    assert 'backbone.bottom_up.res2.0.shortcut.norm.running_var' in d2
    back = rename_keys(d2, resnet_rules('detectron2', 'backbone.bottom_up.'), 'resnet')
    assert back.keys() == state.keys()
    assert all(back[k] is state[k] for k in state)


def test_maskrcnn_benchmark_resnet_names(mmdet_resnet50):
    names = {'stem.conv1.weight': 'conv1.weight', 'stem.bn1.running_mean': 'bn1.running_mean',
             'layer1.0.downsample.0.weight': 'layer1.0.downsample.0.weight',
             'layer4.2.bn3.bias': 'layer4.2.bn3.bias'}
    official = {f'backbone.body.{k}': mmdet_resnet50[f'backbone.{v}'] for k, v in names.items()}
    converted = rename_keys(official, resnet_rules('maskrcnn_benchmark', 'backbone.body.'))
    assert set(converted) == {f'backbone.{v}' for v in names.values()}


@pytest.mark.parametrize('src,prefix,lateral,output,top,first', [
    ('detectron2', 'backbone.', 'fpn_lateral', 'fpn_output', 'top_block', 3),
    ('maskrcnn_benchmark', 'backbone.fpn.', 'fpn_inner', 'fpn_layer', 'top_blocks', 2)])
def test_fpn_rules_fill_mmdet_fpn_with_p6_p7(src, prefix, lateral, output, top, first):
    from mmdet.models.necks import FPN
    fpn = FPN([512, 1024, 2048], 256, num_outs=5, start_level=0, add_extra_convs='on_output')
    target = {f'neck.{k}': v for k, v in fpn.state_dict().items()}
    official = {}
    for i in range(3):
        for part in ('weight', 'bias'):
            official[f'{prefix}{lateral}{first + i}.{part}'] = target[
                f'neck.lateral_convs.{i}.conv.{part}']
            official[f'{prefix}{output}{first + i}.{part}'] = target[
                f'neck.fpn_convs.{i}.conv.{part}']
    for j, p in enumerate(('p6', 'p7')):
        for part in ('weight', 'bias'):
            official[f'{prefix}{top}.{p}.{part}'] = target[f'neck.fpn_convs.{3 + j}.conv.{part}']
    converted = rename_keys(official, fpn_rules(src, prefix, first=first, num_ins=3))
    assert check_state_dict_fit(target, converted).ok


def test_an_unknown_key_is_named():
    with pytest.raises(ConversionError, match='backbone.extra.weight'):
        rename_keys({'backbone.extra.weight': torch.zeros(1)}, resnet_rules('torchvision', ''),
                    'resnet')


def _signature_keys(converter):
    """One concrete key per signature regex (the regexes are plain dotted names)."""
    keys = []
    for pattern in converter.signature:
        key = pattern.strip('^$').replace(r'\d+', '0').replace('\\', '')
        keys.append(key.replace('(backbone.bottom_up.)?', ''))
    return keys


def test_every_converter_refuses_another_methods_checkpoint():
    _import_all()
    assert len(CONVERTERS) >= 8
    for name, converter in CONVERTERS.items():
        own = _signature_keys(converter)
        assert converter.matches(own), (name, own)
        for other_name, other in CONVERTERS.items():
            if other_name == name or other.matches(own):
                continue
            with pytest.raises(ConversionError, match=f'not a {other_name} checkpoint') as info:
                convert_state_dict(other_name, {k: torch.zeros(1) for k in own})
            assert 'it looks like a' in str(info.value), (other_name, name)
