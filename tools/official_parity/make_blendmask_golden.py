"""Golden data of the official BlendMask (aim-uofa/AdelaiDet, adet/modeling/blendmask/).

Runs, on CPU, the official ``BlendMask`` meta-architecture end to end (FCOS proposal generator
with the top layer, ``ProtoNet`` basis module with its auxiliary semantic loss, ``Blender``,
detectron2's ``detector_postprocess``) at small widths, plus the official thing-semantic target
(``datasets/prepare_thing_sem_from_instance.py``) and the key/shape list of the full R-50 model
(``configs/BlendMask/R_50_1x.yaml``) for the converter test. Writes
``tests/fixtures/official/blendmask/golden.pt``::

    python tools/official_parity/make_blendmask_golden.py \\
        --official-repo /path/to/AdelaiDet --detectron2-repo /path/to/detectron2 \\
        [--extra-path /path/with/fvcore:iopath:cloudpickle:omegaconf]

Not run in CI. Nothing official is copied here: AdelaiDet and detectron2 are imported from their
source trees (detectron2 not built; see make_fcos_adelaidet_golden.py for the two empty stub
modules). Run-time additions written here: a stub backbone that returns fixed random FPN
features (the meta-architecture runs unchanged after ``self.backbone(...)``), and spies that
record the blender's mask logits and the basis module's semantic-loss inputs.

Settings: 3 classes, 32 FPN channels, FCOS towers of 2 convs, sizes of interest
[16, 32, 64, 128], basis module 16 channels / 4 bases (NORM SyncBN, which is BN in one
process), ATTN_SIZE 5, BOTTOM_RESOLUTION 28, PRE/POST_NMS_TOPK_TEST 40/8, Base-BlendMask's
USE_SCALE False and THRESH_WITH_CTR True. Two images of 120 x 150 and 128 x 160 (padded
128 x 160) with polygon masks (detectron2's default mask format); outputs at 2x the input
size (exact scale factors).
"""
import argparse
import copy
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fcos_adelaidet_golden import setup_official  # noqa: E402

OUT = os.path.join(HERE, '..', '..', 'tests', 'fixtures', 'official', 'blendmask', 'golden.pt')

NUM_CLASSES = 3
CH = 32
BASIS_CH = 16
NUM_BASES = 4
ATTN = 5
RES = 28
STRIDES = [8, 16, 32, 64, 128]
PAD_H, PAD_W = 128, 160
IMAGE_SIZES = [(120, 150), (128, 160)]
OUT_SCALE = 2


def poly_rect(x1, y1, x2, y2):
    return [float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)]


def poly_tri(x1, y1, x2, y2):
    return [float(v) for v in (x1, y2, (x1 + x2) / 2, y1, x2, y2)]


# per image: (polygons, class, iscrowd); overlapping objects test the semantic-target order
OBJECTS = [
    [([poly_tri(10, 8, 70, 60)], 0, 0), ([poly_rect(40, 30, 140, 110)], 1, 0),
     ([poly_rect(60, 50, 90, 80), poly_tri(95, 55, 118, 90)], 2, 0),
     ([poly_rect(5, 70, 35, 115)], 1, 1),  # crowd: only in the semantic target
     ([poly_tri(100, 5, 148, 48)], 0, 0)],
    [([poly_rect(3, 4, 155, 124)], 2, 0), ([poly_tri(20, 20, 60, 70)], 0, 0),
     ([poly_rect(90, 60, 130, 100)], 1, 0)],
]


class _Recorder:
    """Proxy of ``torch.nn.functional`` that records the arguments of one function."""

    def __init__(self, name):
        self.name, self.calls = name, []

    def __getattr__(self, attr):
        fn = getattr(torch.nn.functional, attr)
        if attr != self.name:
            return fn

        def wrapped(*a, **k):
            self.calls.append([x.detach().clone() if torch.is_tensor(x) else x for x in a])
            return fn(*a, **k)
        return wrapped


