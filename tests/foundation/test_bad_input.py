"""Bad input gives clear errors or correct skipping: degenerate masks, empty images, wrong
categories, a config whose num_classes does not match the dataset, and (issue 18) every kind of
bad annotation file or image: each test names the kind it tries; the message's first line is
what the closing note of issue 18 lists."""
import json
import logging
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image
from pycocotools import mask as mask_utils

import e2e_utils
from insplug.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write_set(root, annotations, num_images=3, size=32):
    (root / 'images').mkdir(parents=True)
    images = []
    for i in range(num_images):
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / 'images' / f'{i}.png')
        images.append(dict(id=i + 1, file_name=f'{i}.png', height=size, width=size))
    categories = [dict(id=k + 1, name=n) for k, n in
                  enumerate(('circle', 'rectangle', 'triangle', 'star', 'ring'))]
    for k, ann in enumerate(annotations):
        ann.setdefault('id', k + 1)
        ann.setdefault('iscrowd', 0)
        ann.setdefault('category_id', 1)
        ann.setdefault('area', 10.0)
        ann.setdefault('bbox', [2.0, 2.0, 5.0, 5.0])
    with open(root / 'ann.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _square_rle(size=32):
    m = np.zeros((size, size), np.uint8)
    m[4:12, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return dict(counts=rle['counts'].decode(), size=[size, size])


def _build(root, test_mode, pipeline=()):
    with DefaultScope.overwrite_default_scope('insplug'):
        return DATASETS.build(dict(
            type='ShapesDataset', data_root=str(root), ann_file='ann.json',
            data_prefix=dict(img='images/'), test_mode=test_mode, pipeline=list(pipeline),
            filter_cfg=None if test_mode else dict(filter_empty_gt=True, min_size=1)))


def _edit_json(root, edit):
    with open(root / 'ann.json') as f:
        data = json.load(f)
    edit(data)
    with open(root / 'ann.json', 'w') as f:
        json.dump(data, f)


class _Logged:
    """Collects what print_log(logger='current') writes while the block runs."""

    def __enter__(self):
        self.records = []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.records.append(record.getMessage())
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)

    @property
    def text(self):
        return '\n'.join(self.records)


def test_degenerate_masks_are_dropped_with_a_message(tmp_path):
    zero = mask_utils.encode(np.zeros((32, 32), np.uint8, order='F'))
    annotations = [
        dict(image_id=1, segmentation=_square_rle()),                      # valid
        dict(image_id=1, segmentation=[]),                                  # empty list
        dict(image_id=2, segmentation=[[1.0, 1.0, 5.0, 5.0]]),              # 2-point polygon
        dict(image_id=2, segmentation=dict(counts=zero['counts'].decode(), size=[32, 32])),
    ]                                                                       # image 3: none
    _write_set(tmp_path, annotations)
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()  # where print_log(logger='current') writes
    logger.addHandler(handler)
    try:
        train = _build(tmp_path, test_mode=False)
    finally:
        logger.removeHandler(handler)
    logged = '\n'.join(records)
    assert 'dropped 3 annotation(s)' in logged and 'annotation id 2' in logged
    assert len(train) == 1  # images 2 and 3 have no usable instance: filtered for training
    assert len(train[0]['instances']) == 1
    test = _build(tmp_path, test_mode=True)
    assert len(test) == 3  # evaluation keeps every image
    assert [len(test[i]['instances']) for i in range(3)] == [1, 0, 0]


def test_unknown_category_names_the_field_and_the_fix(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle(), category_id=9)])
    with pytest.raises(ValueError, match=r'category_id 9.*metainfo=dict\(classes=') as info:
        _build(tmp_path, test_mode=True)
    assert 'annotation id 1' in str(info.value)


def test_num_classes_mismatch_stops_before_training(tmp_path, demo_data):
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo/mask_rcnn_r18_shapes.py'))
    e2e_utils.point_config_at_data(cfg, demo_data['root'], demo_data['train_ann'],
                                   demo_data['val_ann'])
    cfg.model.roi_head.bbox_head.num_classes = 3
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(AssertionError, match=r'`num_classes` \(3\) in Shared2FCBBoxHead.*5'):
        runner.train()


