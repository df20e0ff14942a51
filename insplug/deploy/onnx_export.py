"""ONNX export of insplug models at a fixed input size, checked with onnxruntime.

Shapes: H x W the fixed input size given by ``--shape``; Hp x Wp that size padded to the data
preprocessor's ``pad_size_divisor``; N prediction slots of the model; K = min(max_per_img, N)
detection slots of the exported model; C classes.

Two export modes:

* ``full``: pre-processing to final outputs in one graph. Input ``image`` (1, 3, H, W) float32,
  BGR, 0..255, i.e. an image already resized to H x W as the test pipeline would (the resize and
  any mapping of the masks back to the original image size stay with the caller). The graph does
  BGR->RGB, (x - mean) / std, zero padding to Hp x Wp, the network and the method's
  post-processing, and returns fixed-size outputs (see the method's wrapper). Available for
  SparseInst (:class:`SparseInstFull`), RefineMask / Mask R-CNN
  (:class:`insplug.deploy.two_stage.TwoStageFull`) and, as a traced pipeline with a
  data-dependent number of detections, recurrent attention
  (:class:`insplug.deploy.networks.PipelineFull`).
* ``network``: the network only (the model's ``tensor``-mode ``_forward``). Input ``inputs``
  (1, 3, Hp, Wp), already pre-processed (:func:`preprocess_numpy`); the outputs are the raw head
  tensors, flattened in order, and the post-processing stays in Python (for SparseInst it is
  :func:`sparseinst_postprocess_numpy`; for the methods of :mod:`insplug.deploy.networks`,
  :func:`insplug.deploy.networks.postprocess`, whose wrappers export the inference network
  where ``_forward`` is not it: DeepMask / SharpMask, InstanceFCN, BoxCaseg). RPN + RoI-head
  models without a traceable wrapper are refused before tracing.

Every export is verified before success is reported: the graph is run with onnxruntime on a
seeded random image and compared with PyTorch (raw outputs within ``atol``; in full mode also
the same kept detections and 0 differing mask pixels away from the binarisation threshold). A
failed check deletes the file and raises :class:`OnnxExportError` naming the reason (an op with no
ONNX form, as reported by the exporter, or the largest difference), so no wrong model is written.

Export-time rewrites (exact, applied to the module in place):

* ``nn.AdaptiveAvgPool2d`` -> :class:`FixedAdaptiveAvgPool2d`: ONNX has only global or fixed-kernel
  average pooling, and the TorchScript exporter refuses adaptive pooling whose output size does not
  divide the input size (SparseInst's pyramid pooling at 2, 3, 6 bins). At a fixed input size the
  pooling is two constant matrices (bin start ``floor(i * L / s)``, end ``ceil((i + 1) * L / s)``,
  as PyTorch's kernel), applied with MatMul.
"""
import argparse
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OnnxExportError(RuntimeError):
    """The model cannot be exported faithfully; the message names the op or the difference."""


# --------------------------------------------------------------------------- rewrites
def adaptive_pool_matrix(length: int, size: int, dtype=torch.float32) -> Tensor:
    """Averaging matrix of 1-D adaptive average pooling.

    Args:
        length: L, input length.
        size: s, output bins.

    Returns:
        (s, L): row i averages input ``floor(i*L/s) .. ceil((i+1)*L/s) - 1``.
    """
    mat = torch.zeros(size, length, dtype=dtype)
    for i in range(size):
        start, end = (i * length) // size, -((-(i + 1) * length) // size)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


