"""SparseInst (Cheng et al., CVPR 2022): sparse instance activation maps, framework-free.

Modules: :mod:`.encoder` (instance context encoder), :mod:`.decoder` (IAM decoder: plain,
group and softmax variants), :mod:`.loss` (matching and the training criterion) and
:mod:`.inference` (NMS-free post-processing). Adapters (mmdet, detectron2) wire a backbone's
C3-C5 into ``InstanceContextEncoder`` -> ``IAMDecoder`` and call ``sparseinst_loss`` /
``sparseinst_inference`` with plain tensors.
"""
