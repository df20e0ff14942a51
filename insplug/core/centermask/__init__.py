"""CenterMask (Lee & Park, CVPR 2020): FCOS boxes, SAG-Mask RoI head, MaskIoU rescoring."""
