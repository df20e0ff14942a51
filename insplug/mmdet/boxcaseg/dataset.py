"""BoxCaseg's joint training set: box-annotated images followed by salient images.

``BoxSalientDataset(dataset=BOX_CFG, salient=SALIENT_CFG)`` concatenates two ordinary datasets
(each with its own pipeline: ``BoxesOnly`` in the first, masks loaded in the second) as the
release's ``PDTrainDataset`` does (weak samples first, then salient ones, shuffled together by
the sampler). Its metainfo is the box dataset's; the salient set's classes do not matter
(class-agnostic training).
"""
from mmengine.dataset import ConcatDataset

from insplug.registry import DATASETS


@DATASETS.register_module()
class BoxSalientDataset(ConcatDataset):
    """Box dataset + salient dataset.

    Args:
        dataset: config (or instance) of the box-annotated dataset.
        salient: config (or instance) of the salient dataset (one masked object per image).
        lazy_init: as mmengine's ``ConcatDataset``.
    """

    def __init__(self, dataset, salient, lazy_init=False):
        built = [DATASETS.build(d) if isinstance(d, dict) else d for d in (dataset, salient)]
        super().__init__(built, lazy_init=lazy_init,
                         ignore_keys=list(built[1].metainfo.keys()))
        self._metainfo = built[0].metainfo

    @property
    def metainfo(self):
        return dict(self._metainfo)
