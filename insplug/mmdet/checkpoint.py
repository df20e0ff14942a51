"""mmengine's local checkpoint loader, made weights-only.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; under torch >= 2.6 that is a
weights-only load which refuses mmengine's own checkpoints (``HistoryBuffer``, numpy scalars),
and a full load would run any code a crafted file names. This replaces the loader for local
paths (scheme prefix '') by :func:`insplug.checkpoints.safe_load`: weights-only with the exact
allow-list of what mmengine checkpoints hold, and a full load only on the explicit opt-in
(``INSPLUG_TRUST_CHECKPOINTS=1`` / the tools' ``--unsafe-load``), with a warning naming the
file. It applies to ``tools/test.py CONFIG CKPT``, ``load_from`` and ``--resume`` alike.
"""
from mmengine.runner.checkpoint import CheckpointLoader

from insplug.checkpoints.safe_load import safe_load


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_local_checkpoint(filename, map_location):
    """Load a local checkpoint weights-only (dict with 'state_dict', 'meta', 'optimizer', ...)."""
    return safe_load(filename, map_location=map_location)
