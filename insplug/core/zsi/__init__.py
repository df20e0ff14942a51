"""Zero-shot instance segmentation (Zheng et al., CVPR 2021), framework-free parts:

- ``splits``: the release's COCO seen/unseen splits (48/17, 65/15) and its label order;
- ``scoring``: the semantic classifier's scores and their transfer to unseen classes (ZSI) or
  to seen + unseen classes (GZSI), with the synchronized background embedding;
- ``embeddings/word_w2v_withbg_{48_17,65_15}.pt``: the release's class embeddings (300-d word2vec,
  column 0 the background, then seen, then unseen classes in label order).
"""
