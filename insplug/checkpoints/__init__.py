"""Loading checkpoints safely and checking that they fit the model.

* :mod:`.safe_load`: every checkpoint is read weights-only; the few non-tensor types that
  mmengine checkpoints really hold are allow-listed. A full (code-running) unpickle happens only
  on an explicit opt-in, with a warning naming the file.
* :mod:`.fit`: compares a checkpoint's state_dict with a model's and explains a mismatch
  (missing / unexpected / wrong-shape keys, which model the checkpoint seems to come from, and
  that ``tools/convert_checkpoint.py`` converts official checkpoints).
"""
from .fit import CheckpointMismatchError, StateDictFit, check_state_dict_fit
from .safe_load import TRUST_ENV, UnsafeCheckpointError, safe_load, safe_pickle_load

__all__ = ['safe_load', 'safe_pickle_load', 'UnsafeCheckpointError', 'TRUST_ENV', 'check_state_dict_fit',
           'StateDictFit', 'CheckpointMismatchError']
