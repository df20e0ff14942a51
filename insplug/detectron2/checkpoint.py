"""detectron2's ``DetectionCheckpointer``, reading every file weights-only.

detectron2 reads ``.pkl`` model-zoo files with a plain ``pickle.load`` and ``.pth`` files with
``torch.load``; either can run code a crafted file names. This checkpointer reads ``.pkl`` files
with :func:`insplug.checkpoints.safe_pickle_load` (numpy arrays only) and everything else with
:func:`insplug.checkpoints.safe_load` (weights-only, mmengine's state types allowed), then hands
the result to detectron2's usual conversions (name-matching heuristics, Caffe2 names). A file
written by ``tools/convert_checkpoint.py refinemask|sparseinst`` (mmdet layout) is mapped to the
adapter's layout on the fly. The opt-in for a trusted file is the same:
``INSPLUG_TRUST_CHECKPOINTS=1``.
"""
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from insplug.checkpoints.safe_load import safe_load, safe_pickle_load
from insplug.converters.to_detectron2 import detectron2_state_of


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose ``_load_file`` never unpickles arbitrary objects."""

    def _load_file(self, filename):
        local = PathManager.get_local_path(filename)
        if filename.endswith('.pkl'):
            data = safe_pickle_load(local)
            if 'model' in data and '__author__' in data:  # detectron2 model-zoo format
                return data
            if 'blobs' in data:  # Caffe2 / Detectron1 detection models
                data = data['blobs']
            data = {k: v for k, v in data.items() if not k.endswith('_momentum')}
            return {'model': data, '__author__': 'Caffe2', 'matching_heuristics': True}
        loaded = safe_load(local, map_location='cpu')
        converted = detectron2_state_of(loaded)
        if converted is not None:  # insplug's converter output: exact names, no heuristics
            return {'model': converted, '__author__': 'insplug'}
        if 'model' not in loaded:
            loaded = {'model': loaded}
        loaded['matching_heuristics'] = True
        return loaded