# ------------------------------------------------------------------------------------------
# issue 18, item 4: silently wrong before
def test_image_size_differing_from_the_file_is_an_error(tmp_path):
    _write_set(tmp_path, [dict(image_id=2, segmentation=[[2, 2, 20, 2, 20, 20]])])
    _edit_json(tmp_path, lambda d: d['images'][1].update(height=384, width=512))
    with pytest.raises(ValueError, match='differ in size from their annotation entry') as info:
        _build(tmp_path, test_mode=True)
    text = str(info.value)
    assert 'image id 2' in text and '1.png' in text
    assert 'the file is 32x32 (width x height), the annotation file says 512x384' in text
    assert 'set "width": 32, "height": 32' in text


def test_exif_rotated_jpeg_is_compared_as_the_loader_sees_it(tmp_path):
    """No false alarm: orientation 6 stores 40x20 pixels that every loader shows as 20x40."""
    from mmcv.transforms import LoadImageFromFile
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())], num_images=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / 'images' / 'r.jpg',
                                                           exif=exif.tobytes())
    _edit_json(tmp_path, lambda d: d['images'][0].update(file_name='r.jpg', width=20,
                                                         height=40))
    _edit_json(tmp_path, lambda d: d['annotations'][0].update(
        segmentation=[[2, 2, 10, 2, 10, 10]]))
    dataset = _build(tmp_path, test_mode=True)
    loaded = LoadImageFromFile()(dict(img_path=dataset[0]['img_path']))['img']
    assert loaded.shape[:2] == (40, 20)  # what the check compared the json with
    _edit_json(tmp_path, lambda d: d['images'][0].update(width=40, height=20))
    with pytest.raises(ValueError, match='the file is 20x40'):
        _build(tmp_path, test_mode=True)


@pytest.mark.parametrize('bbox,area,kind', [
    ([10.0, 10.0, -5.0, 8.0], 10.0, 'whose `bbox` has a width or height < 1 (e.g. negative)'),
    ([40.0, 40.0, 5.0, 5.0], 10.0, 'whose `bbox` does not overlap the image'),
    ([2.0, 2.0, 5.0, 5.0], 0.0, 'whose `area` is <= 0'),
])
def test_unusable_bbox_is_dropped_with_a_count(tmp_path, bbox, area, kind):
    annotations = [dict(image_id=1, segmentation=_square_rle()),
                   dict(image_id=1, segmentation=_square_rle(), bbox=bbox, area=area),
                   dict(image_id=2, segmentation=_square_rle(), bbox=bbox, area=area)]
    _write_set(tmp_path, annotations)
    with _Logged() as log:
        dataset = _build(tmp_path, test_mode=True)
    assert f'dropped 2 annotation(s) {kind}' in log.text, log.text
    assert 'annotation id 2 in image id 1' in log.text
    assert [len(dataset[i]['instances']) for i in range(3)] == [1, 0, 0]


# a deep crash that named nothing before
def test_rle_of_another_size_names_the_annotation(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle()),
                          dict(image_id=3, segmentation=_square_rle(size=16))])
    with pytest.raises(ValueError, match=r'annotation id 2 in image id 3 has an RLE mask of '
                                         r'size \[16, 16\].*image is \[32, 32\]'):
        _build(tmp_path, test_mode=False)


def test_annotation_file_without_images_names_the_file(tmp_path):
    _write_set(tmp_path, [])
    _edit_json(tmp_path, lambda d: d.update(images=[]))
    with pytest.raises(ValueError, match=r'ann\.json lists no images'):
        _build(tmp_path, test_mode=True)


def test_no_training_image_left_after_filtering_names_the_file(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=[]),
                          dict(image_id=2, segmentation=[[1.0, 1.0, 5.0, 5.0]])])
    with pytest.raises(ValueError, match=r'ann\.json: no image left for training: the file '
                                         r'lists 3 image\(s\), none with a usable instance'):
        _build(tmp_path, test_mode=False)
    assert len(_build(tmp_path, test_mode=True)) == 3  # evaluation still has its images


