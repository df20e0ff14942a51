"""ZSI semantic classification scores, as the release's ``ConvFCSemanticBBoxHead`` and
``BBoxSemanticHead.get_det_bboxes`` compute them.

Shapes: N RoIs, D embedding dims (300), S seen and U unseen classes, V vocabulary words.

- logits over background + seen classes: with a vocabulary ``voc`` (D, V),
  ``kernel(f @ voc) @ vec`` (``kernel``: Linear V -> D); without one,
  ``f @ tanh(kernel(vec))`` (``kernel``: Linear (1+S) -> (1+S)); ``f`` (N, D) is the RoI's
  projection to the word space (``fc_semantic``);
- synchronized background: the background column of ``vec`` (and of ``vec_unseen``) is replaced
  by the background embedding the background-aware RPN learns, before scoring;
- transfer at test time: ``p = softmax(logits)``; seen scores ``p @ vec.T @ vec``; unseen
  scores ``p @ vec.T @ vec_unseen`` (the seen-class probabilities re-expressed in the word space
  and compared with the unseen classes' embeddings, background column included); GZSI keeps
  both sets (each NMS'ed on its own, score threshold 0.05, unseen labels after the seen ones).
"""
import torch


def sync_background(vec, bg_vector):
    """The release's ``vec[:, 0] = bg_vector`` (done in place under ``no_grad`` there).

    Args:
        vec: (D, 1 + K); bg_vector: (D,).

    Returns:
        (D, 1 + K) copy with column 0 replaced (no gradient to ``bg_vector`` through it, as in
        the release).
    """
    out = vec.clone()
    out[:, 0] = bg_vector.detach()
    return out


def semantic_embedding(features, kernel, voc):
    """The vocabulary path's word-space embedding ``kernel(f @ voc)`` (N, D), before ``@ vec``.

    Args:
        features: (N, D); kernel: Linear V -> D; voc: (D, V).
    """
    return kernel(features @ voc)


def semantic_reconstruction(embedding, voc, d_kernel, d_fc):
    """The release's decoder (``with_decoder``): back from the word space to the RoI feature,
    ``d_fc(d_kernel(e) @ voc.T)``; the release's MSE (weight 0.5) compares it with the RoI's
    semantic-branch feature.

    Args:
        embedding: (N, D) from :func:`semantic_embedding`; voc: (D, V);
        d_kernel: Linear D -> V; d_fc: Linear D -> C (C the branch feature size).

    Returns:
        (N, C).
    """
    return d_fc(d_kernel(embedding) @ voc.t())


def semantic_logits(features, vec, kernel, voc=None):
    """Logits over background + seen classes of the release's semantic bbox head.

    Args:
        features: (N, D) RoI features projected to the word space.
        vec: (D, 1 + S) background + seen embeddings.
        kernel: callable, the head's ``kernel_semantic`` (Linear V -> D with ``voc``, Linear
            (1 + S) -> (1 + S) without).
        voc: optional (D, V) vocabulary embeddings.

    Returns:
        (N, 1 + S).
    """
    if voc is not None:
        return semantic_embedding(features, kernel, voc) @ vec
    return features @ torch.tanh(kernel(vec))


def transfer_scores(logits, vec, target_vec):
    """The release's test-time transfer ``softmax(logits) @ vec.T @ target_vec``.

    Args:
        logits: (N, 1 + S); vec: (D, 1 + S); target_vec: (D, 1 + T) (``vec`` itself for the
            seen classes, ``vec_unseen`` for the unseen ones).

    Returns:
        (N, 1 + T) scores (column 0 background).
    """
    return torch.softmax(logits, dim=1) @ vec.t() @ target_vec


def zsi_scores(logits, vec, vec_unseen, mode='zsi'):
    """Scores of the three evaluation settings.

    Args:
        logits: (N, 1 + S); vec: (D, 1 + S); vec_unseen: (D, 1 + U).
        mode: 'seen' (seen classes only), 'zsi' (unseen only) or 'gzsi' (both).

    Returns:
        'seen': (N, 1 + S); 'zsi': (N, 1 + U); 'gzsi': tuple of both (the release NMS's them
        separately and offsets the unseen labels by S).
    """
    if mode == 'seen':
        return transfer_scores(logits, vec, vec)
    if mode == 'zsi':
        return transfer_scores(logits, vec, vec_unseen)
    if mode == 'gzsi':
        return transfer_scores(logits, vec, vec), transfer_scores(logits, vec, vec_unseen)
    raise ValueError(f'mode must be seen, zsi or gzsi, not {mode!r}')
