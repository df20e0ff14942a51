"""Weights-only checkpoint loading with an exact allow-list, and an explicit opt-in for the rest.

A ``.pth`` file is a pickle: a full ``torch.load`` runs whatever code the file names. insplug
therefore always loads with ``weights_only=True``. Checkpoints written by mmengine also hold a
little training state besides tensors, so these globals are allowed, and only these:

* numpy arrays, dtypes and scalars (``_reconstruct``, ``ndarray``, ``dtype``, the
  ``numpy.dtypes`` classes, ``scalar``): the message hub's buffers and the RNG states;
* ``mmengine.logging.HistoryBuffer`` (the message hub's loss/lr history);
* ``builtins.getattr``, but bound to :func:`_history_buffer_method`: HistoryBuffer pickles its
  statistics methods as ``getattr(HistoryBuffer, 'mean')``. A real ``getattr`` would let a file
  walk from any allowed object to ``os.system``; the bound one resolves only the public
  statistics methods of HistoryBuffer and refuses anything else.

Anything else is refused with :class:`UnsafeCheckpointError`, which names the file, the
globals it asked for, and the opt-in: ``INSPLUG_TRUST_CHECKPOINTS=1`` in the environment (the
tools' ``--unsafe-load`` flag sets it) or ``safe_load(..., trust=True)``. Only then is the file
fully unpickled, with a warning naming it.
"""
import os
import os.path as osp
import pickle
import warnings

import numpy as np
import torch

TRUST_ENV = 'INSPLUG_TRUST_CHECKPOINTS'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs more than the weights-only allow-list (it may run code when loaded)."""


def _history_buffer_class():
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:  # framework-free use (converters, detectron2): no mmengine state
        return None
    return HistoryBuffer


def _history_buffer_method(obj, name):
    """``getattr`` as HistoryBuffer's pickle uses it, and nothing more."""
    buffer_cls = _history_buffer_class()
    if buffer_cls is None or obj is not buffer_cls or name.startswith('_') \
            or not callable(getattr(buffer_cls, name, None)):
        raise UnsafeCheckpointError(
            f'the checkpoint asks for getattr({obj!r}, {name!r}); insplug allows getattr only '
            'for the statistics methods of mmengine.logging.HistoryBuffer')
    return getattr(buffer_cls, name)


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core  # numpy >= 2 renamed numpy.core
    allowed = [(core.multiarray._reconstruct, f'{core.__name__}.multiarray._reconstruct'),
               (core.multiarray.scalar, f'{core.__name__}.multiarray.scalar'),
               np.ndarray, np.dtype]
    # the pre-2.0 names, used by checkpoints written under numpy 1.x
    allowed += [(core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                (core.multiarray.scalar, 'numpy.core.multiarray.scalar')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return allowed


def allowed_globals():
    """The allow-list used by :func:`safe_load` (list for ``torch.serialization.safe_globals``)."""
    allowed = _numpy_globals() + [(_history_buffer_method, 'builtins.getattr')]
    buffer_cls = _history_buffer_class()
    if buffer_cls is not None:
        allowed.append(buffer_cls)
    return allowed


def trusted_by_environment():
    return os.environ.get(TRUST_ENV, '').lower() in ('1', 'true', 'yes')


def safe_load(filename, map_location='cpu', trust=None):
    """Load a checkpoint file weights-only (see the module docstring).

    Args:
        filename: path of a local ``.pth`` / ``.pt`` file.
        map_location: as for ``torch.load``.
        trust: True to allow a full unpickle for this file (runs code the file names); None
            reads ``INSPLUG_TRUST_CHECKPOINTS`` from the environment.

    Returns:
        whatever the file holds (usually a dict with 'state_dict' / 'model' and metadata).

    Raises:
        UnsafeCheckpointError: the file needs globals outside the allow-list and no opt-in.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    if trust is None:
        trust = trusted_by_environment()
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if not trust:
            raise UnsafeCheckpointError(_refusal(filename, error)) from None
    warnings.warn(f'{filename}: loading with a FULL unpickle because {TRUST_ENV}=1 / '
                  '--unsafe-load was given; this runs any code the file contains')
    return torch.load(filename, map_location=map_location, weights_only=False)


def _refusal(filename, error):
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # noqa: BLE001  (a truncated or non-zip file: the load error says why)
        wanted = []
    allowed = {name for item in allowed_globals() if isinstance(item, tuple)
               for name in [item[1]]}
    allowed |= {f'{g.__module__}.{g.__qualname__}' for g in allowed_globals()
                if not isinstance(g, tuple)}
    extra = [name for name in wanted if name not in allowed]
    detail = (f'it asks for {", ".join(extra[:8])}' if extra
              else f'the weights-only unpickler said: {str(error).splitlines()[0]}')
    return (f'refusing to load {filename}: it is not a weights-only checkpoint ({detail}). '
            'Loading it would run code the file names. If you trust this file, set '
            f'{TRUST_ENV}=1 or pass --unsafe-load to the tool; otherwise ask for the state_dict '
            'alone (torch.save(model.state_dict(), path)).')


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """A plain-pickle reader for the detectron2 / Caffe2 model zoo ``.pkl`` files: dicts of numpy
    arrays. It resolves only numpy's array/dtype/scalar reconstruction and OrderedDict."""

    _ALLOWED = {('collections', 'OrderedDict')} | {
        (module, name) for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
        for name in ('_reconstruct', 'scalar')} | {('numpy', 'ndarray'), ('numpy', 'dtype')}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED or (module == 'numpy.dtypes'
                                               and name.endswith('DType')):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(f'{module}.{name}')


def safe_pickle_load(filename, trust=None):
    """Read a plain pickle checkpoint (detectron2's ``.pkl`` model zoo format) safely.

    Only numpy arrays, dtypes and scalars inside dicts/lists are accepted; anything else needs
    the same opt-in as :func:`safe_load` (``trust=True`` or ``INSPLUG_TRUST_CHECKPOINTS=1``).
    """
    filename = osp.expanduser(str(filename))
    if trust is None:
        trust = trusted_by_environment()
    with open(filename, 'rb') as f:
        try:
            return _NumpyOnlyUnpickler(f, encoding='latin1').load()
        except UnsafeCheckpointError as error:
            if not trust:
                raise UnsafeCheckpointError(
                    f'refusing to load {filename}: it is not a plain weights pickle (it asks for '
                    f'{error}). Loading it would run code the file names. If you trust this '
                    f'file, set {TRUST_ENV}=1 or pass --unsafe-load to the tool.') from None
        warnings.warn(f'{filename}: loading with a FULL unpickle because {TRUST_ENV}=1 / '
                      '--unsafe-load was given; this runs any code the file contains')
        f.seek(0)
        return pickle.load(f, encoding='latin1')
