"""Parity tests build insplug modules by type name: run each in insplug's registry scope, whatever
scope an earlier test in the session left as mmengine's default."""
import pytest


@pytest.fixture(autouse=True)
def insplug_scope():
    import insplug  # noqa: F401
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('insplug'):
        yield