class FixedAdaptiveAvgPool2d(nn.Module):
    """``AdaptiveAvgPool2d`` as two MatMuls with constant matrices built from the (traced, fixed)
    input size: (B, C, H, W) -> (B, C, s_h, s_w)."""

    def __init__(self, output_size):
        super().__init__()
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        self.output_size = tuple(int(s) for s in size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        s_h = self.output_size[0] or h
        s_w = self.output_size[1] or w
        mh = adaptive_pool_matrix(h, s_h, x.dtype).to(x.device)  # (s_h, H)
        mw = adaptive_pool_matrix(w, s_w, x.dtype).to(x.device)  # (s_w, W)
        return torch.matmul(torch.matmul(mh, x), mw.t())


def replace_adaptive_pools(module: nn.Module) -> int:
    """Replace every ``nn.AdaptiveAvgPool2d`` under ``module`` by :class:`FixedAdaptiveAvgPool2d`
    (in place). Returns the number replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, FixedAdaptiveAvgPool2d(child.output_size))
            count += 1
        else:
            count += replace_adaptive_pools(child)
    return count


# --------------------------------------------------------------------------- pre-processing
def preprocess_params(model) -> dict:
    """Mean, std (RGB order after conversion), BGR->RGB flag, pad divisor and value of a model's
    ``DetDataPreprocessor``-like data preprocessor."""
    dp = model.data_preprocessor
    normalize = bool(getattr(dp, '_enable_normalize', False))
    return dict(
        mean=dp.mean.flatten().tolist() if normalize else [0.0, 0.0, 0.0],
        std=dp.std.flatten().tolist() if normalize else [1.0, 1.0, 1.0],
        bgr_to_rgb=bool(getattr(dp, '_channel_conversion', False)),
        pad_size_divisor=int(getattr(dp, 'pad_size_divisor', 1) or 1),
        pad_value=float(getattr(dp, 'pad_value', 0)))


def padded_shape(shape: Sequence[int], divisor: int) -> Tuple[int, int]:
    """(H, W) -> (Hp, Wp), each rounded up to a multiple of ``divisor``."""
    return tuple(int(math.ceil(s / divisor) * divisor) for s in shape)


class Preprocess(nn.Module):
    """(1, 3, H, W) BGR 0..255 -> (1, 3, Hp, Wp): RGB, normalised, padded with ``pad_value``."""

    def __init__(self, params: dict, shape: Tuple[int, int]):
        super().__init__()
        self.bgr_to_rgb = params['bgr_to_rgb']
        self.register_buffer('mean', torch.tensor(params['mean']).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(params['std']).view(1, 3, 1, 1))
        self.shape = tuple(shape)
        self.pad_shape = padded_shape(shape, params['pad_size_divisor'])
        self.pad_value = params['pad_value']

    def forward(self, image: Tensor) -> Tensor:
        if self.bgr_to_rgb:
            image = image.flip(1)
        x = (image - self.mean) / self.std
        pad_h, pad_w = self.pad_shape[0] - self.shape[0], self.pad_shape[1] - self.shape[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x


def preprocess_numpy(image: np.ndarray, params: dict) -> np.ndarray:
    """Network-mode input: (H, W, 3) BGR uint8/float image -> (1, 3, Hp, Wp) float32, as the
    model's data preprocessor (channel flip, (x - mean) / std, padding bottom/right)."""
    x = image.astype(np.float32).transpose(2, 0, 1)[None]
    if params['bgr_to_rgb']:
        x = x[:, ::-1]
    x = (x - np.float32(params['mean']).reshape(1, 3, 1, 1)) / np.float32(
        params['std']).reshape(1, 3, 1, 1)
    hp, wp = padded_shape(x.shape[-2:], params['pad_size_divisor'])
    out = np.full((1, 3, hp, wp), params['pad_value'], np.float32)
    out[:, :, :x.shape[2], :x.shape[3]] = x
    return out


# --------------------------------------------------------------------------- SparseInst
class SparseInstFull(nn.Module):
    """SparseInst, pre-processing to final instances, for one (1, 3, H, W) BGR image.

    The post-processing is :func:`insplug.core.sparseinst.inference.postprocess_single` with fixed
    output sizes: instead of dropping predictions scoring <= ``score_thr`` (a data-dependent
    size), their score is set to -1 before the top-K, so they sort last and ``valid`` marks them
    False; the K = min(max_per_img, N) best slots are returned in descending score order. The
    kept detections of PyTorch are exactly the slots with ``valid`` True (same scores, labels,
    masks and boxes; ties between equal scores may be ordered differently).

    Outputs (in this order):
        ``scores`` (K,) float32 (-1 where not valid), ``labels`` (K,) int64,
        ``masks`` (K, H, W) bool at the input size, ``bboxes`` (K, 4) float32 (x1, y1, x2, y2,
        x2/y2 exclusive, zeros for an empty mask), ``valid`` (K,) bool,
        ``cls_logits`` (1, N, C), ``obj_logits`` (1, N, 1), ``mask_logits`` (1, N, Hp/4, Wp/4)
        (the raw network outputs, for checking).
    """

    output_names = ['scores', 'labels', 'masks', 'bboxes', 'valid',
                    'cls_logits', 'obj_logits', 'mask_logits']

    def __init__(self, model, shape: Tuple[int, int]):
        super().__init__()
        self.model = model
        self.preprocess = Preprocess(preprocess_params(model), shape)
        self.shape = tuple(shape)
        cfg = model.test_cfg
        self.score_thr = float(cfg['score_thr'])
        self.mask_thr = float(cfg['mask_thr_binary'])
        self.topk = min(int(cfg['max_per_img']), int(model.decoder.num_masks))
        self.return_probs = False  # verification only: also return the mask probabilities

    def forward(self, image: Tensor):
        from insplug.core.sparseinst.inference import instance_scores, maskness
        out = self.model._decode(self.preprocess(image))
        cls_logits, obj_logits, mask_logits = (out['cls_logits'], out['obj_logits'],
                                               out['mask_logits'])
        scores, labels = instance_scores(cls_logits[0], obj_logits[0]).max(-1)  # (N,)
        valid = scores > self.score_thr
        probs = mask_logits[0].sigmoid()  # (N, h, w)
        scores = scores * maskness(probs, self.mask_thr)
        scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
        scores, order = scores.topk(self.topk)
        labels, valid, probs = labels[order], valid[order], probs[order]
        probs = F.interpolate(probs[None], size=self.preprocess.pad_shape, mode='bilinear',
                              align_corners=False)[0, :, :self.shape[0], :self.shape[1]]
        masks = probs > self.mask_thr
        bboxes = masks_to_boxes_traceable(masks)
        outs = (scores, labels, masks, bboxes, valid, cls_logits, obj_logits, mask_logits)
        return outs + (probs,) if self.return_probs else outs


def masks_to_boxes_traceable(masks: Tensor) -> Tensor:
    """:func:`insplug.core.postprocess.mask_boxes.masks_to_boxes` without its uint8 ``view``
    (a dtype reinterpretation has no ONNX form): same boxes.

    Args:
        masks: (K, H, W) bool.

    Returns:
        (K, 4) float32 (x1, y1, x2, y2), x2/y2 exclusive, zeros for an empty mask.
    """
    _, height, width = masks.shape
    flat = masks.to(torch.float32)
    cols, rows = flat.amax(1) > 0, flat.amax(2) > 0  # (K, W), (K, H)
    xs = torch.arange(width, dtype=torch.float32, device=masks.device)
    ys = torch.arange(height, dtype=torch.float32, device=masks.device)
    big_x, big_y = torch.full_like(xs, width), torch.full_like(ys, height)
    x1 = torch.where(cols, xs, big_x).amin(1)
    x2 = torch.where(cols, xs + 1, torch.zeros_like(xs)).amax(1)
    y1 = torch.where(rows, ys, big_y).amin(1)
    y2 = torch.where(rows, ys + 1, torch.zeros_like(ys)).amax(1)
    nonempty = cols.any(1, keepdim=True).to(torch.float32)
    return torch.stack([x1, y1, x2, y2], 1) * nonempty


FULL_WRAPPERS = {'SparseInst': SparseInstFull}


def full_wrapper_class(model):
    """The full-model wrapper of ``model``: by class name (:data:`FULL_WRAPPERS`), the traced
    pipeline (:class:`insplug.deploy.networks.PipelineFull`) for the methods of
    ``networks.FULL_PIPELINE``, else the traceable two-stage wrapper for RPN + RoI-head models
    it reproduces, else None."""
    from .networks import FULL_PIPELINE, PipelineFull
    from .two_stage import TwoStageFull, supports_two_stage
    from .two_stage_d2det import D2DetFull, supports_d2det
    name = type(model).__name__
    if name in FULL_WRAPPERS:
        return FULL_WRAPPERS[name]
    if name in FULL_PIPELINE:
        return PipelineFull
    if supports_d2det(model):
        return D2DetFull
    return TwoStageFull if supports_two_stage(model) else None


def sparseinst_postprocess_numpy(cls_logits: np.ndarray, obj_logits: np.ndarray,
                                 mask_logits: np.ndarray, img_shape: Tuple[int, int],
                                 score_thr: float = 0.005, mask_thr: float = 0.45,
                                 max_per_img: int = 100) -> Dict[str, np.ndarray]:
    """SparseInst post-processing for network-mode outputs of one image (numpy).

    Args:
        cls_logits: (N, C); obj_logits: (N, 1); mask_logits: (N, Hp/4, Wp/4).
        img_shape: (H, W) un-padded input size (masks are returned at this size).

    Returns:
        ``scores`` (n,), ``labels`` (n,), ``masks`` (n, H, W) bool: predictions scoring
        ``sqrt(sigmoid(cls) * sigmoid(obj)) > score_thr``, rescored by maskness, best
        ``max_per_img`` first. The bilinear upsampling (align_corners=False) is torch's
        (``F.interpolate``), applied to numpy arrays.
    """
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    scores_all = np.sqrt(sig(cls_logits) * sig(obj_logits))
    labels, scores = scores_all.argmax(1), scores_all.max(1)
    keep = scores > score_thr
    scores, labels, probs = scores[keep], labels[keep], sig(mask_logits[keep])
    binary = probs > mask_thr
    scores = scores * (probs * binary).sum((1, 2)) / (binary.sum((1, 2)) + 1e-6)
    order = np.argsort(-scores, kind='stable')[:max_per_img]
    scores, labels, probs = scores[order], labels[order], probs[order]
    pad = (probs.shape[1] * 4, probs.shape[2] * 4)
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(probs))[None], size=pad,
                       mode='bilinear', align_corners=False)[0].numpy()
    masks = up[:, :img_shape[0], :img_shape[1]] > mask_thr
    return dict(scores=scores, labels=labels, masks=masks)


