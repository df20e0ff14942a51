"""YOLACT-style adapters: the registered protonet encoder, a prototype mask head with optional
YOLACT++ fast mask-IoU rescoring, and YOLACTHead with YOLACT's hard-negative count."""