@pytest.mark.parametrize('content,expected', [
    ('{"images": [', r'ann\.json is not valid JSON: Expecting value at line 1 column 13'),
    ('[1, 2]', r'ann\.json holds a JSON array or value, not a COCO annotation object'),
])
def test_annotation_file_that_is_not_a_coco_object_names_the_file(tmp_path, content, expected):
    _write_set(tmp_path, [])
    (tmp_path / 'ann.json').write_text(content)
    with pytest.raises(ValueError, match=expected) as info:
        _build(tmp_path, test_mode=True)
    assert str(tmp_path / 'ann.json') in str(info.value)


@pytest.mark.parametrize('edit,expected', [
    (lambda d: d.pop('categories'), r'has no "categories" list'),
    (lambda d: d['images'][1].pop('height'), r"image entry #1 \(id 2, file 1\.png\) lacks "
                                              r"\['height'\]"),
    (lambda d: d['annotations'][0].pop('bbox'), r"annotation entry #0 \(id 1, image id 1\) "
                                                 r"lacks \['bbox'\].*toBbox"),
    (lambda d: d['annotations'][0].update(bbox=[1, 2, 3]), r'annotation id 1 \(image id 1\) '
                                                            r'has bbox \[1, 2, 3\]'),
])
def test_missing_or_malformed_fields_name_the_entry(tmp_path, edit, expected):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())])
    _edit_json(tmp_path, edit)
    with pytest.raises(ValueError, match=expected):
        _build(tmp_path, test_mode=True)


def test_annotations_of_unknown_images_are_counted(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle()),
                          dict(image_id=7, segmentation=_square_rle()),
                          dict(image_id=8, segmentation=_square_rle())])
    with _Logged() as log:
        _build(tmp_path, test_mode=True)
    assert 'ignored 2 annotation(s) whose image_id is not among the images' in log.text
    assert 'first: annotation id 2' in log.text


def test_duplicate_annotation_ids_name_the_file(tmp_path):  # mmdet's own check, kept
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle(), id=5),
                          dict(image_id=2, segmentation=_square_rle(), id=5)])
    with pytest.raises(AssertionError, match=r"Annotation ids in '.*ann\.json' are not unique"):
        _build(tmp_path, test_mode=True)


# images: already good, kept (now caught when the annotation file is read)
def test_missing_image_file_names_the_file_and_the_config_keys(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())])
    (tmp_path / 'images' / '2.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'image id 3 \(.*images/2\.png\) of .*ann\.json: '
                                                r'the image file does not exist.*data_prefix'):
        _build(tmp_path, test_mode=True)


def test_corrupt_image_file_names_the_file(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())])
    (tmp_path / 'images' / '1.png').write_bytes(b'not an image')
    with pytest.raises(ValueError, match=r'image id 2 .*1\.png.*cannot be read as an image'):
        _build(tmp_path, test_mode=True)


def test_truncated_image_file_names_the_file_when_loaded(tmp_path):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())], num_images=1)
    path = tmp_path / 'images' / '0.png'
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (32, 32, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixel data cut
    dataset = _build(tmp_path, test_mode=True, pipeline=[dict(type='LoadImageFromFile')])
    with pytest.raises(AssertionError, match=r'failed to load image: .*0\.png'):
        dataset[0]


@pytest.mark.parametrize('mode', ['L', 'RGBA'])
def test_grayscale_and_rgba_images_load_as_three_channels(tmp_path, mode):
    _write_set(tmp_path, [dict(image_id=1, segmentation=_square_rle())], num_images=1)
    pixels = np.full((32, 32) if mode == 'L' else (32, 32, 4), 200, np.uint8)
    Image.fromarray(pixels, mode).save(tmp_path / 'images' / '0.png')
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='PackDetInputs')]
    sample = _build(tmp_path, test_mode=False, pipeline=pipeline)[0]
    assert tuple(sample['inputs'].shape) == (3, 32, 32)
    assert sample['data_samples'].gt_instances.masks.masks.shape == (1, 32, 32)
