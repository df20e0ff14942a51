"""Network-mode export of methods whose tensor-mode ``_forward`` is not their inference network,
and the post-processing of every network-mode method added here, run on the exported graph's
outputs (onnxruntime arrays or tensors).

Shapes: H x W the fixed input size; Hp x Wp padded (the data preprocessor's divisor); P pyramid
scales; T recurrent steps; K boxes (BoxCaseg); n detections.

Network graphs (input ``inputs`` (1, 3, Hp, Wp), pre-processed as
:func:`insplug.deploy.onnx_export.preprocess_numpy`):

* ``DeepMask`` / SharpMask (:class:`DeepMaskDenseNetwork`): the dense inference's network part
  at every pyramid scale, :meth:`insplug.core.deepmask.DeepMaskNet.dense_maps` (resize, grey
  padding, trunk, embedding, score map, SharpMask's horizontal maps); the ``_forward`` of the
  model is the training window path.
* ``InstanceFCN`` (:class:`InstanceFCNPyramidNetwork`): ``_forward`` at every test pyramid
  scale (the resize included), as ``insplug.core.instancefcn.model.batch_proposals`` runs it.
* ``BoxCaseg`` (:class:`BoxCasegNetwork`): a box-conditioned segmenter: inputs ``inputs`` and
  ``boxes`` (K, 4) (x1, y1, x2, y2 on the input grid; K is a dynamic axis); the crops
  (``RoiAlign``), the trunk and the full branch's logits (K, 1, S/4, S/4).
  The model's ``_forward`` crops the ground-truth boxes of the data sample.
* the others: the model's ``_forward`` (:class:`insplug.deploy.onnx_export.NetworkOnly`);
  a dict output gives the output names.

Post-processing (:func:`postprocess`, by model class), each the method's own PyTorch function:
DeepMask ``DeepMaskNet.proposals_from_maps``; InstanceFCN ``batch_proposals`` (its forward
replaced by the graph's outputs); BoxCaseg ``minmax_normalize`` + ``crop_masks_to_image``; RSIS
``rsis_predict_from_logits``; RIS ``ris_predict_from_logits``; recurrent attention
``instances_from_steps``; bottom-up heads (recurrent pixel embedding, metric seediness) the
head's ``infer_one`` + ``instances_from_clusters``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn


def _as_tensor(x) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x


class _Network(nn.Module):
    """Common part: the model, its pre-processing parameters and the padded size."""

    input_names = ['inputs']
    dynamic_axes: Optional[dict] = None

    def __init__(self, model, shape: Tuple[int, int]):
        super().__init__()
        from .onnx_export import padded_shape, preprocess_params
        self.model = model
        self.params = preprocess_params(model)
        self.shape = tuple(shape)
        self.pad_shape = padded_shape(shape, self.params['pad_size_divisor'])


class DeepMaskDenseNetwork(_Network):
    """(1, 3, Hp, Wp) -> per scale: embedding (E, h_p, w_p), score logits (h_p, w_p)
    [, SharpMask's 4 horizontal maps] (:meth:`DeepMaskNet.dense_maps` on the H x W image)."""

    def __init__(self, model, shape):
        super().__init__(model, shape)
        from insplug.core.deepmask import pyramid_scales
        cfg = model.deepmask_test_cfg
        self.scales = pyramid_scales(cfg['smin'], cfg['smax'], cfg['sstep'])
        self.refine = model.net.refine is not None and bool(cfg['use_refinement'])
        self.register_buffer('pad_value', model._pad_value('cpu'))

    def forward(self, inputs: Tensor):
        image = inputs[0, :, :self.shape[0], :self.shape[1]]
        return tuple(self.model.net.dense_maps(image, self.pad_value, self.scales, self.refine))


class InstanceFCNPyramidNetwork(_Network):
    """(1, 3, Hp, Wp) -> the ``_forward`` outputs of every test scale, scale by scale.

    Each level's input is ``insplug.core.instancefcn.model.resize_batch`` of the input, with
    the level size that function gives at Hp x Wp taken as a constant (a traced shape cannot be
    rounded in Python)."""

    def __init__(self, model, shape):
        super().__init__(model, shape)
        from insplug.core.instancefcn.model import resize_batch
        probe = torch.zeros(1, 1, *self.pad_shape)
        self.sizes = [tuple(resize_batch(probe, float(s)).shape[-2:])
                      for s in model.ifcn_test_cfg['scales']]

    def forward(self, inputs: Tensor):
        import torch.nn.functional as F
        from .onnx_export import flatten_outputs
        outs = []
        for size in self.sizes:
            x = inputs if size == tuple(self.pad_shape) else F.interpolate(
                inputs, size, mode='bilinear', align_corners=False)  # as resize_batch
            outs += flatten_outputs(self.model._forward(x))
        return tuple(outs)


class BoxCasegNetwork(_Network):
    """(1, 3, Hp, Wp) image, (K, 4) boxes -> (K, 1, S/4, S/4) full-branch logits (the min-max
    normalisation of their sigmoid is post-processing: it divides by each crop's range, which
    would turn float rounding into large differences for a flat map)."""

    input_names = ['inputs', 'boxes']
    output_names = ['full_logits']
    dynamic_axes = {'boxes': {0: 'K'}, 'full_logits': {0: 'K'}}

    def forward(self, inputs: Tensor, boxes: Tensor):
        from insplug.core.boxcaseg.crops import crop_and_resize
        idx = (boxes[:, 0] * 0).long()
        crops = crop_and_resize(inputs, idx, boxes, self.model.crop_size)
        return self.model.head.forward_full(self.model.extract_feat(crops))

    def example_inputs(self, image: Tensor, seed: int) -> Tuple[Tensor, Tensor]:
        """``image`` pre-processed and ``3 + seed % 3`` seeded boxes inside H x W."""
        gen = torch.Generator().manual_seed(seed)
        k = 3 + seed % 3
        h, w = self.shape
        xy = torch.rand(k, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = (0.2 + torch.rand(k, 2, generator=gen) * 0.2) * torch.tensor([w, h])
        return image, torch.cat([xy, xy + wh], 1).round()


NETWORK_WRAPPERS = {'DeepMask': DeepMaskDenseNetwork, 'InstanceFCN': InstanceFCNPyramidNetwork,
                    'BoxCaseg': BoxCasegNetwork}

# instance retrieval that an inference graph cannot hold: reported with network-mode exports
NETWORK_ONLY_REASONS = {
    'PRMSegmentor': 'instances need peak back-propagation (a backward pass through the '
                    'network from each peak; ONNX inference graphs have no gradient op): the '
                    'graph gives the class response maps only',
    'CountSegSegmentor': 'instances need peak back-propagation (a backward pass through the '
                         'network from each peak; ONNX inference graphs have no gradient op): '
                         'the graph gives the class response and density maps only',
}


def network_wrapper_class(model):
    """The network-mode wrapper class of ``model`` (None: ``NetworkOnly``)."""
    return NETWORK_WRAPPERS.get(type(model).__name__)


# --------------------------------------------------------------------------- post-processing
def postprocess(model, outputs: Sequence, shape: Tuple[int, int],
                boxes: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """Detections of one image from its network-mode outputs (in the graph's output order).

    Args:
        model: the exported model (its heads' settings).
        outputs: the graph's outputs (numpy arrays or tensors).
        shape: (H, W) the export size (masks are returned at this size).
        boxes: BoxCaseg only: the (K, 4) boxes given to the graph.

    Returns:
        ``masks`` (n, H, W) bool, ``scores`` (n,), ``labels`` (n,) int64 (as the model's
        ``predict`` with ``ori_shape = img_shape = shape``).

    Raises:
        NotImplementedError: no post-processing on network outputs for this model (see
            :data:`NETWORK_ONLY_REASONS`).
    """
    from .onnx_export import padded_shape, preprocess_params
    outs = [_as_tensor(o) for o in outputs]
    name = type(model).__name__
    pad = padded_shape(shape, preprocess_params(model)['pad_size_divisor'])
    h, w = shape
    if name == 'DeepMask':
        wrapper = DeepMaskDenseNetwork(model, shape)
        cfg = model.deepmask_test_cfg
        res = model.net.proposals_from_maps(outs, shape, wrapper.scales, cfg['num_proposals'],
                                            cfg['mask_thr'], wrapper.refine,
                                            cfg['release_index'])
        return dict(masks=res['masks'], scores=res['scores'],
                    labels=torch.zeros_like(res['scores'], dtype=torch.long))
    if name == 'InstanceFCN':
        from insplug.core.instancefcn.model import batch_proposals
        per_level = len(outs) // len(model.ifcn_test_cfg['scales'])
        levels = iter([tuple(outs[i:i + per_level]) for i in range(0, len(outs), per_level)])
        masks, scores, _ = batch_proposals(lambda x: next(levels), torch.zeros(1, 1, *pad),
                                           [shape], [1.0], model.stride, model.head.window,
                                           model.ifcn_test_cfg)[0]
        return dict(masks=masks, scores=scores, labels=torch.zeros_like(scores, dtype=torch.long))
    if name == 'BoxCaseg':
        from insplug.core.boxcaseg.inference import crop_masks_to_image, minmax_normalize
        probs = minmax_normalize(outs[0][:, 0].sigmoid())  # BoxCasegHead.predict_probs
        masks = crop_masks_to_image(probs, _as_tensor(boxes).float(), h, w, model.mask_thr)
        return dict(masks=masks, scores=torch.ones(len(masks)),
                    labels=torch.zeros(len(masks), dtype=torch.long))
    if name == 'RSISSegmentor':
        from insplug.core.rsis.pipeline import rsis_predict_from_logits
        cfg = model.head.test_cfg
        masks, scores, labels = rsis_predict_from_logits(
            *outs[:3], [shape], [None], cfg['stop_thr'], cfg['mask_thr'], cfg['min_size'],
            cfg['max_per_img'])[0]
        return dict(masks=masks, scores=scores, labels=labels)
    if name == 'RISSegmentor':
        from insplug.core.ris.pipeline import ris_predict_from_logits
        cfg = model.head.test_cfg
        cls = outs[2] if len(outs) > 2 else None
        masks, scores, labels = ris_predict_from_logits(
            outs[0], outs[1], cls, pad, [shape], [None], cfg['stop_thr'], cfg['mask_thr'],
            cfg['max_per_img'])[0]
        return dict(masks=masks, scores=scores, labels=labels)
    if name == 'RecurrentAttentionSegmentor':
        # outputs: the network's dict in order: masks, scores, cls_logits (absent when None),
        # attn_box, ctr, size, ctr_norm, lg_size
        from insplug.core.recurrent_attention.inference import instances_from_steps
        cfg = model.test_cfg
        cls = outs[2][0] if len(outs) == 8 else None
        masks, scores, labels = instances_from_steps(
            outs[0][0], outs[1][0], cls, shape, cfg['score_thr'], cfg['mask_threshold'],
            cfg['stop_rule'], cfg['one_label'])
        return dict(masks=masks, scores=scores, labels=labels)
    if name in ('RecurrentPixelEmbeddingSegmentor', 'MetricSeedinessSegmentor'):
        from insplug.mmdet.bottomup.heads import instances_from_clusters
        head = model.head
        masks, labels, scores = head.infer_one(tuple(outs), 0)
        meta = dict(img_shape=tuple(shape), ori_shape=tuple(shape), scale_factor=(1.0, 1.0))
        inst = instances_from_clusters(masks, labels, scores, meta, True, head.max_per_img)
        return dict(masks=inst.masks, scores=inst.scores, labels=inst.labels)
    raise NotImplementedError(NETWORK_ONLY_REASONS.get(
        name, f'{name}: no post-processing on network outputs here (use the head\'s own)'))


# --------------------------------------------------------------------------- full (traced pipeline)
# methods whose network + :func:`postprocess` trace into a faithful graph: every op exportable,
# and every tracer warning reviewed: recurrent attention's 7 are fixed shapes (the batch of 1,
# the input / step-count checks) and constants (the preprocessor's mean / std); the kept steps
# are a boolean index (ONNX NonZero), not a Python value. ``mode='full'`` tries the others too:
# the exporter names the blocking op, and a trace with any tracer warning is refused
FULL_PIPELINE = {'RecurrentAttentionSegmentor'}
# models :func:`postprocess` handles
POSTPROCESSED = {'DeepMask', 'InstanceFCN', 'BoxCaseg', 'RSISSegmentor', 'RISSegmentor',
                 'RecurrentAttentionSegmentor', 'RecurrentPixelEmbeddingSegmentor',
                 'MetricSeedinessSegmentor'}


class PipelineFull(nn.Module):
    """Pre-processing, the network-mode graph and :func:`postprocess`, traced as one graph for
    one (1, 3, H, W) BGR 0..255 image.

    Outputs (in this order): ``masks`` (n, H, W) bool, ``scores`` (n,), ``labels`` (n,) int64
    (n is data-dependent: the kept detections, as ``predict``), then the raw network outputs,
    for checking.
    """

    def __init__(self, model, shape: Tuple[int, int]):
        super().__init__()
        from .onnx_export import NetworkOnly, Preprocess, preprocess_params
        if type(model).__name__ == 'BoxCaseg':
            raise ValueError('BoxCaseg takes boxes: network mode only')
        self.model = model
        self.shape = tuple(shape)
        self.preprocess = Preprocess(preprocess_params(model), shape)
        self.network = (network_wrapper_class(model) or NetworkOnly)(model, shape)

    output_names = ['masks', 'scores', 'labels']  # the raw outputs follow, unnamed
    mask_thr = 0.5  # unused (the masks are compared exactly)

    def raw(self, image: Tensor) -> List[Tensor]:
        from .onnx_export import flatten_outputs
        return flatten_outputs(self.network(self.preprocess(image)))

    def forward(self, image: Tensor):
        raw = self.raw(image)
        dets = postprocess(self.model, raw, self.shape)
        return (dets['masks'], dets['scores'], dets['labels']) + tuple(raw)

    def reference(self, image: Tensor):
        """The model's own ``predict`` on the same pre-processed image (``pred_instances``)."""
        from mmdet.structures import DetDataSample
        pad = self.preprocess.pad_shape
        sample = DetDataSample(metainfo=dict(img_shape=self.shape, ori_shape=self.shape,
                                             pad_shape=pad, batch_input_shape=pad,
                                             scale_factor=(1.0, 1.0)))
        with torch.no_grad():
            return self.model.predict(self.preprocess(image), [sample], rescale=True)[0] \
                .pred_instances


def compare_pipeline(torch_raw: Sequence[Tensor], onnx_outs: Sequence[np.ndarray], reference,
                     atol: float = 1e-4) -> dict:
    """onnxruntime's :class:`PipelineFull` outputs against PyTorch's raw network outputs
    (within ``atol``) and the model's ``predict`` (same number of detections, labels, scores
    within ``atol``, 0 differing mask pixels)."""
    raw = onnx_outs[3:]
    report = dict(max_abs_outputs=[
        float(np.abs(t.numpy().astype(np.float64) - o).max()) if o.size else 0.0
        for t, o in zip(torch_raw, raw)])
    masks, scores, labels = onnx_outs[:3]
    ref = {k: getattr(reference, k).numpy() for k in ('scores', 'labels', 'masks')}
    report.update(kept_reference=int(len(ref['scores'])), kept_onnx=int(len(scores)))
    report['same_kept'] = bool(len(raw) == len(torch_raw) and len(scores) == len(ref['scores'])
                               and (labels == ref['labels']).all())
    if report['same_kept'] and len(scores):
        report['max_abs_scores'] = float(np.abs(scores - ref['scores']).max())
        report['mask_pixels_differing'] = int((masks != ref['masks']).sum())
    report['ok'] = bool(report['same_kept'] and max(report['max_abs_outputs'], default=0) <= atol
                        and report.get('max_abs_scores', 0.0) <= atol
                        and report.get('mask_pixels_differing', 0) == 0)
    return report
