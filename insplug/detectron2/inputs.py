"""Input normalisation shared by insplug's detectron2 meta-architectures.

detectron2's own meta-architectures (``GeneralizedRCNN``, ``SemanticSegmentor``) each keep
``pixel_mean`` / ``pixel_std`` buffers, a ``device`` property and a ``preprocess_image`` that
normalises ``batched_inputs`` and pads them into an ``ImageList``. insplug's meta-architectures
inherit them from :class:`NormalisedInputs` instead of repeating them.

Shapes: B images, each ``x['image']`` (3, H_i, W_i) (uint8 or float, detectron2's input
format); the ``ImageList`` tensor is (B, 3, Hp, Wp), Hp / Wp the largest H_i / W_i rounded up to
``input_size_divisibility``.
"""
from typing import Sequence

import torch
from detectron2.structures import ImageList


class NormalisedInputs:
    """Mixin for an ``nn.Module`` meta-architecture (list it before ``nn.Module``).

    Call :meth:`register_pixel_stats` in ``__init__``; override
    :attr:`input_size_divisibility` when the padding divisor is not the backbone's.
    """

    def register_pixel_stats(self, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        """Non-persistent (3, 1, 1) buffers, as detectron2's meta-architectures keep them."""
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def input_size_divisibility(self) -> int:
        """Pad height and width to a multiple of this (the backbone's, by default)."""
        return self.backbone.size_divisibility

    def preprocess_image(self, batched_inputs) -> ImageList:
        """Normalise ``(x - pixel_mean) / pixel_std`` and pad to ``input_size_divisibility``.

        Args:
            batched_inputs: list of B detectron2 dicts with ``image`` (3, H_i, W_i).

        Returns:
            ImageList: tensor (B, 3, Hp, Wp) float, ``image_sizes`` the B (H_i, W_i).
        """
        images = [(x['image'].to(self.device).float() - self.pixel_mean) / self.pixel_std
                  for x in batched_inputs]
        return ImageList.from_tensors(images, max(self.input_size_divisibility, 1))
