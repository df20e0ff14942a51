"""Let mmengine 0.10.7 load its own checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default. mmengine 0.10.7 calls
``torch.load`` without the argument, and its checkpoints hold a training state (the message hub's
``HistoryBuffer``, numpy scalars and dtypes) that the weights-only unpickler refuses, so
``--resume``, ``load_from`` and ``tools/test.py CHECKPOINT`` all fail with an UnpicklingError.

This replaces mmengine's loader for local paths (scheme prefix '') by one that first tries the
safe weights-only load and, only for a file on the local disk that needs it, falls back to a full
load. Like any pickle, a full load runs code: load checkpoints you or your team wrote, or pass a
weights-only file (``torch.save(model.state_dict())``) from elsewhere.
"""
import os.path as osp
import pickle

import torch
from mmengine.runner.checkpoint import CheckpointLoader


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_local_checkpoint(filename, map_location):
    """Load a local mmengine checkpoint (dict with 'state_dict', 'meta', 'optimizer', ...)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(filename, map_location=map_location, weights_only=False)