# --------------------------------------------------------------------------- network mode
class NetworkOnly(nn.Module):
    """The model's ``tensor``-mode forward: (1, 3, Hp, Wp) pre-processed -> raw tensors,
    flattened (nested tuples / lists / dicts in order)."""

    def __init__(self, model, shape: Tuple[int, int]):
        super().__init__()
        from mmdet.structures import DetDataSample
        self.model = model
        self.params = preprocess_params(model)
        self.pad_shape = padded_shape(shape, self.params['pad_size_divisor'])
        self.sample = DetDataSample(metainfo=dict(
            img_shape=tuple(shape), ori_shape=tuple(shape), pad_shape=self.pad_shape,
            batch_input_shape=self.pad_shape, scale_factor=(1.0, 1.0)))
        # some tensor-mode forwards (BlendMask, YOLACT) read the ground truth: give none
        from mmengine.structures import InstanceData
        self.sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                                labels=torch.zeros(0, dtype=torch.long))

    def forward(self, inputs: Tensor):
        return tuple(flatten_outputs(self.model._forward(inputs, [self.sample])))


def flatten_outputs(obj) -> List[Tensor]:
    """Tensors of a nested tuple / list / dict, depth first in order."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in flatten_outputs(item)]
    if obj is None:
        return []
    raise OnnxExportError(f'network output of type {type(obj).__name__} is not a tensor: the '
                          'network cannot be exported as a graph of tensors')


# --------------------------------------------------------------------------- build / export
def build_model(config: str, checkpoint: Optional[str] = None, cfg_options: dict = None,
                seed: int = 0):
    """Model of ``config`` in eval mode on CPU, with the checkpoint's weights (weights-only,
    strict) or seeded random ones when ``checkpoint`` is None."""
    from insplug.cli.benchmark import _build, _load_cfg
    cfg = _load_cfg(config, cfg_options)
    model = _build(cfg, 'cpu', seed)
    if checkpoint:
        from insplug.checkpoints.fit import state_dict_of
        from insplug.checkpoints.safe_load import safe_load
        model.load_state_dict(state_dict_of(safe_load(checkpoint)), strict=True)
    return model.eval()


def _unsupported_op(error: Exception) -> str:
    text = str(error)
    for marker in ('Unsupported: ONNX export of operator', 'Exporting the operator',
                   'is not supported', 'Unsupported'):
        if marker in text:
            line = next(ln for ln in text.splitlines() if marker in ln)
            return line.strip()
    return f'{type(error).__name__}: {text.splitlines()[0] if text else ""}'


def _torch_export(wrapper: nn.Module, example, path: str, input_name,
                  output_names: Optional[List[str]], opset: int, dynamic_axes=None):
    """Returns the tracer's warnings (a tensor converted to a Python value, etc.)."""
    import warnings
    examples = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    names = list(input_name) if isinstance(input_name, (tuple, list)) else [input_name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.onnx.export(wrapper, examples, path, input_names=names,
                          output_names=output_names, opset_version=opset, dynamo=False,
                          do_constant_folding=True, dynamic_axes=dynamic_axes)
    return [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def run_onnxruntime(path: str, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Outputs of the ONNX model at ``path`` (CPU execution provider)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get('OMP_NUM_THREADS', '1') or 1)
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    return session.run(None, inputs)


def random_image(shape: Tuple[int, int], seed: int = 0) -> Tensor:
    """(1, 3, H, W) float32 image, 0..255 integers (seeded): smooth blobs plus noise, so a random
    network produces varied masks."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(shape[0] // 16, 1), max(shape[1] // 16, 1), generator=gen)
    img = F.interpolate(low, size=tuple(shape), mode='bilinear', align_corners=False) * 200
    img = img + torch.rand(1, 3, *shape, generator=gen) * 55
    return img.round().clamp(0, 255)


def compare_full(torch_outs, onnx_outs, mask_thr: float, atol: float = 1e-4,
                 tie_tol: float = 1e-4) -> dict:
    """Differences between the PyTorch and onnxruntime outputs of a full-mode wrapper.

    ``torch_outs`` carries the mask probabilities as its last item (``return_probs``); pixels
    whose probability is within ``tie_tol`` of ``mask_thr`` are ties and are not counted.
    Kept detections are matched by sorting (score, label) on both sides.
    """
    names = SparseInstFull.output_names
    t = {n: v.numpy() for n, v in zip(names, torch_outs[:len(names)])}
    o = dict(zip(names, onnx_outs))
    probs = torch_outs[-1].numpy()
    report = {f'max_abs_{n}': float(np.abs(t[n].astype(np.float64) - o[n]).max())
              if t[n].size else 0.0 for n in ('cls_logits', 'obj_logits', 'mask_logits')}
    report['kept_torch'] = int(t['valid'].sum())
    report['kept_onnx'] = int(o['valid'].sum())
    tv, ov = np.flatnonzero(t['valid']), np.flatnonzero(o['valid'])
    report['same_kept'] = bool(len(tv) == len(ov))
    if report['same_kept'] and len(tv):
        # slots are in descending score order on both sides; equal scores may swap
        ts = np.lexsort((t['labels'][tv], -t['scores'][tv]))
        os_ = np.lexsort((o['labels'][ov], -o['scores'][ov]))
        ti, oi = tv[ts], ov[os_]
        report['same_kept'] = bool((t['labels'][ti] == o['labels'][oi]).all())
        report['max_abs_scores'] = float(np.abs(t['scores'][ti] - o['scores'][oi]).max())
        diff = t['masks'][ti] != o['masks'][oi]
        tie = np.abs(probs[ti] - mask_thr) <= tie_tol
        report['mask_pixels_differing'] = int(diff.sum())
        report['mask_pixels_differing_off_ties'] = int((diff & ~tie).sum())
        report['max_abs_bboxes_off_ties'] = float(
            np.abs(t['bboxes'][ti] - o['bboxes'][oi])[~(diff.any((1, 2)))].max(initial=0.0))
    report['ok'] = bool(
        report['same_kept'] and max(report[f'max_abs_{n}'] for n in
                                    ('cls_logits', 'obj_logits', 'mask_logits')) <= atol
        and report.get('max_abs_scores', 0.0) <= atol
        and report.get('mask_pixels_differing_off_ties', 0) == 0
        and report.get('max_abs_bboxes_off_ties', 0.0) == 0.0)
    return report


def export_onnx(model, shape: Tuple[int, int], out: str, mode: str = 'auto', opset: int = 17,
                atol: float = 1e-4, seed: int = 0) -> dict:
    """Export ``model`` at input size ``shape`` (H, W) to ``out`` and verify it with onnxruntime.

    Args:
        model: an insplug / mmdet detector in eval mode (modified in place: adaptive pools are
            replaced, see the module docstring).
        mode: 'full' (pre-processing to final outputs; only methods in ``FULL_WRAPPERS``),
            'network' (network only) or 'auto' (full where available, else network).

    Returns:
        a report dict: ``mode``, ``path``, ``inputs`` / ``outputs`` names and the measured
        differences (``ok`` True).

    Raises:
        OnnxExportError: export failed (the message names the op) or the graph disagrees with
            PyTorch; nothing is left at ``out``.
    """
    shape = tuple(int(s) for s in shape)
    name = type(model).__name__
    full_class = full_wrapper_class(model)
    if mode == 'auto':
        mode = 'full' if full_class is not None else 'network'
    if mode == 'full' and full_class is None:
        from .networks import POSTPROCESSED, PipelineFull
        if name in POSTPROCESSED and name != 'BoxCaseg':
            full_class = PipelineFull  # an attempt: the exporter / the checks decide
    if mode == 'full' and full_class is None:
        raise OnnxExportError(f'no full-model export for {name} (available: '
                              f'{sorted(FULL_WRAPPERS)} and RPN + StandardRoIHead/RefineRoIHead '
                              'two-stage models); use mode="network"')
    if mode == 'network' and full_class is None and two_stage_untraceable(model):
        raise OnnxExportError(
            f'{name} (network): blocked: two-stage model (rpn_head + '
            f'{type(model.roi_head).__name__}) with no traceable wrapper: its tensor-mode forward selects proposals per image in '
            'Python (a trace freezes the tracing image\'s selection) and mmdet\'s delta2bbox takes '
            'an ONNX-only branch importing the removed mmdet.core.export; no file written')
    model.eval()
    replaced = replace_adaptive_pools(model)
    dynamic_axes = None
    if mode == 'full':
        wrapper = full_class(model, shape).eval()
        example = random_image(shape, seed)
        input_name, output_names = 'image', list(wrapper.output_names)
    else:
        from .networks import network_wrapper_class
        wrapper = (network_wrapper_class(model) or NetworkOnly)(model, shape).eval()
        example = _network_inputs(wrapper, shape, seed)
        input_name = list(getattr(wrapper, 'input_names', ['inputs']))
        output_names = getattr(wrapper, 'output_names', None)
        dynamic_axes = getattr(wrapper, 'dynamic_axes', None)
        if len(input_name) == 1:
            input_name = input_name[0]
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        with torch.no_grad():
            tracer_warnings = _torch_export(wrapper, example, out, input_name, output_names,
                                            opset, dynamic_axes)
    except Exception as error:  # the exporter names the op it cannot convert
        if osp.exists(out):
            os.remove(out)
        raise OnnxExportError(f'{name} ({mode}): ONNX export failed: {_unsupported_op(error)}') \
            from error
    report = dict(method=name, mode=mode, path=out, input=input_name, shape=list(shape),
                  adaptive_pools_replaced=replaced)
    from .networks import FULL_PIPELINE, PipelineFull
    if isinstance(wrapper, PipelineFull):
        report['tracer_warnings'] = len(tracer_warnings)
    if isinstance(wrapper, PipelineFull) and name not in FULL_PIPELINE and tracer_warnings:
        # a tensor read as a Python value may freeze a data-dependent choice of the tracing image
        first = tracer_warnings[0]
        os.remove(out)
        raise OnnxExportError(
            f'{name} (full): blocked: the trace converted a tensor to a Python value '
            f'({len(tracer_warnings)} tracer warnings; first at '
            f'{osp.relpath(first.filename)}:{first.lineno}: {str(first.message)[:120]}); '
            'use mode="network"')
    try:
        # verify on an image other than the tracing one
        if mode == 'full':
            image = random_image(shape, seed + 1)
            onnx_outs = run_onnxruntime(out, {input_name: image.numpy()})
            wrapper.return_probs = True
            with torch.no_grad():
                torch_outs = wrapper(image)
            wrapper.return_probs = False
            if isinstance(wrapper, PipelineFull):  # against the model's own predict
                from .networks import compare_pipeline
                with torch.no_grad():
                    torch_raw = wrapper.raw(image)
                report.update(compare_pipeline(torch_raw, onnx_outs, wrapper.reference(image),
                                               atol))
            elif hasattr(wrapper, 'reference'):  # two-stage: against mmdet's own predict too
                from .two_stage import compare_two_stage
                report.update(compare_two_stage(torch_outs, onnx_outs, wrapper.reference(image),
                                                wrapper.mask_thr, atol,
                                                output_names=wrapper.output_names))
            else:
                report.update(compare_full(torch_outs, onnx_outs, wrapper.mask_thr, atol))
            report['outputs'] = output_names
        else:
            inputs = _network_inputs(wrapper, shape, seed + 1)
            names = input_name if isinstance(input_name, list) else [input_name]
            onnx_outs = run_onnxruntime(out, {n: t.numpy() for n, t in zip(names, inputs)})
            with torch.no_grad():
                torch_outs = [t.numpy() for t in flatten_outputs(wrapper(*inputs))]
            if len(torch_outs) != len(onnx_outs) or any(
                    a.shape != b.shape for a, b in zip(torch_outs, onnx_outs)):
                raise OnnxExportError(f'{name} (network): output shapes differ: '
                                      f'{[a.shape for a in torch_outs]} vs '
                                      f'{[b.shape for b in onnx_outs]}')
            diffs = [float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
                     for a, b in zip(torch_outs, onnx_outs)]
            from .networks import NETWORK_ONLY_REASONS
            report.update(max_abs_outputs=diffs, ok=bool(max(diffs, default=0.0) <= atol),
                          outputs=output_names or [f'output_{i}' for i in range(len(diffs))])
            if name in NETWORK_ONLY_REASONS:
                report['not_in_graph'] = NETWORK_ONLY_REASONS[name]
        if not report['ok']:
            raise OnnxExportError(f'{name} ({mode}): onnxruntime disagrees with PyTorch: '
                                  f'{ {k: v for k, v in report.items() if k != "path"} }')
    except Exception as error:
        if osp.exists(out):
            os.remove(out)
        if isinstance(error, OnnxExportError):
            raise
        # e.g. onnxruntime refusing the graph: an exporter symbolic emitted an invalid node
        raise OnnxExportError(f'{name} ({mode}): the exported graph does not run in onnxruntime: '
                              f'{_unsupported_op(error)}') from error
    return report


def _network_inputs(wrapper, shape: Tuple[int, int], seed: int) -> Tuple[Tensor, ...]:
    """Network-mode graph inputs for image ``seed``: the pre-processed image, and the extra
    inputs of wrappers that take more (``example_inputs``)."""
    image = torch.from_numpy(preprocess_numpy(
        random_image(shape, seed)[0].permute(1, 2, 0).numpy(), wrapper.params))
    if hasattr(wrapper, 'example_inputs'):
        return tuple(wrapper.example_inputs(image, seed))
    return (image,)


def two_stage_untraceable(model) -> bool:
    """True for RPN + RoI-head models without a traceable wrapper (their tensor-mode forward
    cannot be exported faithfully, see docs/onnx_export.md)."""
    from .two_stage import supports_two_stage
    from .two_stage_d2det import supports_d2det
    return (getattr(model, 'rpn_head', None) is not None
            and getattr(model, 'roi_head', None) is not None and not supports_two_stage(model)
            and not supports_d2det(model))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export an insplug model to ONNX at a fixed input size and verify it with '
                    'onnxruntime (see insplug.deploy.onnx_export).')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint (weights-only), or 'none' for seeded "
                                           'random weights')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--out', default=None, help='output .onnx (default: <config name>.onnx)')
    parser.add_argument('--mode', choices=('auto', 'full', 'network'), default='auto')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--atol', type=float, default=1e-4)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg_options = None
    if args.cfg_options:
        import ast
        cfg_options = {}
        for item in args.cfg_options:
            key, value = item.split('=', 1)
            try:
                cfg_options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                cfg_options[key] = value
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    out = args.out or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    model = build_model(args.config, checkpoint, cfg_options)
    try:
        report = export_onnx(model, args.shape, out, args.mode, args.opset, args.atol)
    except OnnxExportError as error:
        print(f'error: {error}', file=sys.stderr)
        print('no ONNX file was written', file=sys.stderr)
        return 1
    for key, value in report.items():
        print(f'{key}: {value}')
    print(f'wrote {out} ({report["mode"]} model, verified with onnxruntime)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
