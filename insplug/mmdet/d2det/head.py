"""``D2DetRegMaskHead``: :class:`insplug.core.d2det.D2DetHeadNet` built from an mmdet config."""
from insplug.core.d2det import D2DetHeadNet
from insplug.registry import MODELS


@MODELS.register_module()
class D2DetRegMaskHead(D2DetHeadNet):
    """D2Det dense local regression head (+ the released instance mask / mask-IoU branch).

    Args: those of :class:`D2DetHeadNet`; ``init_cfg`` is accepted for mmengine and ignored
    (weights are initialised as in the release on construction).
    """

    def __init__(self, init_cfg=None, **kwargs):
        super().__init__(**kwargs)

    def init_weights(self):  # called by mmengine too: the release's initialisation
        super().init_weights()
