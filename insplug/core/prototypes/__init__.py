"""Prototype/basis maths shared by YOLACT-style heads: mask assembly and fast mask-IoU rescoring."""
