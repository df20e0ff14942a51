"""CenterMask (Lee & Park, CVPR 2020) for mmdet 3.x: detector, RoI head, VoVNetV2 backbone."""
