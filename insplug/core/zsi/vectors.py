"""Class embedding sources of the ZSI heads, and the shapes demo's embeddings.

Shapes: D embedding dims, S seen and U unseen classes.

``class_vectors(spec)`` returns a (D, 1 + S + U) matrix, column 0 the background, then the seen
and the unseen classes in the model's label order: ``spec`` is '48_17' / '65_15' (the release's
word2vec files, :func:`insplug.core.zsi.splits.load_class_vectors`), 'shapes_demo', or the path
of a ``.pt`` tensor of that layout (loaded weights-only).

The shapes demo (5 classes, 'ring' held out as unseen) has no word vectors: its embeddings are
8 hand-set attributes per class (background, round, straight edges, corner count / 10, pointed
tips, hollow, elongated, filled), each column L2-normalised. They are deterministic (no file to
download; ``embeddings/shapes_demo.pt`` holds the same matrix) and chosen so that the unseen
'ring' shares attributes with the seen 'circle' (round) -- an honest but weak semantic link.
"""
import os.path as osp

import torch

from .scoring import (semantic_embedding, semantic_logits, semantic_reconstruction,
                      sync_background)
from .splits import load_class_vectors, split_vectors

SHAPES_DEMO_SEEN = ('circle', 'rectangle', 'triangle', 'star')
SHAPES_DEMO_UNSEEN = ('ring',)
_ATTRIBUTES = {  # background, round, straight, corners/10, tips, hollow, elongated, filled
    'background': (1., 0., 0., 0., 0., 0., 0., 0.),
    'circle': (0., 1., 0., 0., 0., 0., 0., 1.),
    'rectangle': (0., 0., 1., .4, 0., 0., .5, 1.),
    'triangle': (0., 0., 1., .3, 1., 0., 0., 1.),
    'star': (0., 0., 1., 1., 1., 0., 0., 1.),
    'ring': (0., 1., 0., 0., 0., 1., 0., 0.),
}


def shapes_demo_vectors():
    """(8, 1 + 4 + 1) float32: background, circle, rectangle, triangle, star, ring."""
    names = ('background',) + SHAPES_DEMO_SEEN + SHAPES_DEMO_UNSEEN
    vec = torch.tensor([_ATTRIBUTES[n] for n in names], dtype=torch.float32).t()
    return vec / vec.norm(dim=0, keepdim=True)


def class_vectors(spec):
    """(D, 1 + S + U) class embeddings of ``spec`` (see the module docstring)."""
    if spec in ('48_17', '65_15'):
        return load_class_vectors(spec)
    if spec == 'shapes_demo':
        return shapes_demo_vectors()
    if isinstance(spec, str) and osp.isfile(spec):
        return torch.load(spec, weights_only=True).float()
    raise ValueError(f"class vectors: '48_17', '65_15', 'shapes_demo' or a .pt path, not {spec!r}")


class ClassVectorsMixin:
    """Mixin of the semantic heads (an ``nn.Module``): the (D, 1 + S + U) class embeddings as a
    non-persistent buffer ``class_vectors`` and ``split_vectors()`` -> ``vec`` (D, 1 + S),
    ``vec_unseen`` (D, 1 + U), their background column replaced by ``bg_vector`` (D,) when the
    detector has set it (the synchronized background, :func:`.scoring.sync_background`)."""

    def _set_vectors(self, spec, num_seen):
        self.register_buffer('class_vectors', class_vectors(spec), persistent=False)
        self.num_seen = num_seen
        self.bg_vector = None

    def split_vectors(self):
        vec, vec_unseen = split_vectors(self.class_vectors, self.num_seen)
        if self.bg_vector is not None:
            vec = sync_background(vec, self.bg_vector)
            vec_unseen = sync_background(vec_unseen, self.bg_vector)
        return vec, vec_unseen


class SemanticBoxClassifierMixin(ClassVectorsMixin):
    """Mixin of the semantic box heads (an ``nn.Module`` with ``fc_semantic`` (C -> D),
    ``kernel_semantic``, ``voc`` ((D, V) buffer or None), ``with_decoder`` and, with it,
    ``d_kernel_semantic`` / ``d_fc_semantic``): the release's ``SharedFCSemanticBBoxHead``
    classifier after the shared fcs."""

    def load_vocabulary(self, voc):
        """Fill the (D, V) vocabulary (e.g. the release's ``vocabulary_w2v.txt``)."""
        self.voc.copy_(torch.as_tensor(voc, dtype=self.voc.dtype))

    def semantic_scores(self, x):
        """(N, C) box-branch features -> ((N, S + 1) logits, background LAST as mmdet and
        detectron2 order them; the decoder's ``(x, reconstruction)`` pair in training, else
        None)."""
        feat = self.fc_semantic(x)
        vec, _ = self.split_vectors()
        logits = semantic_logits(feat, vec, self.kernel_semantic, self.voc)
        ed = None
        if self.with_decoder and self.training:
            ed = (x, semantic_reconstruction(semantic_embedding(feat, self.kernel_semantic,
                                                                self.voc),
                                             self.voc, self.d_kernel_semantic, self.d_fc_semantic))
        return torch.cat([logits[:, 1:], logits[:, :1]], dim=1), ed
