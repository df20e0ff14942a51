"""detectron2 class split: ``class_split_records`` keeps and relabels the chosen classes and
drops images holding an unseen object (hand-worked records)."""
import pytest

from d2_utils import INSTALL_HINT

pytest.importorskip('detectron2', reason=INSTALL_HINT)

from insplug.detectron2.zsi import class_split_records  # noqa: E402


def test_class_split_records():
    recs = [dict(image_id=1, annotations=[dict(category_id=0), dict(category_id=2)]),
            dict(image_id=2, annotations=[dict(category_id=0), dict(category_id=1)]),
            dict(image_id=3, annotations=[dict(category_id=2)])]
    # keep classes 0 and 2 (seen), class 1 unseen: image 2 dropped
    out = class_split_records(recs, [0, 2], {}, drop_ids=[1])
    assert [r['image_id'] for r in out] == [1, 3]
    assert [a['category_id'] for a in out[0]['annotations']] == [0, 1]
    assert [a['category_id'] for a in out[1]['annotations']] == [1]
    # unseen subset: only class 1, relabelled 0; no image dropped
    out = class_split_records(recs, [1], {})
    assert [[a['category_id'] for a in r['annotations']] for r in out] == [[], [0], []]
    assert recs[0]['annotations'][1]['category_id'] == 2   # source untouched
