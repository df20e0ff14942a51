"""YOLACT / YOLACT++ adapters: ``YOLACTFPN``, ``YOLACTBoxHead`` (priors, matching, OHEM, Fast NMS
as the release), ``ProtoMaskHead`` (protonet, semantic branch, YOLACT++ mask-IoU rescoring) and
the registered ``ProtoNetEncoder``."""
