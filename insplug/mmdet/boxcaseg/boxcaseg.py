"""BoxCaseg (Wang et al., CVPR 2021) as an mmdet model: a class-agnostic segmenter of boxes.

Training batches mix box-annotated images (``BoxesOnly`` in their pipeline: only boxes reach the
model) and salient images (single-object images with their mask). Every gt box of a box image
becomes one jittered crop (the release's ``bbox_broaden``) labelled with its box; every salient
image becomes one whole-image crop labelled with its mask; all crops are resampled to
``crop_size`` at once (``roi_align``) and go through the trunk and ``BoxCasegHead``
(:mod:`insplug.core.boxcaseg`). Losses: MIL projection + pairwise on every crop, pixel BCE of
the full branch on the salient crops.

``predict`` is box-conditioned: each image's gt boxes (the test pipeline loads boxes only) are
cropped, segmented by the full branch, min-max normalised per crop and pasted into the boxes
(threshold 0.5); labels are the boxes' labels, scores 1. This is the pseudo-mask step
(``tools/make_pseudo_masks.py``), and evaluating it with the COCO metric measures the masks of
known boxes.
"""
import torch
from mmdet.models.detectors.base import BaseDetector
from mmengine.structures import InstanceData

from insplug.core.boxcaseg.crops import crop_and_resize, training_crops
from insplug.core.boxcaseg.inference import crop_masks_to_image
from insplug.core.boxcaseg.loss import PAIRWISE_WEIGHT
from insplug.core.boxcaseg.network import BoxCasegHead, concat_upsample
from insplug.registry import MODELS


@MODELS.register_module()
class BoxCaseg(BaseDetector):
    """Class-agnostic box-supervised segmenter of the BoxCaseg release.

    Args:
        backbone: trunk config (multi-level output, finest first; the release: HRNet-W48,
            ``BilinearHRNet``).
        in_channels: sum of the trunk's output channels (release 48+96+192+384 = 720).
        crop_size: S, the crop side (release 288).
        fcn_ratio: FCN share of the full branch (release 0.7 PASCAL, 0.6 COCO).
        final_kernel: the last conv's kernel (release 1).
        pairwise_weight: factor of the pairwise term (release 0.05).
        max_box_crops: optional cap on box crops per batch (a random subset; None: all).
        mask_thr: threshold of the normalised full-branch map (release 0.5).
    """

    def __init__(self, backbone, in_channels, crop_size=288, fcn_ratio=0.7, final_kernel=1,
                 pairwise_weight=PAIRWISE_WEIGHT, max_box_crops=None, mask_thr=0.5,
                 train_cfg=None, test_cfg=None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = BoxCasegHead(in_channels, fcn_ratio=fcn_ratio, final_kernel=final_kernel)
        self.crop_size = crop_size
        self.pairwise_weight = pairwise_weight
        self.max_box_crops = max_box_crops
        self.mask_thr = mask_thr

    def init_weights(self):
        super().init_weights()
        self.head.init_weights()

    # ------------------------------------------------------------------ features
    def extract_feat(self, crops):
        """(N, 3, S, S) crops -> (N, C, S/4, S/4) concatenated trunk features."""
        return concat_upsample(list(self.backbone(crops)))

    def _forward(self, batch_inputs, batch_data_samples=None):
        """Weak and full logits of the crops of every sample's gt boxes."""
        idx, boxes = self._gt_boxes(batch_data_samples, batch_inputs.device)
        feats = self.extract_feat(crop_and_resize(batch_inputs, idx, boxes, self.crop_size))
        return self.head.forward_weak(feats), self.head.forward_full(feats)

    @staticmethod
    def _gt_boxes(samples, device):
        boxes = [s.gt_instances.bboxes for s in samples]
        boxes = [b.tensor if hasattr(b, 'tensor') else b for b in boxes]
        idx = torch.cat([torch.full((len(b),), i, dtype=torch.long, device=device)
                         for i, b in enumerate(boxes)])
        return idx, torch.cat(boxes).to(device).float()

    # ------------------------------------------------------------------ training
    @staticmethod
    def is_salient(sample):
        """A sample is a salient image when its instances carry masks (box images don't)."""
        return 'masks' in sample.gt_instances and len(sample.gt_instances) > 0

    def loss(self, batch_inputs, batch_data_samples):
        boxes, hws, masks = [], [], []
        for s in batch_data_samples:
            b = s.gt_instances.bboxes
            boxes.append(b.tensor if hasattr(b, 'tensor') else b)
            hws.append(s.img_shape[:2])
            masks.append(s.gt_instances.masks.to_tensor(torch.float32, batch_inputs.device)
                         .amax(dim=0) if self.is_salient(s) else None)
        crops, labels, salient = training_crops(batch_inputs, boxes, hws, masks,
                                                self.crop_size, self.max_box_crops)
        return self.head.loss(self.extract_feat(crops), labels, salient, self.pairwise_weight)

    # ------------------------------------------------------------------ inference
    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        dev = batch_inputs.device
        idx, boxes = self._gt_boxes(batch_data_samples, dev)
        if len(idx):
            feats = self.extract_feat(crop_and_resize(batch_inputs, idx, boxes, self.crop_size))
            probs = self.head.predict_probs(feats)
        results = []
        for i, sample in enumerate(batch_data_samples):
            sel = idx == i
            b = boxes[sel]
            h, w = sample.img_shape[:2]
            if rescale:
                scale = b.new_tensor(sample.metainfo.get('scale_factor', (1.0, 1.0))).repeat(2)
                b = b / scale
                h, w = sample.ori_shape[:2]
            res = InstanceData()
            res.bboxes = b
            res.labels = sample.gt_instances.labels.to(dev)
            res.scores = b.new_ones(len(b))
            if len(b):
                res.masks = crop_masks_to_image(probs[sel], b, h, w, self.mask_thr)
            else:
                res.masks = torch.zeros((0, h, w), dtype=torch.bool, device=dev)
            results.append(res)
        return self.add_pred_to_datasample(batch_data_samples, results)
