# insplug runtime: mmdet's defaults, insplug's scope, and the num_classes check.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'insplug'
custom_imports = dict(imports=['insplug'], allow_failed_imports=False)
# Fails fast, naming the head, when a head's `num_classes` does not match the dataset's classes.
custom_hooks = [dict(type='NumClassCheckHook')]