def build_cfg(full=False):
    from adet.config import get_cfg
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ARGS.official_repo, 'configs', 'BlendMask',
                                     'R_50_1x.yaml'))
    cfg.MODEL.DEVICE = 'cpu'
    cfg.MODEL.WEIGHTS = ''
    if full:
        return cfg
    cfg.MODEL.BACKBONE.NAME = 'GoldenStubBackbone'
    cfg.MODEL.FPN.OUT_CHANNELS = CH
    f = cfg.MODEL.FCOS
    f.NUM_CLASSES = NUM_CLASSES
    f.NUM_CLS_CONVS = f.NUM_BOX_CONVS = 2
    f.SIZES_OF_INTEREST = [16, 32, 64, 128]
    f.PRE_NMS_TOPK_TEST = 40
    f.POST_NMS_TOPK_TEST = 8
    b = cfg.MODEL.BASIS_MODULE
    b.NUM_CLASSES = NUM_CLASSES
    b.CONVS_DIM = BASIS_CH
    b.NUM_BASES = NUM_BASES
    cfg.MODEL.BLENDMASK.ATTN_SIZE = ATTN
    cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION = RES
    return cfg


def register_stub_backbone(features):
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import BACKBONE_REGISTRY, Backbone

    @BACKBONE_REGISTRY.register()
    class GoldenStubBackbone(Backbone):  # noqa: F811
        def __init__(self, cfg, input_shape):
            super().__init__()

        @property
        def size_divisibility(self):
            return 32

        def output_shape(self):
            return {f'p{i + 3}': ShapeSpec(channels=CH, stride=s) for i, s in enumerate(STRIDES)}

        def forward(self, x):
            return {k: v.to(x.dtype) for k, v in features.items()}


def randomize_(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('scale'):
                p.copy_(1 + 0.2 * torch.rand(p.shape, generator=gen, dtype=p.dtype))
            elif p.dim() == 1 and name.endswith('weight'):  # norm weights
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen, dtype=b.dtype))
            elif name.endswith('running_var'):
                b.copy_(1 + 0.2 * torch.rand(b.shape, generator=gen, dtype=b.dtype))
        head = model.proposal_generator.fcos_head
        head.cls_logits.bias.add_(-1.5)
        head.bbox_pred.bias.add_(1.0)
        head.cls_logits.weight.mul_(0.3)
        model.basis_module.tower[-1].weight.mul_(8.0)  # spread the mask logits around 0
        model.basis_module.tower[-1].bias.add_(1.8)


def official_semantic_target(objs, size):
    """The official thing map of one image, from ``prepare_thing_sem_from_instance``."""
    sys.path.insert(0, os.path.join(ARGS.official_repo, 'datasets'))
    import prepare_thing_sem_from_instance as prep
    anns = [dict(segmentation=polys, category_id=cls + 1, iscrowd=crowd)
            for polys, cls, crowd in objs]
    img = dict(height=size[0], width=size[1])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'sem.npz')
        prep._process_instance_to_semantic(anns, out, img, {c: c - 1 for c in range(1, 4)})
        return torch.from_numpy(np.load(out)['mask'].astype(np.int64))


