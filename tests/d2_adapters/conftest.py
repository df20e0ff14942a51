"""Fixtures of the detectron2 adapter tests (detectron2 is imported lazily, inside fixtures:
this file is collected even where detectron2 is not installed)."""
import pytest


@pytest.fixture(scope='session')
def d2_shapes(demo_data):
    """The demo split registered in detectron2's catalogs as ``d2test_shapes_{train,val}``."""
    from insplug.detectron2 import register_shapes
    root = demo_data['root'].rstrip('/')
    train, val = register_shapes(root, prefix='d2test_shapes')
    return dict(demo_data, train=train, val=val, root_dir=root)
