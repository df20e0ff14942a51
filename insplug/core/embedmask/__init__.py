"""EmbedMask (Ying et al., 2019): instance masks from proposal and pixel embeddings."""