def main():
    from adet.modeling.blendmask import basis_module as basis_mod
    from adet.modeling.blendmask.blender import Blender
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances, PolygonMasks

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    features = {}
    h, w = PAD_H, PAD_W
    for i, s in enumerate(STRIDES):
        fh, fw = (h + s - 1) // s, (w + s - 1) // s
        features[f'p{i + 3}'] = torch.randn(len(IMAGE_SIZES), CH, fh, fw, generator=gen,
                                            dtype=torch.float64)
    register_stub_backbone(features)
    model = build_model(build_cfg())
    randomize_(model, gen)
    model.double()
    state = copy.deepcopy(model.state_dict())

    # inputs in detectron2's format: polygon masks, crowd objects dropped from the instances
    # (DatasetMapper) but kept in the basis_sem map (prepare_thing_sem_from_instance)
    batched = []
    for size, objs in zip(IMAGE_SIZES, OBJECTS):
        inst = Instances(size)
        kept = [o for o in objs if not o[2]]
        masks = PolygonMasks([[np.asarray(p) for p in o[0]] for o in kept])
        inst.gt_masks = masks
        inst.gt_boxes = Boxes(masks.get_bounding_boxes().tensor.double())
        inst.gt_classes = torch.tensor([o[1] for o in kept], dtype=torch.long)
        batched.append(dict(image=torch.zeros(3, *size, dtype=torch.float64), instances=inst,
                            basis_sem=official_semantic_target(objs, size),
                            height=size[0] * OUT_SCALE, width=size[1] * OUT_SCALE))

    # ---- training forward (spies: blender mask logits, semantic CE inputs)
    rec = _Recorder('cross_entropy')
    basis_mod.F = rec
    merged = []
    orig_merge = Blender.merge_bases

    def spy_merge(self, rois, coeffs, location_to_inds=None):
        out = orig_merge(self, rois, coeffs, location_to_inds)
        merged.append((rois.detach().clone(), out.detach().clone()))
        return out
    Blender.merge_bases = spy_merge
    bases_out = []
    model.basis_module.register_forward_hook(
        lambda m, i, o: bases_out.append(o[0]['bases'][0].detach().clone()))
    model.train()
    losses = model(batched)
    sem_logits, sem_targets = rec.calls[0][0], rec.calls[0][1]
    train_bases, (train_rois, train_logits) = bases_out[0], merged[0]
    # official mask targets (gt_masks.crop_and_resize) and positives
    mask_targets = torch.cat([b['instances'].gt_masks.crop_and_resize(
        b['instances'].gt_boxes.tensor, RES) for b in batched])
    # the same objects as bitmaps (INPUT.MASK_FORMAT 'bitmask'): RoIAlign >= 0.5
    from detectron2.structures import BitMasks
    mask_targets_bitmap = torch.cat([
        BitMasks.from_polygon_masks(b['instances'].gt_masks, *b['image'].shape[-2:])
        .crop_and_resize(b['instances'].gt_boxes.tensor.float(), RES) for b in batched])

    # ---- inference (state reset: the training forward moved the BN running stats), in
    # float32: detectron2's batched_nms casts the boxes, not the scores, to float32
    model.load_state_dict(state)
    model.float()
    model.eval()
    merged.clear()
    bases_out.clear()
    with torch.no_grad():
        results = model([dict(image=b['image'].float(), height=b['height'], width=b['width'])
                         for b in batched])
    test_bases = bases_out[0]
    test_logits = merged[0][1]
    preds = []
    for r in results:
        inst = r['instances']
        preds.append(dict(boxes=inst.pred_boxes.tensor, scores=inst.scores,
                          labels=inst.pred_classes,
                          # pasted masks, bit-packed along the flattened pixels (np.packbits)
                          masks_packed=torch.from_numpy(np.packbits(
                              inst.pred_masks.bool().numpy().reshape(len(inst), -1), axis=1)),
                          masks_shape=list(inst.pred_masks.shape),
                          locations=inst.locations, levels=inst.fpn_levels))
    Blender.merge_bases = orig_merge

    full_keys = {k: list(v.shape) for k, v in build_model(build_cfg(full=True)).state_dict()
                 .items()}
    out = dict(
        config=dict(num_classes=NUM_CLASSES, channels=CH, basis_channels=BASIS_CH,
                    num_bases=NUM_BASES, attn_size=ATTN, bottom_resolution=RES,
                    strides=STRIDES, sizes_of_interest=[16, 32, 64, 128], num_convs=2,
                    score_thr=0.05, nms_pre=40, nms_thr=0.6, max_per_img=8,
                    out_scale=OUT_SCALE, sem_loss_weight=0.3),
        state_dict=state, features=[features[f'p{i + 3}'] for i in range(len(STRIDES))],
        image_sizes=[list(s) for s in IMAGE_SIZES],
        objects=[[dict(polygons=o[0], label=o[1], iscrowd=o[2]) for o in objs]
                 for objs in OBJECTS],
        gt_boxes=[b['instances'].gt_boxes.tensor for b in batched],
        gt_labels=[b['instances'].gt_classes for b in batched],
        basis_sem=[b['basis_sem'].to(torch.uint8) for b in batched],
        losses={k: v.detach() for k, v in losses.items()},
        train_bases=train_bases, train_mask_logits=train_logits,
        mask_targets=mask_targets.bool(), mask_targets_bitmap=mask_targets_bitmap.bool(),
        sem_logits=sem_logits.detach(),
        sem_targets=sem_targets, test_bases=test_bases, test_mask_logits=test_logits,
        pred=preds, full_r50_keys=full_keys)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    torch.save(out, OUT)
    print({k: float(v) for k, v in losses.items()}, [len(p['scores']) for p in preds],
          '->', OUT)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--official-repo', required=True, help='AdelaiDet source tree')
    ap.add_argument('--detectron2-repo', required=True, help='detectron2 source tree')
    ap.add_argument('--extra-path', default='', help='extra sys.path entries (os.pathsep)')
    ARGS = ap.parse_args()
    setup_official(ARGS.official_repo, ARGS.detectron2_repo,
                   [p for p in ARGS.extra_path.split(os.pathsep) if p])
    main()
